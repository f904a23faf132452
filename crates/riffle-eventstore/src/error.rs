//! What can go wrong with the event store, said so that a caller knows whether to retry.

use std::path::PathBuf;

/// An error of the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream's version is not the one the append expected: nothing was written. Reload the
    /// stream and decide again (a retry with the same expectation fails the same way).
    #[error("wrong expected version for stream {stream:?}: expected {expected}, current {}", current.map_or("none (no stream)".to_string(), |v| v.to_string()))]
    WrongExpectedVersion {
        /// The stream appended to.
        stream: String,
        /// What the append expected.
        expected: crate::ExpectedVersion,
        /// The stream's last version, `None` when it has no event.
        current: Option<u64>,
    },
    /// The stream was deleted: it can be neither read nor appended to.
    #[error("stream {stream:?} is deleted")]
    StreamDeleted {
        /// The deleted stream.
        stream: String,
    },
    /// The append is not valid (empty, a bad stream name or type, data that is not JSON, an
    /// event id reused in another place); nothing was written, and a retry fails the same way.
    #[error("invalid append to stream {stream:?}: {reason}")]
    InvalidAppend {
        /// The stream appended to.
        stream: String,
        /// What is wrong, naming the event by its index in the append.
        reason: String,
    },
    /// Reading or writing a file failed. The store refuses appends after a failed write that it
    /// could not undo; reopening it runs the recovery scan.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file of the store does not hold what the store wrote (not a torn tail, which recovery
    /// cuts: damage in the middle of the log).
    #[error("corrupt event store file {} at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What was found.
        reason: String,
    },
    /// Another process holds the store's directory.
    #[error("event store {} is open in another process ({holder}); stop it or open the store read-only", dir.display())]
    Locked {
        /// The store's directory.
        dir: PathBuf,
        /// What the lock file says of its holder (pid and host).
        holder: String,
    },
    /// The store was opened read-only (it follows another process's writes).
    #[error("event store {} is open read-only: appends go through the process that owns it", dir.display())]
    ReadOnly {
        /// The store's directory.
        dir: PathBuf,
    },
    /// The store stopped accepting appends (it was closed, or a write failed and could not be
    /// undone); reopen it.
    #[error("event store {} is closed: {reason}", dir.display())]
    Closed {
        /// The store's directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
