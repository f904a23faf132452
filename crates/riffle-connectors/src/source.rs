//! What every source connector implements, and the handles the engine holds.
//!
//! A **source** ([`Source`]) is named by a URI and made of **splits** ([`Split`]), the parts
//! that are read independently, each in order, by one worker: every file of a folder is a
//! split; a socket and stdin are one split each; a Kafka topic has one split per partition. A
//! split is opened, at its start or at a checkpointed [`SplitPosition`], as a [`LineReader`]
//! that hands out chunks of whole lines ([`LineChunk`]) without blocking the worker, and tells
//! where it is, so that a checkpoint can record it.
//!
//! The engine never matches on a kind of source: it holds a [`SourceUri`] (a source parsed
//! from its URI by the [registry](crate::registry)) and [`SplitSpec`]s, and calls these traits.
//! A new connector is a module that implements them and one line in the registry.

use std::fmt;
use std::sync::Arc;

use riffle_core::Result;

/// Consecutive lines of one split, without their line terminators (`\n` or `\r\n`).
///
/// Lines are bytes: validating UTF-8 is the consumer's job, so that it can report an invalid
/// line with its position instead of failing the whole read.
#[derive(Debug, Default)]
pub struct LineChunk {
    /// The 1-based number of the first line within its split (for Kafka, the offset of the
    /// first message).
    pub first_line: u64,
    /// The lines.
    pub lines: Vec<Vec<u8>>,
}

/// The outcome of polling a reader.
#[derive(Debug)]
pub enum Poll {
    /// Some lines.
    Chunk(LineChunk),
    /// Nothing available now; poll again later.
    Pending,
    /// The split has ended.
    Finished,
}

/// A position in a replayable split: the byte offset of the next unread line (or the index of
/// the next generated line, or the next Kafka offset) and its line number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitPosition {
    /// Byte offset in a file, line index of a generator, offset in a Kafka partition.
    pub offset: u64,
    /// Number of the next line (1-based), for messages.
    pub line: u64,
}

impl SplitPosition {
    /// The position before record `index` (0-based) of a split that counts records, not bytes
    /// (generated data, collections): offset `index`, line `index + 1`.
    ///
    /// ```
    /// use riffle_connectors::SplitPosition;
    /// assert_eq!(SplitPosition::at_record(4), SplitPosition { offset: 4, line: 5 });
    /// ```
    pub fn at_record(index: u64) -> Self {
        SplitPosition {
            offset: index,
            line: index + 1,
        }
    }
}

/// Reads an open split as chunks of lines without blocking the calling worker for long.
pub trait LineReader: Send {
    /// The split's name, for messages.
    fn origin(&self) -> &Arc<str>;
    /// Up to `max_lines` next lines.
    fn poll(&mut self, max_lines: usize) -> Result<Poll>;
    /// Where the next unread line starts, for checkpoints; `None` if the split cannot be read
    /// again from a position (a socket, stdin).
    fn position(&self) -> Option<SplitPosition> {
        None
    }
    /// Asks the split to call `wake` when it may have lines again after a [`Poll::Pending`];
    /// returns whether it will. A split that cannot tell returns false (the default), and its
    /// reader polls it again on a timer. `wake` must be quick and must not block.
    fn wake_on_data(&mut self, _wake: &Arc<dyn Fn() + Send + Sync>) -> bool {
        false
    }
}

/// One independently read part of a source.
pub trait Split: Send + Sync {
    /// A name for messages: the path, the address, `stdin`, `generator`, `kafka://…/TOPIC/P`.
    fn name(&self) -> String;
    /// What it is, for an error that says why it cannot be used (`standard input`, `the
    /// socket socket://HOST:PORT`); its name by default.
    fn description(&self) -> String {
        self.name()
    }
    /// Whether the split ends by itself (a file, generated data, a bounded Kafka partition).
    /// Sockets and stdin end when the peer closes them.
    fn is_bounded(&self) -> bool;
    /// Whether the split can be read again from a checkpointed position (files, generated
    /// data, Kafka partitions; not sockets or stdin).
    fn is_replayable(&self) -> bool;
    /// Opens the split at `position` (from [`LineReader::position`]), or at its start. Only
    /// called with a position for a replayable split.
    fn open_at(&self, position: Option<SplitPosition>) -> Result<Box<dyn LineReader>>;
}

/// A source of lines: what a URI names.
pub trait Source: Send + Sync {
    /// A name for messages.
    fn name(&self) -> String;
    /// The source's splits. May fail, naming what is missing (a file that does not exist, a
    /// topic the brokers do not know).
    fn splits(&self) -> Result<Vec<SplitSpec>>;
}

