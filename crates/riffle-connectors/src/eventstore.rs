//! The event store as a source: `store://DIR` reads Riffle's embedded event store
//! ([`riffle_eventstore`]), so that a projection (a read model, a process manager) is an
//! ordinary Riffle job that resumes exactly where its last checkpoint left it.
//!
//! ```text
//! store://DIR[?from=P][&category=C | &stream=S][&follow=true|false]
//! ```
//!
//! * **One split**: the store's log is one ordered sequence (`$all`, by global position), so it
//!   is read by one worker, in order; a job spreads the events over its workers by stream id
//!   (`key_by` on the `stream` field keeps each stream's order).
//! * **Lines**: each event is one line, its JSON ([`RecordedEvent::write_json`]:
//!   `{"stream","id","type","data","metadata","version","position","timestamp"}`). Line `L` of
//!   the split is the event at global position `L - 1` (a malformed-record report
//!   `store://DIR:L` names the event a user can read back), so a chunk is a run of consecutive
//!   positions; a category or stream filter skips positions, which starts a new chunk.
//! * **Position**: the split's checkpoint position is the global position after the last event
//!   handed out (`offset`), so a job restored from a checkpoint resumes after the last event of
//!   the checkpointed epoch: with an exactly-once sink, every event is reflected exactly once.
//! * **Bounded or live**: `follow=false` reads up to the head as of the moment the split is
//!   opened, then ends (the job finishes); `follow=true` (the default) waits for new events
//!   (`Poll::Pending` in between), so the job runs until stopped.
//! * **Which store**: if the store at `DIR` is open for writing in this process and was
//!   registered with [`register_open_store`] (an application that runs the store and its
//!   projections in one process, the bank example), the split reads that instance, seeing each
//!   event as soon as it is durable. Otherwise it opens the directory read-only
//!   ([`EventStore::open_read_only`]), following what the owning process writes.
//!
//! The remote store, through its HTTP server, is `store+http://` (see
//! [`crate::eventstore_http`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use riffle_core::{Error, Result};
use riffle_eventstore::{EventStore, Filter, RecordedEvent, StoreError};

use crate::source::{LineChunk, LineReader, Poll, Source, Split, SplitPosition, SplitSpec};

/// How often a read-only store that has nothing new looks at its files again.
const REFRESH_EVERY: Duration = Duration::from_millis(2);

/// The stores open for writing in this process, by canonical directory.
fn open_stores() -> &'static Mutex<HashMap<PathBuf, EventStore>> {
    static STORES: OnceLock<Mutex<HashMap<PathBuf, EventStore>>> = OnceLock::new();
    STORES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The canonical form of `dir` (the key of the registry), or `dir` itself when it does not
/// exist (yet).
fn canonical(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Makes `store` (opened for writing by this process) the one that `store://` sources of its
/// directory read, instead of opening the directory read-only: they then see each event as
/// soon as it is durable, with no file polling. The registration lasts as long as the
/// returned guard; dropping it unregisters the store (and releases the registry's clone, so
/// the writer stops once the application drops its own).
///
/// ```
/// use riffle_eventstore::EventStore;
/// let dir = tempfile::tempdir().unwrap();
/// # let _ = || -> Result<(), Box<dyn std::error::Error>> {
/// let store = EventStore::open(dir.path())?;
/// let _registered = riffle_connectors::eventstore::register_open_store(&store);
/// // `store://DIR` sources of this process now read `store`.
/// # Ok(()) };
/// ```
pub fn register_open_store(store: &EventStore) -> RegisteredStore {
    let dir = canonical(store.dir());
    open_stores()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(dir.clone(), store.clone());
    RegisteredStore { dir }
}

/// The store registered for `dir` in this process, if any.
pub fn registered_store(dir: &Path) -> Option<EventStore> {
    open_stores()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&canonical(dir))
        .cloned()
}

/// Keeps a store registered (see [`register_open_store`]); unregisters it when dropped.
#[derive(Debug)]
pub struct RegisteredStore {
    dir: PathBuf,
}

impl Drop for RegisteredStore {
    fn drop(&mut self) {
        open_stores()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.dir);
    }
}

/// An event store error as an engine error, naming the store and what was being done.
pub(crate) fn store_error(what: &'static str, dir: &Path, e: StoreError) -> Error {
    Error::Io {
        what,
        path: dir.to_path_buf(),
        source: std::io::Error::other(e),
    }
}

/// Which events a `store://` or `store+http://` URI selects, from where, and whether it
/// follows new ones: the query part shared by both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreQuery {
    /// The events read.
    pub filter: Filter,
    /// The global position to start from (inclusive) when there is no checkpoint.
    pub from: u64,
    /// Whether to wait for new events at the head (`true`) or end there (`false`).
    pub follow: bool,
}

