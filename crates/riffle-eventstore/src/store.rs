//! [`EventStore`]: appends through one group-commit writer thread, reads from the segment files
//! through the in-memory indexes.

use crate::{
    AppendResult, Direction, ExpectedVersion, Filter, NewEvent, RecordedEvent, Snapshot, StoreError, Subscription,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A segment file is closed and a new one started once it holds this many bytes.
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
            max_batch_events: 4096,
        }
    }
}

/// An event store on a directory. Cloning it is cheap (it is shared); the writer stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct EventStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
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
        let _ = (dir, options);
        todo!()
    }

    /// Opens the store in `dir` to read what another process writes: no lock, no writer;
    /// [`EventStore::refresh`] (and subscriptions, as they wait) pick up new events.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<EventStore, StoreError> {
        let _ = dir;
        todo!()
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
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
        let _ = (stream, expected, events);
        todo!()
    }

    /// [`EventStore::append`] without blocking: `done` is called on the writer thread once the
    /// events are durable (or the append failed). For async callers (send the result on a
    /// oneshot channel).
    pub fn append_with(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        done: impl FnOnce(Result<AppendResult, StoreError>) + Send + 'static,
    ) {
        let _ = (stream, expected, events, done);
        todo!()
    }

    /// Deletes `stream` if it meets `expected`: appends its tombstone (an event of type
    /// [`crate::STREAM_DELETED`] at its next version); the stream can no longer be read or
    /// appended to. Its events stay in `$all` and its category.
    pub fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<AppendResult, StoreError> {
        let _ = (stream, expected);
        todo!()
    }

    /// Up to `limit` events of `stream` from version `from` (inclusive) in `direction`;
    /// backwards from `u64::MAX` reads from the last event. A stream with no event reads empty.
    pub fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let _ = (stream, from, direction, limit);
        todo!()
    }

    /// Up to `limit` events that `filter` admits, from global position `from` (inclusive)
    /// upwards. A stream filter reads the stream from the version at or after that position.
    pub fn read(&self, filter: &Filter, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let _ = (filter, from, limit);
        todo!()
    }

    /// The position the next event will take: the number of durable events.
    pub fn head(&self) -> u64 {
        todo!()
    }

    /// The last version of `stream` (`None`: no event), and whether it is deleted.
    pub fn stream_version(&self, stream: &str) -> (Option<u64>, bool) {
        let _ = stream;
        todo!()
    }

    /// Waits until the head is beyond `position` (an event at `position` is durable) or
    /// `timeout` passed; returns the head. A read-only store looks at the files again as it
    /// waits.
    pub fn wait_beyond(&self, position: u64, timeout: Duration) -> u64 {
        let _ = (position, timeout);
        todo!()
    }

    /// A channel that holds the head and changes when it grows, for async callers.
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        todo!()
    }

    /// Reads new events written by another process (a read-only store); a no-op for the
    /// writer's own store.
    pub fn refresh(&self) -> Result<(), StoreError> {
        todo!()
    }

    /// A subscription to the events `filter` admits, from global position `from`: first those
    /// already there, then new ones as they become durable.
    pub fn subscribe(&self, filter: Filter, from: u64) -> Subscription {
        Subscription::new(self.clone(), filter, from)
    }

    /// Saves `stream`'s snapshot: its aggregate's state as of `version` (replaces the previous
    /// one, atomically and durably).
    pub fn save_snapshot(&self, stream: &str, version: u64, state: &str) -> Result<(), StoreError> {
        let _ = (stream, version, state);
        todo!()
    }

    /// `stream`'s latest snapshot, if one was saved.
    pub fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let _ = stream;
        todo!()
    }
}