/// A split as the engine holds it: cheap to clone, shared by the workers that build the job.
#[derive(Clone)]
pub struct SplitSpec(Arc<dyn Split>);

impl SplitSpec {
    /// A handle on `split`.
    pub fn new(split: impl Split + 'static) -> Self {
        SplitSpec(Arc::new(split))
    }

    /// The split's name, for messages.
    pub fn name(&self) -> String {
        self.0.name()
    }

    /// What it is, for errors (see [`Split::description`]).
    pub fn description(&self) -> String {
        self.0.description()
    }

    /// Whether the split ends by itself (see [`Split::is_bounded`]).
    pub fn is_bounded_by_nature(&self) -> bool {
        self.0.is_bounded()
    }

    /// Whether the split can be read again from a checkpointed position.
    pub fn is_replayable(&self) -> bool {
        self.0.is_replayable()
    }

    /// Opens the split at its start: opens the file, connects the socket (failing at once if
    /// the connection is refused), or starts reading stdin.
    pub fn open(&self) -> Result<Box<dyn LineReader>> {
        self.0.open_at(None)
    }

    /// Opens the split at `position` (from [`LineReader::position`]), or at its start. Fails
    /// for a position in a split that cannot be replayed.
    pub fn open_at(&self, position: Option<SplitPosition>) -> Result<Box<dyn LineReader>> {
        if position.is_some() && !self.is_replayable() {
            return Err(riffle_core::Error::Config(format!(
                "{} cannot be read again from a checkpointed position",
                self.name()
            )));
        }
        self.0.open_at(position)
    }
}

impl fmt::Debug for SplitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SplitSpec").field(&self.name()).finish()
    }
}

/// A source parsed from its URI by the [registry](crate::registry).
///
/// ```
/// use riffle_connectors::SourceUri;
/// let socket = SourceUri::parse("socket://127.0.0.1:9090").unwrap();
/// assert_eq!(socket.splits().unwrap()[0].name(), "socket://127.0.0.1:9090");
/// assert_eq!(SourceUri::parse("-").unwrap().splits().unwrap()[0].name(), "stdin");
/// assert!(SourceUri::parse("ftp://host/words.txt").is_err());
/// ```
#[derive(Clone)]
pub struct SourceUri {
    uri: String,
    source: Arc<dyn Source>,
}

impl SourceUri {
    /// Parses a source URI with the connector registered for its scheme (see
    /// [`registry`](crate::registry)): `socket://HOST:PORT`, `file://PATH`, `-` or `stdin://`,
    /// `kafka://HOST:PORT/TOPIC?…`, `generate://words?…`. A bare path without a scheme
    /// (`words.txt`, `/data/in`) means `file://` that path.
    pub fn parse(uri: &str) -> Result<SourceUri> {
        Ok(SourceUri {
            uri: uri.to_string(),
            source: crate::registry::open_source(uri)?,
        })
    }

    /// A source built in code (a connector that has no URI, or one configured by a builder).
    pub fn from_source(uri: &str, source: impl Source + 'static) -> SourceUri {
        SourceUri {
            uri: uri.to_string(),
            source: Arc::new(source),
        }
    }

    /// A Kafka topic (see [`KafkaUri::new`](crate::kafka::KafkaUri::new) for the builder).
    #[cfg(feature = "kafka")]
    pub fn kafka(uri: crate::kafka::KafkaUri) -> Result<SourceUri> {
        let name = uri.name();
        Ok(SourceUri::from_source(&name, crate::kafka::KafkaSourceSpec::new(uri)?))
    }

    /// The URI as given.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The splits of this source. Fails if a file or folder does not exist or cannot be
    /// listed; the error names it.
    pub fn splits(&self) -> Result<Vec<SplitSpec>> {
        self.source.splits()
    }
}

impl fmt::Debug for SourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SourceUri").field(&self.uri).finish()
    }
}

/// Reads `reader` to its end, two lines at a time: each chunk's first line number and lines.
#[cfg(test)]
pub(crate) fn drain(reader: &mut dyn LineReader) -> Vec<(u64, Vec<Vec<u8>>)> {
    let mut out = vec![];
    for _ in 0..10_000 {
        match reader.poll(2).expect("poll") {
            Poll::Chunk(c) => out.push((c.first_line, c.lines)),
            Poll::Pending => std::thread::sleep(std::time::Duration::from_millis(1)),
            Poll::Finished => return out,
        }
    }
    panic!("reader did not finish");
}
