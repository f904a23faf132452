//! Riffle's embedded event store: the source of truth of an event-sourced application, and a
//! source of Riffle jobs (its projections).
//!
//! An append writes one or more events to one stream atomically, with an expected version
//! ([`ExpectedVersion`]), and is acknowledged only once it is on disk (fsync); appends that
//! arrive together share one fsync (group commit). Re-appending the same event ids to the same
//! stream returns the original positions and writes nothing, so a client can retry after a
//! timeout. Events are read by stream (forwards or backwards), by category (the stream id's
//! prefix before the first `-`) and all together (`$all`, by global position, dense from 0).
//! A [`Subscription`] reads from a position and then waits for new events: catch-up and live
//! are the same read of the log, so there is no switch where an event could be skipped or
//! seen twice.
//!
//! | module | holds |
//! |---|---|
//! | [`event`] | what is appended and recorded, expected versions, categories |
//! | `log` | the segment files: record format, checksums, the recovery scan that cuts a torn tail |
//! | `index` | the in-memory indexes by stream, category and event id, rebuilt by the scan |
//! | [`store`] | [`EventStore`]: the group-commit writer, reads, deletion, snapshots |
//! | [`subscription`] | [`Subscription`]: catch-up then live |
//! | [`cqrs`] | the write side: [`cqrs::Aggregate`], [`cqrs::CommandHandler`] (load, decide, append with the expected version) |
//!
//! ```
//! use riffle_eventstore::{EventStore, ExpectedVersion, NewEvent, Filter};
//! let dir = tempfile::tempdir().unwrap();
//! let store = EventStore::open(dir.path()).unwrap();
//! let opened = NewEvent::json("Opened", &serde_json::json!({"owner": "ann"})).unwrap();
//! let r = store.append("account-1", ExpectedVersion::NoStream, vec![opened]).unwrap();
//! assert_eq!((r.first_version, r.position), (0, 0));
//! // A second writer that expected no stream loses, and learns the current version.
//! let again = NewEvent::json("Opened", &serde_json::json!({"owner": "bob"})).unwrap();
//! assert!(store.append("account-1", ExpectedVersion::NoStream, vec![again]).is_err());
//! let all = store.read(&Filter::All, 0, 10).unwrap();
//! assert_eq!(all.len(), 1);
//! assert_eq!(all[0].category(), "account");
//! ```

// A library does not panic on a value it could not get: it returns an error that says which.
#![warn(clippy::expect_used)]

pub mod cqrs;
mod error;
pub mod event;
mod index;
mod log;
pub mod store;
pub mod subscription;

pub use error::StoreError;
pub use event::{
    category_of, compact_json, AppendResult, Direction, ExpectedVersion, Filter, NewEvent, RecordedEvent, Snapshot,
    STREAM_DELETED,
};
pub use store::{EventStore, StoreOptions, WriterStats};
pub use subscription::Subscription;
pub use uuid::Uuid;
