//! What Riffle persists, apart from the engine that runs jobs: the checkpoint file format, the
//! checkpoint store (snapshots, manifests, recovery, retention), savepoints and job
//! fingerprints.
//!
//! The runtime decides when operators snapshot and what their state is; this crate decides how
//! it is written, which checkpoint a restarted job restores and which files a running job may
//! delete. It knows neither timely dataflow nor Kafka, so those decisions are tested here on
//! plain data and files. `riffle_runtime::checkpoint` re-exports it where jobs have always found
//! it. The event store (an application's events, not a job's state) is the crate beside it,
//! `riffle-eventstore`.
//!
//! | module | holds |
//! |---|---|
//! | [`format`](mod@format) | the bytes: sealed (checksummed, versioned) part files and manifests, atomic writes, the directory layout, snapshot encoding |
//! | [`store`] | [`CheckpointStore`]: writing snapshots, completing checkpoints, restoring |
//! | `manifest` | what a manifest lists, which checkpoint to restore, when one is complete (pure functions) |
//! | `retention` | which epoch directories are deleted (pure functions) |
//! | [`savepoint`](mod@savepoint) | savepoints and the peek at a checkpoint's fingerprint |
//! | [`fingerprint`] | [`JobFingerprint`]: what a job's state depends on |
//! | [`storage`] | where checkpoint files live: a directory or an object store (`s3://`) |
//! | `fence` | the lock and the attempt number that keep a second instance or a zombie from committing |

// A library does not panic on a value it could not get: it returns an error that says which.
#![warn(clippy::expect_used)]

mod fence;
pub mod fingerprint;
pub mod format;
mod manifest;
mod retention;
pub mod savepoint;
pub mod storage;
pub mod store;

pub use fingerprint::{FingerprintDifference, JobFingerprint, FINGERPRINT_FILE};
pub use format::{decode, encode};
pub use savepoint::savepoint;
pub use store::{CheckpointConfig, CheckpointStore, Parts, SnapshotKind};