impl StoreQuery {
    /// Parses `from=P`, `category=C`, `stream=S`, `follow=true|false` (and hands any other
    /// `key=value` to `other`, which returns false for a key it does not know either).
    pub(crate) fn parse(uri: &str, query: &str, mut other: impl FnMut(&str, &str) -> bool) -> Result<StoreQuery> {
        let bad = |why: String| Error::Config(format!("source '{uri}': {why}"));
        let mut q = StoreQuery {
            filter: Filter::All,
            from: 0,
            follow: true,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("expected key=value, got '{pair}'")))?;
            let v = percent_decode(v);
            match k {
                "from" => {
                    q.from = v
                        .parse()
                        .map_err(|_| bad(format!("from={v} is not a position (0, 1, …)")))?
                }
                "follow" => {
                    q.follow = match v.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(format!("follow={v}: expected true or false"))),
                    }
                }
                "category" | "stream" => {
                    if q.filter != Filter::All {
                        return Err(bad("give at most one of category= and stream=".into()));
                    }
                    if v.is_empty() {
                        return Err(bad(format!("{k}= is empty")));
                    }
                    q.filter = if k == "category" {
                        Filter::Category(v)
                    } else {
                        Filter::Stream(v)
                    };
                }
                _ if other(k, &v) => {}
                _ => return Err(bad(format!("unknown parameter '{k}'"))),
            }
        }
        Ok(q)
    }
}

/// `%XX` escapes decoded (a stream id may hold characters a URI cannot).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `store://DIR?…`: the embedded event store (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSource {
    dir: PathBuf,
    query: StoreQuery,
}

impl StoreSource {
    /// The events `query` selects of the store in `dir`.
    pub fn new(dir: impl Into<PathBuf>, query: StoreQuery) -> Self {
        StoreSource { dir: dir.into(), query }
    }

    /// Parses `store://DIR[?from=P][&category=C | &stream=S][&follow=true|false]`.
    ///
    /// ```
    /// use riffle_connectors::eventstore::StoreSource;
    /// use riffle_eventstore::Filter;
    /// let s = StoreSource::parse("store:///data/bank?category=account&from=7&follow=false").unwrap();
    /// assert_eq!(s.query().filter, Filter::Category("account".into()));
    /// assert_eq!((s.query().from, s.query().follow), (7, false));
    /// assert!(StoreSource::parse("store://").is_err());
    /// assert!(StoreSource::parse("store:///d?category=a&stream=a-1").is_err());
    /// ```
    pub fn parse(uri: &str) -> Result<Self> {
        let rest = uri.strip_prefix("store://").unwrap_or(uri);
        let (dir, query) = rest.split_once('?').unwrap_or((rest, ""));
        if dir.is_empty() {
            return Err(Error::Config(format!(
                "source '{uri}': expected store://DIR[?from=P][&category=C | &stream=S][&follow=true|false]"
            )));
        }
        Ok(StoreSource::new(dir, StoreQuery::parse(uri, query, |_, _| false)?))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What is read.
    pub fn query(&self) -> &StoreQuery {
        &self.query
    }
}

impl Source for StoreSource {
    fn name(&self) -> String {
        format!("store://{}", self.dir.display())
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        if registered_store(&self.dir).is_none() && !self.dir.is_dir() {
            return Err(Error::Io {
                what: "cannot open event store",
                path: self.dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            });
        }
        Ok(vec![SplitSpec::new(self.clone())])
    }
}

impl Split for StoreSource {
    fn name(&self) -> String {
        Source::name(self)
    }

    fn description(&self) -> String {
        format!("the event store {}", self.dir.display())
    }

    fn is_bounded(&self) -> bool {
        !self.query.follow
    }

    fn is_replayable(&self) -> bool {
        true
    }

