//! A read model as an exactly-once sink: `table://PATH` keeps a projection's rows (key → JSON)
//! in an embedded transactional table ([`redb`]), with the projection's **position**, the
//! highest event position its rows reflect, so that a query can wait until the projection has
//! passed a write it made (read-your-writes).
//!
//! **Rows in.** The sink takes keyed messages ([`Layout::Messages`]); [`TableUpdate`] writes
//! them: a message with a key puts the row (its value, JSON text), or deletes it when the value
//! is JSON `null`; a message **without a key** is a position marker, its value the decimal
//! event position the job has reflected so far. The position is explicit rather than taken from
//! a field of the rows, because a row's JSON is the application's (the sink does not parse it),
//! and because events that change no row still move the projection forwards; a projection emits
//! a marker with each row it updates (the row's own position) and may emit markers for events
//! that change nothing.
//!
//! **Exactly once.** Each worker's writer gathers the epoch's rows; at pre-commit it stores
//! them, with the epochs before it that the table has not committed yet, in the checkpoint
//! ([`Checkpoints::store`]). When the epoch's checkpoint is complete, [`Sink::commit`] applies
//! the rows of every worker and the new position in **one** redb write transaction, which also
//! records the epoch; an epoch at or below the recorded one is skipped, so applying again is
//! idempotent. After a crash, [`Sink::recover`] applies the epochs the restored checkpoint holds
//! that the table does not. A fresh start (no checkpoint) empties the table: the projection is
//! rebuilt from its source. Without checkpoints everything is applied at the end of the input
//! (at least once, as for every sink then).
//!
//! **Reading it.** [`ReadModel`] is the query side and the sink's handle on the file; redb lets
//! one process open a file, so both sides share one handle per file through a process-wide
//! registry ([`ReadModel::open`] by path): the serving side of an application (the bank's HTTP
//! server) and the projection job it runs in a background thread read and write the same
//! table. [`ReadModel::get`], [`ReadModel::scan`] and [`ReadModel::position`] read committed
//! state only; [`ReadModel::wait_for_position`] blocks until the projection has passed a
//! position (or a timeout).
//!
//! Limits: one process writes the table (the job's sink commits the rows of the writers of its
//! own process, so a job spread over several processes cannot use it); the position is reached
//! when the rows of the epoch that holds the event are committed, which is exact for a
//! projection whose rows leave its fold in the epoch their events were read in (a rolling fold
//! does, except for a record that waits for alignment across an epoch the frontier skips in one
//! step: then its row commits one checkpoint later than the position).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, TableDefinition};
use riffle_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::sink::{Checkpoints, Delivery, Layout, OutputBatch, Restored, Sink, SinkWriter, WriterContext};

const ROWS: TableDefinition<&str, &str> = TableDefinition::new("rows");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The highest event position reflected (absent: none yet).
const POSITION: &str = "position";
/// The last epoch committed (absent: none).
const EPOCH: &str = "epoch";

/// One update of a read model, as a job hands it to a `table://` sink (see the
/// [module docs](self)): write it with [`TableUpdate::write_key`] and
/// [`TableUpdate::write_value`].
///
/// ```
/// use riffle_connectors::readmodel::TableUpdate;
/// let put = TableUpdate::Put { key: "account-1".into(), value: r#"{"balance":5}"#.into() };
/// let (mut k, mut v) = (Vec::new(), Vec::new());
/// put.write_key(&mut k);
/// put.write_value(&mut v);
/// assert_eq!((&k[..], &v[..]), (&b"account-1"[..], &br#"{"balance":5}"#[..]));
/// let (mut k, mut v) = (Vec::new(), Vec::new());
/// TableUpdate::Position(41).write_key(&mut k);
/// TableUpdate::Position(41).write_value(&mut v);
/// assert_eq!((&k[..], &v[..]), (&b""[..], &b"41"[..]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableUpdate {
    /// Puts a row (its value is JSON text).
    Put {
        /// The row's key.
        key: String,
        /// The row, JSON text.
        value: String,
    },
    /// Deletes a row.
    Delete {
        /// The row's key.
        key: String,
    },
    /// The projection has reflected every event up to this global position.
    Position(u64),
}

