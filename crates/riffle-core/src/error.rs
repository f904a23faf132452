//! Errors of the engine core.
//!
//! Every error says what failed and where; [`Error::is_retryable`] says whether trying again
//! can help (a refused socket may come up; a malformed duration will not).

use std::path::PathBuf;

/// The result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value (a flag, a builder argument) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An input record could not be parsed.
    #[error("{origin}:{line}: {message}")]
    Malformed {
        /// The input the record came from (a file path, a socket address, `stdin`).
        origin: String,
        /// The 1-based line number within that input.
        line: u64,
        /// What is wrong with the record.
        message: String,
    },
    /// An I/O operation on a named resource failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done ("cannot open", "cannot read").
        what: &'static str,
        /// The file, folder or address involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A network peer could not be reached or went away.
    #[error("{what} {address}: {source}")]
    Network {
        /// What was being done ("cannot connect to").
        what: &'static str,
        /// The peer's address.
        address: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The execution engine failed.
    #[error("execution failed: {0}")]
    Execution(String),
    /// A newer attempt of the job has started: this process belongs to an older one (a zombie)
    /// and must not commit anything. Never retryable: the process should exit.
    #[error("fenced: {0}")]
    Fenced(String),
}

impl Error {
    /// Whether the same operation may succeed if retried later.
    ///
    /// ```
    /// let e = riffle_core::Error::Config("bad window".into());
    /// assert!(!e.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Network { .. })
            || matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::Interrupted)
    }
}
