//! Sources and sinks of Riffle, independent of the execution engine.
//!
//! A source is named by a URI ([`SourceUri`]) and made of **splits**, the parts that are read
//! independently, each in order, by one worker: every file of a folder is a split; a socket
//! and stdin are one split each, a Kafka topic has one split per partition. A split is read through a [`LineReader`] that hands out
//! chunks of whole lines ([`LineChunk`]) without blocking the worker: sockets and stdin are
//! read by a background thread and handed over through a channel.
//!
//! Sinks write lines ([`LineSink`]): stdout or a file.
//!
//! ```
//! use riffle_connectors::SourceUri;
//! assert_eq!(SourceUri::parse("socket://127.0.0.1:9090").unwrap(), SourceUri::Socket("127.0.0.1:9090".into()));
//! assert_eq!(SourceUri::parse("-").unwrap(), SourceUri::Stdin);
//! assert!(SourceUri::parse("ftp://x").is_err());
//! ```

pub mod generator;
pub mod json;
pub mod kafka;
pub mod line_reader;
pub mod sink;
pub mod uri;

pub use line_reader::{LineChunk, LineReader, Poll, SplitPosition};
pub use sink::LineSink;
pub use uri::{SourceUri, SplitSpec};