impl TableUpdate {
    /// Writes the message's key (none for a position marker).
    pub fn write_key(&self, out: &mut Vec<u8>) {
        match self {
            TableUpdate::Put { key, .. } | TableUpdate::Delete { key } => out.extend_from_slice(key.as_bytes()),
            TableUpdate::Position(_) => {}
        }
    }

    /// Writes the message's value: the row, `null` for a delete, the position for a marker.
    pub fn write_value(&self, out: &mut Vec<u8>) {
        match self {
            TableUpdate::Put { value, .. } => out.extend_from_slice(value.as_bytes()),
            TableUpdate::Delete { .. } => out.extend_from_slice(b"null"),
            TableUpdate::Position(p) => out.extend_from_slice(p.to_string().as_bytes()),
        }
    }
}

/// The rows and position one worker wrote in one epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct EpochRows {
    /// Puts (`Some`) and deletes (`None`), in order.
    rows: Vec<(String, Option<String>)>,
    /// The highest position marker.
    position: Option<u64>,
}

/// What a writer stores in a checkpoint: its rows of every epoch the table had not committed
/// when it pre-committed.
#[derive(Serialize, Deserialize)]
struct StoredPart {
    worker: usize,
    epochs: Vec<(u64, EpochRows)>,
}

/// The committed state the query side waits on.
#[derive(Clone, Copy, Debug, Default)]
struct Committed {
    position: Option<u64>,
    epoch: Option<u64>,
}

struct Inner {
    path: PathBuf,
    db: Database,
    committed: Mutex<Committed>,
    changed: Condvar,
}

/// A read-model table, shared by the sink that writes it and the code that queries it (see the
/// [module docs](self)). Cloning it is cheap; the file is closed when the last clone is dropped.
#[derive(Clone)]
pub struct ReadModel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReadModel").field(&self.inner.path).finish()
    }
}

fn open_models() -> &'static Mutex<HashMap<PathBuf, Weak<Inner>>> {
    static MODELS: OnceLock<Mutex<HashMap<PathBuf, Weak<Inner>>>> = OnceLock::new();
    MODELS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The canonical form of a file's path that may not exist yet: its directory's canonical path
/// and its name.
fn canonical_file(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir).map_or_else(|_| path.to_path_buf(), |d| d.join(name))
        }
        _ => path.to_path_buf(),
    }
}

fn db_error<'a, E: Into<redb::Error>>(what: &'static str, path: &'a Path) -> impl FnOnce(E) -> Error + 'a {
    move |e| Error::Io {
        what,
        path: path.to_path_buf(),
        source: std::io::Error::other(e.into()),
    }
}

