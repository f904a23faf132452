//! [`EventStore`]: appends go through one writer thread that commits them in groups (one write
//! and one fsync for every append waiting), reads go straight to the segment files through the
//! in-memory indexes.
//!
//! The writer decides each append against the indexes and the appends decided before it in the
//! same group, so expected versions and idempotence are checked in the order appends are
//! written. Only once the group is synced does it publish the new events to the indexes and
//! answer the appenders: a reader, a subscription or a projection never sees an event that a
//! crash could take back.

use crate::index::{Index, Location, Scanner, Segment};
use crate::log::{self, EventRef};
use crate::{
    AppendResult, Direction, ExpectedVersion, Filter, NewEvent, RecordedEvent, Snapshot, StoreError, Subscription,
    STREAM_DELETED,
};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A segment file is closed and a new one started once it holds this many bytes (at most
    /// 2 GiB).
    pub segment_bytes: u64,
    /// Whether appends wait for fsync (true unless a benchmark measures without it).
    pub fsync: bool,
    /// The most events one group commit writes before it syncs.
    pub max_batch_events: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_bytes: 256 << 20,
            fsync: true,
            max_batch_events: 8192,
        }
    }
}

/// The longest stream id, in bytes.
pub const MAX_STREAM_ID: usize = 1024;

/// An event store on a directory. Cloning it is cheap (it is shared); the writer stops when the
/// last clone is dropped.
///
/// A directory is written by one process at a time (a lock file says which); other processes
/// open it read-only and follow it.
#[derive(Clone)]
pub struct EventStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    shared: Arc<Shared>,
    /// To the writer thread; `None` for a read-only store.
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The scan state of a read-only store.
    follower: Option<Mutex<Scanner>>,
    /// Held while the store is open for writing.
    _lock: Option<File>,
}

/// What the writer and the readers share.
struct Shared {
    index: RwLock<Index>,
    /// The head, for those who wait for it to grow.
    head: Mutex<u64>,
    grown: Condvar,
    watch: tokio::sync::watch::Sender<u64>,
    /// Called after each publication (see [`EventStore::wake_on_new_events`]); dropped ones
    /// are pruned as they are found.
    wakers: Mutex<Vec<Weak<dyn Fn() + Send + Sync>>>,
    /// Group commits written (each one write and one fsync) and appends answered.
    commits: std::sync::atomic::AtomicU64,
    appends: std::sync::atomic::AtomicU64,
}

/// What the writer has done since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Group commits written: one write and one fsync each.
    pub commits: u64,
    /// Appends that wrote events.
    pub appends: u64,
}

type Done = Box<dyn FnOnce(Result<AppendResult, StoreError>) + Send>;

