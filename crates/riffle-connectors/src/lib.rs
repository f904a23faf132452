//! Sources and sinks of Riffle, independent of the execution engine.
//!
//! Connectors sit behind two traits, found by the scheme of their URI in the
//! [`registry`]:
//!
//! * a [`Source`] is made of **splits** ([`Split`]), the parts that are read independently,
//!   each in order, by one worker: every file of a folder is a split; a socket and stdin are
//!   one split each; a Kafka topic has one split per partition. A split is read through a
//!   [`LineReader`] that hands out chunks of whole lines ([`LineChunk`]) without blocking the
//!   worker (sockets and stdin are read by a background thread) and tells its position for
//!   checkpoints;
//! * a [`Sink`] takes a job's results epoch by epoch through one [`SinkWriter`] per worker:
//!   write, pre-commit, commit, recover (see [`sink`]). Line sinks ([`LineSink`]) write to
//!   stdout or a file; the committed file sink and Kafka commit after checkpoints.
//!
//! Built in: `socket://`, `file://`, `-` (stdin), `generate://`, `store://` (the embedded event
//! store), `store+http://` (the store's HTTP server) and `kafka://` (cargo feature `kafka`, on
//! by default) sources; `file://` (committed part files), `table://` (a read-model table),
//! `kafka://` and `blackhole://` sinks. The runtime drives every one of them with the same source and sink
//! shells; a new connector is a module and a line in [`registry`].
//!
//! ```
//! use riffle_connectors::SourceUri;
//! let socket = SourceUri::parse("socket://127.0.0.1:9090").unwrap();
//! assert_eq!(socket.splits().unwrap()[0].name(), "socket://127.0.0.1:9090");
//! assert_eq!(SourceUri::parse("-").unwrap().splits().unwrap()[0].name(), "stdin");
//! assert!(SourceUri::parse("ftp://x").is_err());
//! ```

// A library does not panic on a value it could not get: it returns an error that says which.
#![warn(clippy::expect_used)]

pub mod eventstore;
pub mod eventstore_http;
pub mod file;
pub mod file_sink;
pub mod generator;
pub mod json;
#[cfg(feature = "kafka")]
pub mod kafka;
mod reader_thread;
pub mod readmodel;
pub mod registry;
pub mod sink;
pub mod socket;
pub mod source;
pub mod stdin;

pub use file::{FileSource, FileSplit};
pub use file_sink::CommittedFileSink;
pub use sink::{
    BlackholeSink, Checkpoints, Delivery, Layout, LineSink, OutputBatch, Sink, SinkUri, SinkWriter, WriterContext,
};
pub use socket::{SocketSource, SocketSplit};
pub use source::{LineChunk, LineReader, Poll, Source, SourceUri, Split, SplitPosition, SplitSpec};
pub use stdin::StdinSource;