impl ReadModel {
    /// Opens (or creates) the table file at `path`, or returns the handle this process already
    /// has on it.
    ///
    /// ```
    /// use riffle_connectors::readmodel::ReadModel;
    /// let dir = tempfile::tempdir().unwrap();
    /// let model = ReadModel::open(dir.path().join("balances.redb")).unwrap();
    /// assert_eq!(model.position(), None);
    /// assert_eq!(model.get("account-1").unwrap(), None);
    /// // A second open in the same process shares the handle (redb allows one per process).
    /// assert!(ReadModel::open(dir.path().join("balances.redb")).is_ok());
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<ReadModel> {
        let path = path.as_ref();
        let key = canonical_file(path);
        let mut models = open_models().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(inner) = models.get(&key).and_then(Weak::upgrade) {
            return Ok(ReadModel { inner });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                what: "cannot create",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = Database::create(path).map_err(db_error("cannot open read model", path))?;
        // The tables exist from the start, so that reads never find them missing.
        let tx = db.begin_write().map_err(db_error("cannot write read model", path))?;
        let committed = {
            tx.open_table(ROWS)
                .map_err(db_error("cannot open rows of read model", path))?;
            let meta = tx.open_table(META).map_err(db_error("cannot open read model", path))?;
            let get = |k: &str| -> Result<Option<u64>> {
                Ok(meta
                    .get(k)
                    .map_err(db_error("cannot read read model", path))?
                    .map(|v| v.value()))
            };
            Committed {
                position: get(POSITION)?,
                epoch: get(EPOCH)?,
            }
        };
        tx.commit().map_err(db_error("cannot write read model", path))?;
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            db,
            committed: Mutex::new(committed),
            changed: Condvar::new(),
        });
        models.retain(|_, w| w.strong_count() > 0);
        models.insert(key, Arc::downgrade(&inner));
        Ok(ReadModel { inner })
    }

    /// The table's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The row at `key` (JSON text), as last committed.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let path = &self.inner.path;
        let tx = self
            .inner
            .db
            .begin_read()
            .map_err(db_error("cannot read read model", path))?;
        let rows = tx.open_table(ROWS).map_err(db_error("cannot read read model", path))?;
        let row = rows.get(key).map_err(db_error("cannot read read model", path))?;
        Ok(row.map(|v| v.value().to_string()))
    }

    /// The rows whose keys start with `prefix`, in key order (every row for `""`).
    pub fn scan(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let path = &self.inner.path;
        let tx = self
            .inner
            .db
            .begin_read()
            .map_err(db_error("cannot read read model", path))?;
        let rows = tx.open_table(ROWS).map_err(db_error("cannot read read model", path))?;
        let mut out = Vec::new();
        for row in rows.range(prefix..).map_err(db_error("cannot read read model", path))? {
            let (k, v) = row.map_err(db_error("cannot read read model", path))?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_string()));
        }
        Ok(out)
    }

    /// The highest event position the committed rows reflect (`None`: none yet).
    pub fn position(&self) -> Option<u64> {
        self.committed().position
    }

    /// The last checkpoint epoch whose rows are committed.
    pub fn committed_epoch(&self) -> Option<u64> {
        self.committed().epoch
    }

    fn committed(&self) -> Committed {
        *self.inner.committed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the projection has reflected the event at `position` (its position is at
    /// least `position`) or `timeout` has passed; returns whether it has. A query that must see
    /// a write (an append whose result's position is `P`) waits for `P` first.
    pub fn wait_for_position(&self, position: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut c = self.inner.committed.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if c.position.is_some_and(|p| p >= position) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            c = self
                .inner
                .changed
                .wait_timeout(c, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Applies `epochs` (epoch, rows) in order in one transaction, skipping those at or below
    /// the committed epoch; `record_epoch` is false for the end of a job without checkpoints.
    fn apply(&self, epochs: &[(u64, Vec<&EpochRows>)], record_epoch: bool) -> Result<()> {
        let path = &self.inner.path;
        let before = self.committed();
        let todo: Vec<&(u64, Vec<&EpochRows>)> = epochs
            .iter()
            .filter(|(e, _)| !record_epoch || before.epoch.is_none_or(|done| *e > done))
            .collect();
        let Some(&&(last, _)) = todo.last() else {
            return Ok(());
        };
        let mut position = before.position;
        let tx = self
            .inner
            .db
            .begin_write()
            .map_err(db_error("cannot write read model", path))?;
        {
            let mut rows = tx.open_table(ROWS).map_err(db_error("cannot write read model", path))?;
            for (_, parts) in &todo {
                for part in parts {
                    for (key, value) in &part.rows {
                        match value {
                            Some(v) => rows.insert(key.as_str(), v.as_str()).map(|_| ()),
                            None => rows.remove(key.as_str()).map(|_| ()),
                        }
                        .map_err(db_error("cannot write read model", path))?;
                    }
                    position = position.max(part.position);
                }
            }
            let mut meta = tx.open_table(META).map_err(db_error("cannot write read model", path))?;
            if let Some(p) = position {
                meta.insert(POSITION, p)
                    .map_err(db_error("cannot write read model", path))?;
            }
            if record_epoch {
                meta.insert(EPOCH, last)
                    .map_err(db_error("cannot write read model", path))?;
            }
        }
        tx.commit().map_err(db_error("cannot commit read model", path))?;
        let mut c = self.inner.committed.lock().unwrap_or_else(|p| p.into_inner());
        c.position = position;
        if record_epoch {
            c.epoch = Some(last);
        }
        drop(c);
        self.inner.changed.notify_all();
        Ok(())
    }

    /// Empties the table (a projection rebuilt from its start), or moves its recorded epoch
    /// back to `epoch` (a restore from an older checkpoint than its last commit).
    fn reset(&self, epoch: Option<u64>) -> Result<()> {
        let path = &self.inner.path;
        let tx = self
            .inner
            .db
            .begin_write()
            .map_err(db_error("cannot write read model", path))?;
        {
            let mut meta = tx.open_table(META).map_err(db_error("cannot write read model", path))?;
            match epoch {
                None => {
                    tx.delete_table(ROWS)
                        .map_err(db_error("cannot empty read model", path))?;
                    tx.open_table(ROWS).map_err(db_error("cannot empty read model", path))?;
                    meta.remove(POSITION)
                        .map_err(db_error("cannot write read model", path))?;
                    meta.remove(EPOCH).map_err(db_error("cannot write read model", path))?;
                }
                Some(e) => {
                    meta.insert(EPOCH, e)
                        .map_err(db_error("cannot write read model", path))?;
                }
            }
        }
        tx.commit().map_err(db_error("cannot commit read model", path))?;
        let mut c = self.inner.committed.lock().unwrap_or_else(|p| p.into_inner());
        match epoch {
            None => *c = Committed::default(),
            Some(e) => c.epoch = Some(e),
        }
        Ok(())
    }
}

/// Pre-committed rows waiting for their checkpoint: epoch → (worker → rows).
type Waiting = Arc<Mutex<BTreeMap<u64, BTreeMap<usize, EpochRows>>>>;

/// `table://PATH`: the read-model sink (see the [module docs](self)).
#[derive(Clone)]
pub struct ReadModelSink {
    path: PathBuf,
    model: Arc<OnceLock<ReadModel>>,
    waiting: Waiting,
}

impl ReadModelSink {
    /// The table at `path` (opened when the job starts).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ReadModelSink {
            path: path.into(),
            model: Arc::new(OnceLock::new()),
            waiting: Arc::default(),
        }
    }

    /// Parses `table://PATH`.
    ///
    /// ```
    /// use riffle_connectors::readmodel::ReadModelSink;
    /// assert_eq!(ReadModelSink::parse("table:///var/lib/bank/balances.redb").unwrap().path().to_str(), Some("/var/lib/bank/balances.redb"));
    /// assert!(ReadModelSink::parse("table://").is_err());
    /// ```
    pub fn parse(uri: &str) -> Result<Self> {
        match uri.strip_prefix("table://") {
            Some(path) if !path.is_empty() => Ok(ReadModelSink::new(path)),
            _ => Err(Error::Config(format!("--sink: expected table://PATH, got '{uri}'"))),
        }
    }

    /// The table's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table (opened at the first call).
    pub fn model(&self) -> Result<ReadModel> {
        if let Some(m) = self.model.get() {
            return Ok(m.clone());
        }
        let m = ReadModel::open(&self.path)?;
        Ok(self.model.get_or_init(|| m).clone())
    }
}

impl Sink for ReadModelSink {
    fn name(&self) -> String {
        format!("table://{}", self.path.display())
    }

    fn layout(&self) -> Layout {
        Layout::Messages
    }

    fn delivery(&self) -> Delivery {
        Delivery::ExactlyOnce
    }

    fn state_name(&self) -> &str {
        "readmodel"
    }

    fn recover(&self, restored: Option<Restored<'_>>, _first_process: bool) -> Result<()> {
        let model = self.model()?;
        let Some(restored) = restored else {
            if model.position().is_some() || model.committed_epoch().is_some() {
                tracing::warn!(
                    "{}: no checkpoint to resume; the projection is rebuilt from its start",
                    self.name()
                );
            }
            return model.reset(None);
        };
        if model.committed_epoch().is_some_and(|e| e > restored.epoch) {
            tracing::warn!(
                "{}: committed up to epoch {:?}, past the restored checkpoint {}: its rows are written again",
                self.name(),
                model.committed_epoch(),
                restored.epoch
            );
            model.reset(Some(restored.epoch))?;
        }
        // Every epoch up to the checkpoint's that a writer pre-committed, once per worker.
        let mut epochs: BTreeMap<u64, BTreeMap<usize, EpochRows>> = BTreeMap::new();
        for (_, bytes) in restored.parts {
            let part: StoredPart = bincode::deserialize(bytes).map_err(|e| {
                Error::Config(format!(
                    "{}: the checkpoint's part of the read model cannot be read: {e}",
                    self.name()
                ))
            })?;
            for (epoch, rows) in part.epochs {
                if epoch <= restored.epoch {
                    epochs.entry(epoch).or_default().insert(part.worker, rows);
                }
            }
        }
        let epochs: Vec<(u64, Vec<&EpochRows>)> = epochs.iter().map(|(e, w)| (*e, w.values().collect())).collect();
        model.apply(&epochs, true)
    }

    fn writer(&self, at: WriterContext) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(ReadModelWriter {
            name: self.name(),
            model: self.model()?,
            worker: at.worker,
            checkpoints: at.checkpoints,
            open: BTreeMap::new(),
            uncommitted: BTreeMap::new(),
            waiting: Arc::clone(&self.waiting),
        }))
    }

    fn commit(&self, epoch: u64, _attempt: u64) -> Result<()> {
        let ready: BTreeMap<u64, BTreeMap<usize, EpochRows>> = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            let later = match epoch.checked_add(1) {
                Some(next) => waiting.split_off(&next),
                None => BTreeMap::new(),
            };
            std::mem::replace(&mut *waiting, later)
        };
        let epochs: Vec<(u64, Vec<&EpochRows>)> = ready.iter().map(|(e, w)| (*e, w.values().collect())).collect();
        // Without checkpoints (`u64::MAX`: the end of the input) no epoch is recorded.
        self.model()?.apply(&epochs, epoch != u64::MAX)
    }
}