struct Request {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    done: Done,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer after the appends already sent; wait for it so
        // that the directory is free when `drop` returns (a test reopens it at once).
        if let Ok(mut tx) = self.requests.lock() {
            tx.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl EventStore {
    /// Opens (or creates) the store in `dir` for reading and writing: takes the directory's
    /// lock (another process holding it is [`StoreError::Locked`]), runs the recovery scan
    /// (which cuts a torn tail) and starts the writer.
    pub fn open(dir: impl AsRef<Path>) -> Result<EventStore, StoreError> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// [`EventStore::open`] with options.
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<EventStore, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::io("cannot create the event store directory", &dir, e))?;
        let lock = take_lock(&dir)?;
        let mut index = Index::default();
        let end = Scanner::new().scan(&dir, &mut index)?;
        let segments = log::list_segments(&dir)?;
        if let Some((path, offset, reason)) = &end.damage {
            let is_last = segments.last().map(|(_, p)| p) == Some(path);
            if !is_last {
                return Err(StoreError::Corrupt {
                    path: path.clone(),
                    offset: *offset,
                    reason: reason.clone(),
                });
            }
        }
        // The writer appends to the last segment, after its last whole append: anything
        // beyond (a torn tail of a crash) is cut off now.
        let (append_path, append_len) = match end.path.clone() {
            Some(path) => {
                if end.file_len > end.valid_len {
                    tracing::warn!(
                        "event store {}: cut a torn tail of {} bytes from {} at byte {} (an append that was never acknowledged)",
                        dir.display(),
                        end.file_len - end.valid_len,
                        path.display(),
                        end.valid_len
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| StoreError::io("cannot open event store segment", &path, e))?;
                    f.set_len(end.valid_len)
                        .and_then(|_| f.sync_all())
                        .map_err(|e| StoreError::io("cannot cut the torn tail of", &path, e))?;
                }
                (path, end.valid_len)
            }
            None => {
                let path = log::segment_path(&dir, 0);
                create_segment(&dir, &path)?;
                let file =
                    File::open(&path).map_err(|e| StoreError::io("cannot open event store segment", &path, e))?;
                index.segments.push(Segment {
                    first_position: 0,
                    path: path.clone(),
                    file: Arc::new(file),
                    len: 0,
                });
                (path, 0)
            }
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&append_path)
            .map_err(|e| StoreError::io("cannot open event store segment", &append_path, e))?;
        std::fs::create_dir_all(dir.join("snapshots"))
            .map_err(|e| StoreError::io("cannot create the snapshot directory in", &dir, e))?;
        tracing::info!(
            "event store {}: {} events in {} streams",
            dir.display(),
            index.head(),
            index.streams.len()
        );
        let head = index.head();
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            head: Mutex::new(head),
            grown: Condvar::new(),
            watch: tokio::sync::watch::Sender::new(head),
            commits: Default::default(),
            appends: Default::default(),
            wakers: Mutex::new(Vec::new()),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.clone(),
            shared: Arc::clone(&shared),
            file,
            len: append_len,
            options: Options::from(options),
            failed: None,
            buf: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("eventstore-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::io("cannot start the writer thread of", &dir, e))?;
        Ok(EventStore {
            inner: Arc::new(Inner {
                dir,
                shared,
                requests: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                follower: None,
                _lock: Some(lock),
            }),
        })
    }

    /// Opens the store in `dir` to read what another process writes: no lock, no writer;
    /// [`EventStore::refresh`] (and subscriptions, as they wait) pick up new events.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<EventStore, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let mut index = Index::default();
        let mut scanner = Scanner::new();
        let end = scanner.scan(&dir, &mut index)?;
        check_follower_damage(&end, &dir)?;
        let head = index.head();
        Ok(EventStore {
            inner: Arc::new(Inner {
                dir,
                shared: Arc::new(Shared {
                    index: RwLock::new(index),
                    head: Mutex::new(head),
                    grown: Condvar::new(),
                    watch: tokio::sync::watch::Sender::new(head),
                    commits: Default::default(),
                    appends: Default::default(),
                    wakers: Mutex::new(Vec::new()),
                }),
                requests: Mutex::new(None),
                writer: Mutex::new(None),
                follower: Some(Mutex::new(scanner)),
                _lock: None,
            }),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether this handle can append (it opened the store for writing).
    pub fn is_writer(&self) -> bool {
        self.inner.follower.is_none()
    }

    /// Appends `events` to `stream` if it meets `expected`, atomically, and returns once they
    /// are durable. The same event ids appended again to the same stream in the same order
    /// return the first append's result and write nothing.
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.append_with(stream, expected, events, move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or_else(|_| Err(self.closed("the writer stopped")))
    }

    /// [`EventStore::append`] without blocking: `done` is called on the writer thread once the
    /// events are durable (or at once if the append is invalid). For async callers: send the
    /// result on a oneshot channel; do not block in `done`.
    pub fn append_with(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        done: impl FnOnce(Result<AppendResult, StoreError>) + Send + 'static,
    ) {
        if let Err(e) = validate(stream, &events, false) {
            return done(Err(e));
        }
        // One event, one line: JSON whitespace between tokens (newlines included) goes, so
        // that the events' JSON lines (store:// sources, SSE) never break.
        let mut events = events;
        for e in &mut events {
            if let std::borrow::Cow::Owned(c) = crate::compact_json(&e.data) {
                e.data = c;
            }
            if let Some(std::borrow::Cow::Owned(c)) = e.metadata.as_deref().map(crate::compact_json) {
                e.metadata = Some(c);
            }
        }
        self.send(stream, expected, events, Box::new(done));
    }

    fn send(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>, done: Done) {
        let sender = match self.inner.requests.lock() {
            Ok(g) => g.clone(),
            Err(_) => None,
        };
        let Some(sender) = sender else {
            return done(Err(if self.is_writer() {
                self.closed("the store is closing")
            } else {
                StoreError::ReadOnly {
                    dir: self.inner.dir.clone(),
                }
            }));
        };
        let request = Request {
            stream: stream.to_string(),
            expected,
            events,
            done,
        };
        if let Err(mpsc::SendError(r)) = sender.send(request) {
            (r.done)(Err(self.closed("the writer stopped")));
        }
    }

    fn closed(&self, reason: &str) -> StoreError {
        StoreError::Closed {
            dir: self.inner.dir.clone(),
            reason: reason.to_string(),
        }
    }

    /// Deletes `stream` if it meets `expected`: appends its tombstone (an event of type
    /// [`crate::STREAM_DELETED`] at its next version); the stream can no longer be read or
    /// appended to. Its events stay in `$all` and its category.
    pub fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<AppendResult, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.delete_stream_with(stream, expected, move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or_else(|_| Err(self.closed("the writer stopped")))
    }

    /// [`EventStore::delete_stream`] without blocking: `done` is called on the writer thread
    /// once the tombstone is durable (or the deletion failed).
    pub fn delete_stream_with(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        done: impl FnOnce(Result<AppendResult, StoreError>) + Send + 'static,
    ) {
        let tombstone = NewEvent {
            id: None,
            event_type: STREAM_DELETED.to_string(),
            data: "{}".to_string(),
            metadata: None,
        };
        if let Err(e) = validate(stream, std::slice::from_ref(&tombstone), true) {
            return done(Err(e));
        }
        self.send(stream, expected, vec![tombstone], Box::new(done));
    }

    /// Up to `limit` events of `stream` from version `from` (inclusive) in `direction`;
    /// backwards from `u64::MAX` reads from the last event. A stream with no event reads empty;
    /// a deleted stream is [`StoreError::StreamDeleted`].
    pub fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let extents = {
            let index = self.read_index();
            let Some(entry) = index.streams.get(stream) else {
                return Ok(Vec::new());
            };
            if entry.deleted {
                return Err(StoreError::StreamDeleted {
                    stream: stream.to_string(),
                });
            }
            let n = entry.positions.len() as u64;
            let positions: Vec<u64> = match direction {
                Direction::Forward => entry
                    .positions
                    .get(from.min(n) as usize..)
                    .unwrap_or(&[])
                    .iter()
                    .take(limit)
                    .copied()
                    .collect(),
                Direction::Backward => {
                    if n == 0 {
                        Vec::new()
                    } else {
                        let top = from.min(n - 1) as usize;
                        entry.positions[..=top].iter().rev().take(limit).copied().collect()
                    }
                }
            };
            if direction == Direction::Backward {
                let mut asc = positions.clone();
                asc.reverse();
                let mut events = decode_extents(index.extents(asc.into_iter()))?;
                drop(index);
                events.reverse();
                return Ok(events);
            }
            index.extents(positions.into_iter())
        };
        decode_extents(extents)
    }

    /// Up to `limit` events that `filter` admits, from global position `from` (inclusive)
    /// upwards. A deleted stream's events, its tombstone last, are still read this way (through
    /// `$all`, its category or a stream filter), so that a subscriber sees the deletion.
    pub fn read(&self, filter: &Filter, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_from(filter, from, limit).map(|(events, _)| events)
    }

    /// [`EventStore::read`], and the position where the next read should start: after the
    /// last event returned, or the head the read looked at when it found fewer than `limit`.
    pub fn read_from(&self, filter: &Filter, from: u64, limit: usize) -> Result<(Vec<RecordedEvent>, u64), StoreError> {
        let (extents, next) = {
            let index = self.read_index();
            let head = index.head();
            let positions: Vec<u64> = match filter {
                Filter::All => (from.min(head)..head).take(limit).collect(),
                Filter::Category(c) => tail_from(index.categories.get(c.as_str()).map(|v| v.as_slice()), from, limit),
                Filter::Stream(s) => tail_from(
                    index.streams.get(s.as_str()).map(|e| e.positions.as_slice()),
                    from,
                    limit,
                ),
            };
            let next = if positions.len() == limit {
                positions.last().map_or(from, |p| p + 1)
            } else {
                head.max(from)
            };
            (index.extents(positions.into_iter()), next)
        };
        Ok((decode_extents(extents)?, next))
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        // A writer that panicked while publishing leaves the index as it was before: reading
        // it is still sound.
        self.inner.shared.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The position the next event will take: the number of durable events.
    pub fn head(&self) -> u64 {
        self.read_index().head()
    }

    /// The last version of `stream` (`None`: no event), and whether it is deleted.
    pub fn stream_version(&self, stream: &str) -> (Option<u64>, bool) {
        let index = self.read_index();
        index
            .streams
            .get(stream)
            .map_or((None, false), |e| (e.current(), e.deleted))
    }

    /// How many group commits and appends the writer made since the store was opened.
    pub fn writer_stats(&self) -> WriterStats {
        use std::sync::atomic::Ordering::Relaxed;
        WriterStats {
            commits: self.inner.shared.commits.load(Relaxed),
            appends: self.inner.shared.appends.load(Relaxed),
        }
    }

    /// The number of streams.
    pub fn stream_count(&self) -> usize {
        self.read_index().streams.len()
    }

    /// Waits until the head is beyond `position` (an event at `position` is durable) or
    /// `timeout` passed; returns the head. A read-only store looks at the files again as it
    /// waits.
    pub fn wait_beyond(&self, position: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        if self.inner.follower.is_some() {
            loop {
                if let Err(e) = self.refresh() {
                    tracing::warn!("{e}");
                }
                let head = self.head();
                let now = Instant::now();
                if head > position || now >= deadline {
                    return head;
                }
                std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
            }
        }
        let shared = &self.inner.shared;
        let mut head = shared.head.lock().unwrap_or_else(|p| p.into_inner());
        while *head <= position {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            head = match shared.grown.wait_timeout(head, deadline - now) {
                Ok((h, _)) => h,
                Err(p) => p.into_inner().0,
            };
        }
        *head
    }

    /// Calls `wake` each time new events become readable (after the sync that makes them
    /// durable, on the thread that publishes them: the writer, or the one refreshing a
    /// read-only store), until the caller drops its last clone of `wake` (the store keeps a
    /// weak reference). `wake` must be quick and must not block (it may read the store): a
    /// reader that polls uses it to be rescheduled instead of polling on a timer.
    pub fn wake_on_new_events(&self, wake: &Arc<dyn Fn() + Send + Sync>) {
        let mut wakers = self.inner.shared.wakers.lock().unwrap_or_else(|p| p.into_inner());
        wakers.retain(|w| w.strong_count() > 0);
        wakers.push(Arc::downgrade(wake));
    }

    /// A channel that holds the head and changes when it grows, for async callers (of a
    /// writer's store; a read-only store's changes when [`EventStore::refresh`] finds events).
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.shared.watch.subscribe()
    }

    /// Reads new events written by another process (a read-only store); a no-op for the
    /// writer's own store.
    pub fn refresh(&self) -> Result<(), StoreError> {
        let Some(scanner) = &self.inner.follower else {
            return Ok(());
        };
        let mut scanner = scanner.lock().unwrap_or_else(|p| p.into_inner());
        let shared = &self.inner.shared;
        let mut index = shared.index.write().unwrap_or_else(|p| p.into_inner());
        let end = scanner.scan(&self.inner.dir, &mut index)?;
        let head = index.head();
        drop(index);
        check_follower_damage(&end, &self.inner.dir)?;
        shared.publish(head);
        Ok(())
    }

    /// A subscription to the events `filter` admits, from global position `from`: first those
    /// already there, then new ones as they become durable.
    pub fn subscribe(&self, filter: Filter, from: u64) -> Subscription {
        Subscription::new(self.clone(), filter, from)
    }

    fn snapshot_path(&self, stream: &str) -> PathBuf {
        let mut name = String::with_capacity(stream.len() * 2 + 5);
        for b in stream.bytes() {
            name.push_str(&format!("{b:02x}"));
        }
        name.push_str(".json");
        self.inner.dir.join("snapshots").join(name)
    }

    /// Saves `stream`'s snapshot: its aggregate's state (JSON text) as of `version` (replaces
    /// the previous one, atomically and durably).
    pub fn save_snapshot(&self, stream: &str, version: u64, state: &str) -> Result<(), StoreError> {
        serde_json::from_str::<serde::de::IgnoredAny>(state).map_err(|e| StoreError::InvalidAppend {
            stream: stream.to_string(),
            reason: format!("the snapshot is not JSON: {e}"),
        })?;
        let path = self.snapshot_path(stream);
        let tmp = path.with_extension("tmp");
        let text = format!("{{\"version\":{version},\"state\":{state}}}");
        (|| -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)
        })()
        .map_err(|e| StoreError::io("cannot write the snapshot", &path, e))?;
        if let Some(parent) = path.parent() {
            log::sync_dir(parent)?;
        }
        Ok(())
    }