    fn open_at(&self, position: Option<SplitPosition>) -> Result<Box<dyn LineReader>> {
        let (store, read_only) = match registered_store(&self.dir) {
            Some(store) => (store, false),
            None => (
                EventStore::open_read_only(&self.dir)
                    .map_err(|e| store_error("cannot open event store", &self.dir, e))?,
                true,
            ),
        };
        let next = position.map_or(self.query.from, |p| p.offset);
        // A bounded read ends at the head as of now (the events durable when it starts).
        let until = (!self.query.follow).then(|| store.head());
        Ok(Box::new(StoreReader {
            origin: Split::name(self).into(),
            store,
            read_only,
            filter: self.query.filter.clone(),
            next,
            until,
            pending: PendingEvents::default(),
            last_refresh: None,
        }))
    }
}

/// Events read but not yet handed out, as lines with their global positions; handed out in
/// runs of consecutive positions (a chunk's lines are numbered consecutively).
#[derive(Default)]
pub(crate) struct PendingEvents {
    events: std::collections::VecDeque<(u64, Vec<u8>)>,
}

impl PendingEvents {
    pub(crate) fn push(&mut self, position: u64, line: Vec<u8>) {
        self.events.push_back((position, line));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Up to `max` next events of consecutive positions, as a chunk whose line `L` is the
    /// event at position `L - 1`; and the position after its last event.
    pub(crate) fn take_run(&mut self, max: usize) -> Option<(LineChunk, u64)> {
        let &(first, _) = self.events.front()?;
        let mut lines = Vec::new();
        let mut expected = first;
        while lines.len() < max.max(1) {
            match self.events.front() {
                Some(&(p, _)) if p == expected => {
                    if let Some((_, line)) = self.events.pop_front() {
                        lines.push(line);
                    }
                    expected += 1;
                }
                _ => break,
            }
        }
        Some((
            LineChunk {
                first_line: first + 1,
                lines,
            },
            expected,
        ))
    }
}

/// Reads the embedded store from a position without blocking: each poll reads what the
/// indexes hold beyond it.
struct StoreReader {
    origin: Arc<str>,
    store: EventStore,
    read_only: bool,
    filter: Filter,
    /// The global position from which to read next: every event the filter admits below it
    /// was handed out.
    next: u64,
    /// For a bounded read: the head when it started.
    until: Option<u64>,
    pending: PendingEvents,
    last_refresh: Option<Instant>,
}

impl StoreReader {
    fn error(&self, e: StoreError) -> Error {
        store_error("cannot read event store", self.store.dir(), e)
    }
}

impl LineReader for StoreReader {
    fn origin(&self) -> &Arc<str> {
        &self.origin
    }

    /// A store open for writing in this process publishes its events itself, and calls
    /// `wake` as it does; a read-only store finds them only when polled (it refreshes).
    fn wake_on_data(&mut self, wake: &Arc<dyn Fn() + Send + Sync>) -> bool {
        if self.read_only {
            return false;
        }
        self.store.wake_on_new_events(wake);
        true
    }

    fn poll(&mut self, max_lines: usize) -> Result<Poll> {
        if self.pending.is_empty() {
            if self.until.is_some_and(|until| self.next >= until) {
                return Ok(Poll::Finished);
            }
            let limit = match self.until {
                // Never past the bound (a filter may skip positions, so the limit alone would not keep it).
                Some(until) => max_lines.min((until - self.next) as usize),
                None => max_lines,
            };
            let mut events = self
                .store
                .read(&self.filter, self.next, limit.max(1))
                .map_err(|e| self.error(e))?;
            if let Some(until) = self.until {
                events.retain(|e| e.position < until);
            }
            if events.is_empty() {
                if self.until.is_some() {
                    // Nothing the filter admits is left below the bound.
                    self.next = self.until.unwrap_or(self.next);
                    return Ok(Poll::Finished);
                }
                if self.read_only && self.last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
                    self.last_refresh = Some(Instant::now());
                    self.store.refresh().map_err(|e| self.error(e))?;
                }
                return Ok(Poll::Pending);
            }
            for e in &events {
                let mut line = String::with_capacity(160 + e.data.len() + e.metadata.len());
                e.write_json(&mut line);
                self.pending.push(e.position, line.into_bytes());
            }
        }
        match self.pending.take_run(max_lines) {
            Some((chunk, after)) => {
                self.next = after;
                Ok(Poll::Chunk(chunk))
            }
            None => Ok(Poll::Pending),
        }
    }

    fn position(&self) -> Option<SplitPosition> {
        // `next` moves only as events are handed out: those read from the store but still
        // pending are read again after a restore.
        Some(SplitPosition::at_record(self.next))
    }
}

/// Parses an event line of a `store://` or `store+http://` source, for a job's record parser:
/// the error says what is wrong (the source shell adds where).
///
/// ```
/// let line = r#"{"stream":"account-1","id":"00000000-0000-0000-0000-000000000000","type":"Deposited","data":{"amount":5},"metadata":{},"version":0,"position":3,"timestamp":1000}"#;
/// let e = riffle_connectors::eventstore::parse_event(line).unwrap();
/// assert_eq!((e.stream.as_str(), e.position, e.data.as_str()), ("account-1", 3, r#"{"amount":5}"#));
/// assert!(riffle_connectors::eventstore::parse_event("{}").is_err());
/// ```
pub fn parse_event(line: &str) -> std::result::Result<RecordedEvent, String> {
    RecordedEvent::from_json(line).map_err(|e| format!("not an event of the store: {e}"))
}