/// One worker's rows, by epoch.
struct ReadModelWriter {
    name: String,
    model: ReadModel,
    worker: usize,
    checkpoints: Option<Arc<dyn Checkpoints>>,
    /// Epochs being written.
    open: BTreeMap<u64, EpochRows>,
    /// Epochs pre-committed but maybe not committed yet: stored again with each checkpoint
    /// until the table has them.
    uncommitted: BTreeMap<u64, EpochRows>,
    waiting: Waiting,
}

impl SinkWriter for ReadModelWriter {
    fn write(&mut self, epoch: u64, batch: &mut OutputBatch) -> Result<()> {
        let OutputBatch::Messages(messages) = batch else {
            return Err(Error::Config(format!("{}: expects keyed messages", self.name)));
        };
        let rows = self.open.entry(epoch).or_default();
        for (key, value) in messages.iter() {
            let value = std::str::from_utf8(value)
                .map_err(|e| Error::Config(format!("{}: a value that is not UTF-8 ({e})", self.name)))?;
            match key {
                Some(key) => {
                    let key = std::str::from_utf8(key)
                        .map_err(|e| Error::Config(format!("{}: a key that is not UTF-8 ({e})", self.name)))?;
                    let value = (value.trim() != "null").then(|| value.to_string());
                    rows.rows.push((key.to_string(), value));
                }
                None => {
                    let p: u64 = value.trim().parse().map_err(|_| {
                        Error::Config(format!(
                            "{}: a message without a key is a position marker, but its value '{value}' is not a position",
                            self.name
                        ))
                    })?;
                    rows.position = rows.position.max(Some(p));
                }
            }
        }
        batch.clear();
        Ok(())
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<()> {
        let rows = self.open.remove(&epoch).unwrap_or_default();
        let Some(checkpoints) = &self.checkpoints else {
            // Without checkpoints: the end of the input; everything goes at the commit.
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            let all = std::mem::take(&mut self.open).into_iter().chain([(epoch, rows)]);
            for (e, r) in all {
                merge(waiting.entry(e).or_default().entry(self.worker).or_default(), r);
            }
            return Ok(());
        };
        if let Some(done) = self.model.committed_epoch() {
            self.uncommitted = self.uncommitted.split_off(&(done + 1));
        }
        if rows != EpochRows::default() {
            self.uncommitted.insert(epoch, rows.clone());
            self.waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(epoch)
                .or_default()
                .insert(self.worker, rows);
        }
        if self.uncommitted.is_empty() {
            return Ok(());
        }
        let part = StoredPart {
            worker: self.worker,
            epochs: self.uncommitted.iter().map(|(e, r)| (*e, r.clone())).collect(),
        };
        let bytes = bincode::serialize(&part)
            .map_err(|e| Error::Config(format!("{}: cannot encode epoch {epoch}: {e}", self.name)))?;
        checkpoints.store(epoch, self.worker, bytes)
    }
}

fn merge(into: &mut EpochRows, from: EpochRows) {
    into.rows.extend(from.rows);
    into.position = into.position.max(from.position);
}