    /// `stream`'s latest snapshot, if one was saved.
    pub fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        #[derive(serde::Deserialize)]
        struct Stored<'a> {
            version: u64,
            #[serde(borrow)]
            state: &'a serde_json::value::RawValue,
        }
        let path = self.snapshot_path(stream);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("cannot read the snapshot", &path, e)),
        };
        let s: Stored<'_> = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            offset: e.column() as u64,
            reason: e.to_string(),
        })?;
        Ok(Some(Snapshot {
            version: s.version,
            state: s.state.get().to_string(),
        }))
    }
}

impl Shared {
    fn publish(&self, head: u64) {
        let mut h = self.head.lock().unwrap_or_else(|p| p.into_inner());
        if head <= *h {
            return;
        }
        *h = head;
        self.grown.notify_all();
        self.watch.send_replace(head);
        drop(h);
        // Called outside every lock of the store: a waker may take its own locks.
        let wakers: Vec<Arc<dyn Fn() + Send + Sync>> = {
            let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
            wakers.retain(|w| w.strong_count() > 0);
            wakers.iter().filter_map(Weak::upgrade).collect()
        };
        for wake in wakers {
            wake();
        }
    }
}

/// The positions of a stream or category at or after `from`, at most `limit`.
fn tail_from(positions: Option<&[u64]>, from: u64, limit: usize) -> Vec<u64> {
    let Some(p) = positions else { return Vec::new() };
    let start = p.partition_point(|&x| x < from);
    p[start..].iter().take(limit).copied().collect()
}

fn decode_extents(extents: Vec<crate::index::Extent>) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for ext in extents {
        buf.resize((ext.end - ext.start) as usize, 0);
        ext.file
            .read_exact_at(&mut buf, ext.start)
            .map_err(|e| StoreError::io("cannot read event store segment", &ext.path, e))?;
        let mut at = 0;
        while at < buf.len() {
            match log::decode_frame(&buf[at..]) {
                log::Frame::Event(e, _, len) => {
                    out.push(e);
                    at += len;
                }
                log::Frame::Incomplete | log::Frame::Damaged(_) => {
                    return Err(StoreError::Corrupt {
                        path: ext.path.clone(),
                        offset: ext.start + at as u64,
                        reason: "an indexed event no longer checks out".to_string(),
                    })
                }
            }
        }
    }
    Ok(out)
}

fn check_follower_damage(end: &crate::index::ScanEnd, dir: &Path) -> Result<(), StoreError> {
    // Damage in the last segment may be an append still being written: look again later.
    // Damage before it is real.
    if let Some((path, offset, reason)) = &end.damage {
        let last = log::list_segments(dir)?.last().map(|(_, p)| p.clone());
        if last.as_ref() != Some(path) {
            return Err(StoreError::Corrupt {
                path: path.clone(),
                offset: *offset,
                reason: reason.clone(),
            });
        }
    }
    Ok(())
}

fn validate(stream: &str, events: &[NewEvent], system: bool) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidAppend {
        stream: stream.to_string(),
        reason,
    };
    if stream.is_empty() {
        return Err(invalid("the stream id is empty".into()));
    }
    if stream.len() > MAX_STREAM_ID {
        return Err(invalid(format!("the stream id is longer than {MAX_STREAM_ID} bytes")));
    }
    if stream.chars().any(|c| c.is_control()) {
        return Err(invalid("the stream id has a control character".into()));
    }
    if events.is_empty() {
        return Err(invalid("an append needs at least one event".into()));
    }
    let mut ids = std::collections::HashSet::new();
    for (i, e) in events.iter().enumerate() {
        if e.event_type.is_empty() {
            return Err(invalid(format!("event {i}: the type is empty")));
        }
        if e.event_type.starts_with('$') && !system {
            return Err(invalid(format!(
                "event {i}: types starting with '$' are the store's own"
            )));
        }
        if e.event_type.len() > MAX_STREAM_ID || e.event_type.chars().any(|c| c.is_control()) {
            return Err(invalid(format!(
                "event {i}: the type is longer than {MAX_STREAM_ID} bytes or has a control character"
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&e.data)
            .map_err(|err| invalid(format!("event {i}: the data is not JSON: {err}")))?;
        if let Some(m) = &e.metadata {
            serde_json::from_str::<serde::de::IgnoredAny>(m)
                .map_err(|err| invalid(format!("event {i}: the metadata is not JSON: {err}")))?;
        }
        if e.data.len() + e.metadata.as_ref().map_or(0, |m| m.len()) > log::MAX_PAYLOAD - MAX_STREAM_ID * 2 - 64 {
            return Err(invalid(format!("event {i}: larger than {} bytes", log::MAX_PAYLOAD)));
        }
        if let Some(id) = e.id {
            if !ids.insert(id) {
                return Err(invalid(format!("event {i}: id {id} appears twice in the append")));
            }
        }
    }
    Ok(())
}

fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("LOCK");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io("cannot open the lock file", &path, e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
                holder: if holder.trim().is_empty() {
                    "holder unknown".to_string()
                } else {
                    holder.trim().to_string()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io("cannot lock", &path, e)),
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let me = format!("pid {} on host {}", std::process::id(), host.trim());
    f.set_len(0)
        .and_then(|_| f.write_all(me.as_bytes()))
        .map_err(|e| StoreError::io("cannot write the lock file", &path, e))?;
    Ok(f)
}

fn create_segment(dir: &Path, path: &Path) -> Result<(), StoreError> {
    OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io("cannot create event store segment", path, e))?;
    log::sync_dir(dir)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Options {
    segment_bytes: u64,
    fsync: bool,
    max_batch_events: usize,
}

impl From<StoreOptions> for Options {
    fn from(o: StoreOptions) -> Self {
        Options {
            segment_bytes: o.segment_bytes.clamp(1, 2 << 30),
            fsync: o.fsync,
            max_batch_events: o.max_batch_events.max(1),
        }
    }
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    shared: Arc<Shared>,
    /// The last segment, opened for appending, and its length.
    file: File,
    len: u64,
    options: Options,
    /// Set when a write failed and could not be undone: every later append fails.
    failed: Option<String>,
    buf: Vec<u8>,
}

/// One append of a group, decided.
struct Decided {
    done: Done,
    outcome: Result<AppendResult, StoreError>,
    /// The events to write (empty when the append failed or was already written).
    events: Vec<RecordedEvent>,
}

/// What the appends decided earlier in the same group did to a stream.
struct Pending {
    current: Option<u64>,
    deleted: bool,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        let mut group: Vec<Request> = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut events = first.events.len();
            group.push(first);
            while events < self.options.max_batch_events {
                match rx.try_recv() {
                    Ok(r) => {
                        events += r.events.len();
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut group);
        }
    }

    /// Decides, writes, syncs and publishes one group of appends, then answers them.
    fn commit(&mut self, group: &mut Vec<Request>) {
        let mut decided: Vec<Decided> = Vec::with_capacity(group.len());
        {
            let index = self.shared.index.read().unwrap_or_else(|p| p.into_inner());
            let mut next_position = index.head();
            let mut timestamp = now_millis().max(index.last_timestamp);
            let mut streams: HashMap<String, Pending> = HashMap::new();
            let mut ids: HashMap<Uuid, (String, u64, u64)> = HashMap::new();
            for r in group.drain(..) {
                if let Some(reason) = &self.failed {
                    decided.push(Decided {
                        done: r.done,
                        outcome: Err(StoreError::Closed {
                            dir: self.dir.clone(),
                            reason: reason.clone(),
                        }),
                        events: Vec::new(),
                    });
                    continue;
                }
                let outcome = decide(&index, &streams, &ids, &r);
                let mut events = Vec::new();
                if let Ok(result) = &outcome {
                    if !result.already_written {
                        timestamp = timestamp.max(now_millis());
                        for (i, e) in r.events.into_iter().enumerate() {
                            let version = result.first_version + i as u64;
                            // Only a client's ids can come again later in the group; an id
                            // made here is known to nobody before the group is published.
                            let id = match e.id {
                                Some(id) => {
                                    ids.insert(id, (r.stream.clone(), version, next_position));
                                    id
                                }
                                None => Uuid::new_v4(),
                            };
                            events.push(RecordedEvent {
                                stream: r.stream.clone(),
                                id,
                                event_type: e.event_type,
                                data: e.data,
                                metadata: e.metadata.unwrap_or_else(|| "{}".to_string()),
                                version,
                                position: next_position,
                                timestamp,
                            });
                            next_position += 1;
                        }
                        let deleted = events.iter().any(|e| e.event_type == STREAM_DELETED);
                        streams.insert(
                            r.stream.clone(),
                            Pending {
                                current: Some(result.last_version),
                                deleted,
                            },
                        );
                    }
                }
                let outcome = outcome.map(|mut res| {
                    if !res.already_written {
                        res.first_position = events.first().map_or(0, |e| e.position);
                        res.position = events.last().map_or(0, |e| e.position);
                    }
                    res
                });
                decided.push(Decided {
                    done: r.done,
                    outcome,
                    events,
                });
            }
        }
        let written = self.write(&decided);
        match written {
            Ok(locations) => {
                let head = {
                    let mut index = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
                    let last = index.segments.len() - 1;
                    index.segments[last].len = self.len;
                    let mut locs = locations.into_iter();
                    for d in &decided {
                        for e in &d.events {
                            if let Some(loc) = locs.next() {
                                index.add(e, loc);
                            }
                        }
                    }
                    index.head()
                };
                self.shared.publish(head);
                for d in decided {
                    (d.done)(d.outcome);
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for d in decided {
                    let outcome = match d.outcome {
                        Ok(_) if !d.events.is_empty() => Err(StoreError::Closed {
                            dir: self.dir.clone(),
                            reason: format!("the append was not written: {reason}"),
                        }),
                        other => other,
                    };
                    (d.done)(outcome);
                }
            }
        }
    }

    /// Writes the decided events with one write and one sync; returns where each one went.
    fn write(&mut self, decided: &[Decided]) -> Result<Vec<Location>, StoreError> {
        let count: usize = decided.iter().map(|d| d.events.len()).sum();
        if count == 0 {
            return Ok(Vec::new());
        }
        if self.len >= self.options.segment_bytes {
            self.rotate(
                decided
                    .iter()
                    .flat_map(|d| d.events.first())
                    .map(|e| e.position)
                    .min()
                    .unwrap_or(0),
            )?;
        }
        let segment = {
            let index = self.shared.index.read().unwrap_or_else(|p| p.into_inner());
            (index.segments.len() - 1) as u32
        };
        self.buf.clear();
        let mut locations = Vec::with_capacity(count);
        for d in decided {
            let n = d.events.len();
            for (i, e) in d.events.iter().enumerate() {
                locations.push(Location {
                    segment,
                    offset: (self.len + self.buf.len() as u64) as u32,
                });
                log::encode_frame(
                    &mut self.buf,
                    &EventRef {
                        position: e.position,
                        version: e.version,
                        timestamp: e.timestamp,
                        id: e.id,
                        stream: &e.stream,
                        event_type: &e.event_type,
                        data: &e.data,
                        metadata: &e.metadata,
                    },
                    i + 1 == n,
                );
            }
        }
        let path = log::segment_path(&self.dir, self.first_position_of_last());
        let result = self.file.write_all(&self.buf).and_then(|_| {
            if self.options.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            // Undo the partial write so that a later append does not follow garbage; if even
            // that fails, stop: the recovery scan at the next open will cut it.
            if let Err(undo) = self.file.set_len(self.len) {
                self.failed = Some(format!(
                    "a write to {} failed ({e}) and could not be undone ({undo}); reopen the store",
                    path.display()
                ));
            }
            return Err(StoreError::io("cannot write event store segment", path, e));
        }
        self.len += self.buf.len() as u64;
        use std::sync::atomic::Ordering::Relaxed;
        self.shared.commits.fetch_add(1, Relaxed);
        self.shared
            .appends
            .fetch_add(decided.iter().filter(|d| !d.events.is_empty()).count() as u64, Relaxed);
        Ok(locations)
    }

    fn first_position_of_last(&self) -> u64 {
        let index = self.shared.index.read().unwrap_or_else(|p| p.into_inner());
        index.segments.last().map_or(0, |s| s.first_position)
    }

    /// Closes the current segment and starts one whose first event is at `first_position`.
    fn rotate(&mut self, first_position: u64) -> Result<(), StoreError> {
        let path = log::segment_path(&self.dir, first_position);
        create_segment(&self.dir, &path)?;
        let append = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io("cannot open event store segment", &path, e))?;
        let read = File::open(&path).map_err(|e| StoreError::io("cannot open event store segment", &path, e))?;
        {
            let mut index = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
            index.segments.push(Segment {
                first_position,
                path,
                file: Arc::new(read),
                len: 0,
            });
        }
        self.file = append;
        self.len = 0;
        Ok(())
    }
}

/// Decides one append against the durable index and the appends decided before it in its
/// group: its versions, or why it fails, or that it was already written.
fn decide(
    index: &Index,
    streams: &HashMap<String, Pending>,
    ids: &HashMap<Uuid, (String, u64, u64)>,
    r: &Request,
) -> Result<AppendResult, StoreError> {
    let (current, deleted) = match streams.get(&r.stream) {
        Some(p) => (p.current, p.deleted),
        None => index
            .streams
            .get(r.stream.as_str())
            .map_or((None, false), |e| (e.current(), e.deleted)),
    };
    // An append whose ids are already in the store: a retry of an earlier append.
    let where_is = |id: &Uuid| -> Option<(String, u64, u64)> {
        if let Some(found) = ids.get(id) {
            return Some(found.clone());
        }
        let position = *index.ids.get(id)?;
        // The stream and version of a durable event: its stream is the one whose positions
        // hold it; only the appended stream needs checking.
        let entry = index.streams.get(r.stream.as_str());
        let version = entry.and_then(|e| e.positions.binary_search(&position).ok());
        Some(match version {
            Some(v) => (r.stream.clone(), v as u64, position),
            None => (String::new(), 0, position),
        })
    };
    let known: Vec<Option<(String, u64, u64)>> = r.events.iter().map(|e| e.id.as_ref().and_then(where_is)).collect();
    if known.iter().any(|k| k.is_some()) {
        let whole = known.iter().enumerate().all(|(i, k)| match (k, &known[0]) {
            (Some((s, v, _)), Some((_, v0, _))) => *s == r.stream && *v == v0 + i as u64,
            _ => false,
        });
        if whole {
            let (first, last) = (known[0].as_ref(), known[known.len() - 1].as_ref());
            if let (Some((_, fv, fp)), Some((_, lv, lp))) = (first, last) {
                return Ok(AppendResult {
                    first_version: *fv,
                    last_version: *lv,
                    first_position: *fp,
                    position: *lp,
                    already_written: true,
                });
            }
        }
        let (i, id) = known
            .iter()
            .zip(&r.events)
            .enumerate()
            .find_map(|(i, (k, e))| k.as_ref().and(e.id).map(|id| (i, id)))
            .unwrap_or((0, Uuid::nil()));
        return Err(StoreError::InvalidAppend {
            stream: r.stream.clone(),
            reason: format!(
                "event {i}: id {id} was already appended, and the append is not a retry of that append (the same ids, in the same order, to the same stream)"
            ),
        });
    }
    if deleted {
        return Err(StoreError::StreamDeleted {
            stream: r.stream.clone(),
        });
    }
    if !r.expected.admits(current) {
        return Err(StoreError::WrongExpectedVersion {
            stream: r.stream.clone(),
            expected: r.expected,
            current,
        });
    }
    let first_version = current.map_or(0, |v| v + 1);
    Ok(AppendResult {
        first_version,
        last_version: first_version + r.events.len() as u64 - 1,
        first_position: 0,
        position: 0,
        already_written: false,
    })
}
