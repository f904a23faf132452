//! What every sink connector implements, and the line sinks (stdout, a file).
//!
//! A **sink** ([`Sink`]) is where a job's results go. It is shared by the job's workers, each
//! of which writes through its own [`SinkWriter`]. The engine's one sink shell (in
//! `riffle-runtime`) drives every sink through the same protocol, epoch by epoch:
//!
//! 1. **write**: the records of an epoch, formatted as lines or keyed messages
//!    ([`Layout`], [`OutputBatch`]), as they arrive;
//! 2. **pre-commit**: when every record of the epoch has arrived, the writer makes them
//!    durable but not yet visible (syncs a pending file; hands the messages to the checkpoint);
//! 3. **commit**: once the epoch's checkpoint is complete everywhere, the sink makes the epoch
//!    visible ([`Sink::commit`]: renames pending files), or its writers do it themselves
//!    when they learn of it ([`Checkpoints::completed_epoch`]: Kafka transactions);
//! 4. **recover**: before a restored job starts, the sink makes its destination agree with
//!    the checkpoint ([`Sink::recover`]): finishes the commits the crash interrupted, drops
//!    what came after.
//!
//! A sink without two-phase commit declares itself at least once ([`Delivery`]): after a
//! crash, the results of the epochs after the last checkpoint are written again.
//!
//! Line sinks flush every batch as it is written, to a file as to stdout: a streaming job's
//! results must show up when they are produced, not when a buffer happens to fill (a batch is
//! what a worker produced in one step, so this costs one write per step, not per line). A
//! reader that closes the sink (`riffle … | head -1`) is not an error: the sink reports itself
//! closed ([`LineSink::is_closed`]) and drops what follows, and the job stops cleanly.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use riffle_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// What a sink guarantees after a crash and a restore from a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Two-phase commit: every result is visible exactly once.
    ExactlyOnce,
    /// Results of the epochs after the last checkpoint are written again.
    AtLeastOnce,
}

/// How a sink wants its records formatted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Text lines, each ending with a newline.
    Lines,
    /// Keyed messages (a key, possibly empty, and a value without trailing newline).
    Messages,
    /// Nothing: the sink counts records and drops them (blackhole), so the engine does not
    /// format them at all.
    Nothing,
}

/// Formatted records of one epoch on their way to a [`SinkWriter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputBatch {
    /// Lines, back to back, each with its newline.
    Lines(Vec<u8>),
    /// Keyed messages.
    Messages(MessageBatch),
}

impl OutputBatch {
    /// An empty batch of `layout`.
    pub fn new(layout: Layout) -> Self {
        match layout {
            Layout::Lines => OutputBatch::Lines(Vec::with_capacity(1 << 16)),
            Layout::Messages => OutputBatch::Messages(MessageBatch::default()),
            Layout::Nothing => OutputBatch::Lines(Vec::new()),
        }
    }

    /// Appends a record: `value` writes its text (a line, newline included; or a message's
    /// value), `key` its key (only called for messages; writing nothing means no key).
    ///
    /// ```
    /// use riffle_connectors::sink::{Layout, OutputBatch};
    /// let mut lines = OutputBatch::new(Layout::Lines);
    /// lines.push_with(|k| k.extend_from_slice(b"ignored"), |v| v.extend_from_slice(b"a 1\n"));
    /// assert_eq!(lines, OutputBatch::Lines(b"a 1\n".to_vec()));
    /// ```
    #[inline]
    pub fn push_with(&mut self, key: impl FnOnce(&mut Vec<u8>), value: impl FnOnce(&mut Vec<u8>)) {
        match self {
            OutputBatch::Lines(bytes) => value(bytes),
            OutputBatch::Messages(batch) => batch.push_with(key, value),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            OutputBatch::Lines(bytes) => bytes.len(),
            OutputBatch::Messages(batch) => batch.bytes(),
        }
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        match self {
            OutputBatch::Lines(bytes) => bytes.is_empty(),
            OutputBatch::Messages(batch) => batch.is_empty(),
        }
    }

    /// Appends the batch as text lines to `out`: lines as they are, messages as their values,
    /// one per line (for a sink of lines handed keyed messages).
    pub fn append_lines_to(&self, out: &mut Vec<u8>) {
        match self {
            OutputBatch::Lines(bytes) => out.extend_from_slice(bytes),
            OutputBatch::Messages(messages) => {
                for (_, value) in messages.iter() {
                    out.extend_from_slice(value);
                    out.push(b'\n');
                }
            }
        }
    }

    /// Empties the batch, keeping its allocation.
    pub fn clear(&mut self) {
        match self {
            OutputBatch::Lines(bytes) => bytes.clear(),
            OutputBatch::Messages(batch) => *batch = MessageBatch::default(),
        }
    }
}

/// The checkpoint a job resumes from, as a sink sees it: its epoch, and the parts its writers
/// stored in it (see [`Checkpoints::store`]), as `(part id, bytes)`.
#[derive(Clone, Copy, Debug)]
pub struct Restored<'a> {
    /// The checkpoint's epoch: every result of it and before was pre-committed.
    pub epoch: u64,
    /// The attempt of the job that took it: what its writers pre-committed is named by it (see
    /// [`WriterContext::attempt`]).
    pub attempt: u64,
    /// What the writers stored, from every worker of the run that took it.
    pub parts: &'a [(u32, Vec<u8>)],
}

/// What a sink writer of a job with checkpoints gets from the engine: where to put what it
/// pre-commits, and when checkpoints complete.
pub trait Checkpoints: Send + Sync {
    /// Stores `bytes` as `worker`'s part of checkpoint `epoch`, under the sink's
    /// [`state_name`](Sink::state_name): what [`Sink::recover`] gets back after a crash.
    fn store(&self, epoch: u64, worker: usize, bytes: Vec<u8>) -> Result<()>;
    /// The newest complete checkpoint (looking further, at some cost, when what is known is
    /// older than `wanted`).
    fn completed_epoch(&self, wanted: u64) -> Option<u64>;
    /// Whether the job has failed: background deliveries stop.
    fn job_failed(&self) -> bool;
    /// Fails the job with an error of a background delivery.
    fn fail(&self, error: Error);
}

/// Where a sink writer runs: its worker among all workers of the job, and the job's
/// checkpoints when it takes them (`None`: no checkpoints, deliver at least once).
#[derive(Clone)]
pub struct WriterContext {
    /// The worker's index among all workers of all processes.
    pub worker: usize,
    /// The number of workers of all processes.
    pub peers: usize,
    /// The attempt of this run of the job (riffle-state's fencing: every start of a job with
    /// checkpoints increments it; 0 without checkpoints). A writer names what it pre-commits
    /// with it, and a commit makes visible only what its own attempt pre-committed, so that a
    /// process of an older attempt that is still alive (a zombie) never gets its output
    /// committed.
    pub attempt: u64,
    /// The job's checkpoints.
    pub checkpoints: Option<Arc<dyn Checkpoints>>,
}

/// One worker's writer of a sink (see the [module docs](self) for the protocol).
pub trait SinkWriter {
    /// Writes records of `epoch`; takes what it keeps and leaves `batch` empty.
    fn write(&mut self, epoch: u64, batch: &mut OutputBatch) -> Result<()>;
    /// Every record of `epoch` has been written: make them durable, not yet visible. Also
    /// called, without checkpoints, when the input ends.
    fn pre_commit(&mut self, epoch: u64) -> Result<()>;
    /// Whether the reader went away (a closed pipe): what follows is dropped and the job stops
    /// cleanly.
    fn is_closed(&self) -> bool {
        false
    }
}

/// A destination of results, shared by the workers of a process (see the [module docs](self)).
pub trait Sink: Send + Sync {
    /// A name for messages (`stdout`, a path, `kafka://BROKERS/TOPIC`).
    fn name(&self) -> String;
    /// How records are formatted for it.
    fn layout(&self) -> Layout {
        Layout::Lines
    }
    /// What it guarantees after a restore.
    fn delivery(&self) -> Delivery;
    /// The name of its parts in checkpoints (for sinks whose writers store something there).
    fn state_name(&self) -> &str {
        "sink"
    }
    /// Before the job starts: makes the destination agree with the restored checkpoint
    /// (`restored`: its epoch and the parts the writers stored; `None`: a fresh start).
    /// `first_process` is true on one process of the job, which does what is done once.
    fn recover(&self, restored: Option<Restored<'_>>, first_process: bool) -> Result<()> {
        let _ = (restored, first_process);
        Ok(())
    }
    /// The writer of one worker (see [`WriterContext`]).
    fn writer(&self, at: WriterContext) -> Result<Box<dyn SinkWriter>>;
    /// Checkpoint `epoch` of attempt `attempt` is complete (without checkpoints: the input
    /// ended, `u64::MAX`): makes what the writers of that attempt pre-committed up to it
    /// visible. Called on one worker of the job, after the engine checked that no newer attempt
    /// has started.
    fn commit(&self, epoch: u64, attempt: u64) -> Result<()> {
        let _ = (epoch, attempt);
        Ok(())
    }
    /// Once the job has ended: flushes, waits for background deliveries.
    fn finish(&self) -> Result<()> {
        Ok(())
    }
}

/// A sink parsed from its URI by the [registry](crate::registry): `file://DIR`,
/// `kafka://HOST:PORT/TOPIC?…`, `blackhole://`.
///
/// ```
/// use riffle_connectors::SinkUri;
/// let sink = SinkUri::parse("blackhole://").unwrap();
/// assert_eq!(sink.sink().name(), "blackhole");
/// assert!(SinkUri::parse("ftp://x").is_err());
/// ```
#[derive(Clone)]
pub struct SinkUri {
    uri: String,
    sink: Arc<dyn Sink>,
}

impl SinkUri {
    /// Parses a sink URI with the connector registered for its scheme.
    pub fn parse(uri: &str) -> Result<SinkUri> {
        Ok(SinkUri {
            uri: uri.to_string(),
            sink: crate::registry::open_sink(uri)?,
        })
    }

    /// The URI as given.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The sink.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }
}

impl std::fmt::Debug for SinkUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SinkUri").field(&self.uri).finish()
    }
}

/// `blackhole://`: counts and drops every record, as Flink's blackhole connector, for
/// measuring a job without the cost of writing its results.
#[derive(Clone, Copy, Debug)]
pub struct BlackholeSink;

impl Sink for BlackholeSink {
    fn name(&self) -> String {
        "blackhole".into()
    }
    fn layout(&self) -> Layout {
        Layout::Nothing
    }
    fn delivery(&self) -> Delivery {
        Delivery::ExactlyOnce
    }
    fn writer(&self, _: WriterContext) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(BlackholeSink))
    }
}

impl SinkWriter for BlackholeSink {
    fn write(&mut self, _epoch: u64, batch: &mut OutputBatch) -> Result<()> {
        batch.clear();
        Ok(())
    }
    fn pre_commit(&mut self, _epoch: u64) -> Result<()> {
        Ok(())
    }
}

/// A destination for lines shared by every worker of a process. Each worker writes whole
/// batches of lines under a lock, so lines never interleave.
#[derive(Clone)]
pub struct LineSink {
    name: Arc<str>,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    /// Set when the reader went away (a broken pipe).
    closed: Arc<AtomicBool>,
}

impl LineSink {
    /// Standard output, flushed after every batch.
    pub fn stdout() -> Self {
        LineSink {
            name: "stdout".into(),
            out: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A file, created or truncated.
    pub fn file(path: &Path) -> Result<Self> {
        let f = File::create(path).map_err(|source| Error::Io {
            what: "cannot create",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(LineSink {
            name: path.display().to_string().into(),
            out: Arc::new(Mutex::new(Box::new(BufWriter::with_capacity(1 << 16, f)))),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// An in-memory buffer, for tests: the sink and a handle to read what it received.
    pub fn memory() -> (Self, Arc<Mutex<Vec<u8>>>) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = SharedVec(Arc::clone(&buf));
        (
            LineSink {
                name: "memory".into(),
                out: Arc::new(Mutex::new(Box::new(writer))),
                closed: Arc::new(AtomicBool::new(false)),
            },
            buf,
        )
    }

    /// Where the lines go (`stdout`, a path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes a batch of text that consists of whole lines, and flushes it. Once the reader
    /// has gone away (a broken pipe), drops the batch: see [`is_closed`](Self::is_closed).
    ///
    /// ```
    /// let (sink, buffer) = riffle_connectors::LineSink::memory();
    /// sink.write_batch(b"a 1\nb 2\n").unwrap();
    /// assert_eq!(&*buffer.lock().unwrap(), b"a 1\nb 2\n");
    /// ```
    pub fn write_batch(&self, text: &[u8]) -> Result<()> {
        if text.is_empty() || self.is_closed() {
            return Ok(());
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let res = out.write_all(text).and_then(|_| out.flush());
        self.check(res)
    }

    /// Whether the reader has closed this sink (a pipe whose reader exited): what is written
    /// after is dropped.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Flushes buffered lines.
    pub fn flush(&self) -> Result<()> {
        if self.is_closed() {
            return Ok(());
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let res = out.flush();
        self.check(res)
    }

    fn check(&self, res: std::io::Result<()>) -> Result<()> {
        match res {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed.store(true, Ordering::Relaxed);
                Ok(())
            }
            other => other.map_err(|source| Error::Io {
                what: "cannot write to",
                path: PathBuf::from(&*self.name),
                source,
            }),
        }
    }
}

impl Sink for LineSink {
    fn name(&self) -> String {
        self.name.to_string()
    }
    fn delivery(&self) -> Delivery {
        Delivery::AtLeastOnce
    }
    fn writer(&self, _: WriterContext) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(self.clone()))
    }
    fn finish(&self) -> Result<()> {
        self.flush()
    }
}

impl SinkWriter for LineSink {
    fn write(&mut self, _epoch: u64, batch: &mut OutputBatch) -> Result<()> {
        let result = match batch {
            OutputBatch::Lines(bytes) => self.write_batch(bytes),
            OutputBatch::Messages(messages) => {
                let mut text = Vec::with_capacity(messages.bytes() + messages.len());
                batch.append_lines_to(&mut text);
                self.write_batch(&text)
            }
        };
        batch.clear();
        result
    }
    fn pre_commit(&mut self, _epoch: u64) -> Result<()> {
        Ok(())
    }
    fn is_closed(&self) -> bool {
        LineSink::is_closed(self)
    }
}

struct SharedVec(Arc<Mutex<Vec<u8>>>);
impl Write for SharedVec {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keyed messages, stored back to back in one buffer (no allocation per message).
///
/// ```
/// use riffle_connectors::sink::MessageBatch;
/// let mut batch = MessageBatch::default();
/// batch.push(b"k", b"{\"v\":1}\n");
/// batch.push(b"", b"{\"v\":2}");
/// let messages: Vec<_> = batch.iter().collect();
/// assert_eq!(messages, vec![(Some(&b"k"[..]), &b"{\"v\":1}"[..]), (None, &b"{\"v\":2}"[..])]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBatch {
    bytes: Vec<u8>,
    /// Per message: where its key ends and where its value ends in `bytes`.
    ends: Vec<(u32, u32)>,
}

impl MessageBatch {
    /// Appends a message; an empty key is no key, and a trailing newline of `value` is dropped.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value.strip_suffix(b"\n").unwrap_or(value));
        self.ends.push((key_end, self.bytes.len() as u32));
    }

    /// Appends a message written by `key` and `value` straight into the batch's buffer.
    pub fn push_with(&mut self, key: impl FnOnce(&mut Vec<u8>), value: impl FnOnce(&mut Vec<u8>)) {
        key(&mut self.bytes);
        let key_end = self.bytes.len() as u32;
        value(&mut self.bytes);
        if self.bytes.len() > key_end as usize && self.bytes.last() == Some(&b'\n') {
            self.bytes.pop();
        }
        self.ends.push((key_end, self.bytes.len() as u32));
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Appends every message of `other`.
    pub fn append(&mut self, other: &MessageBatch) {
        let base = self.bytes.len() as u32;
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|&(k, e)| (base + k, base + e)));
    }

    /// The messages: (key, value), `None` for no key.
    pub fn iter(&self) -> impl Iterator<Item = (Option<&[u8]>, &[u8])> {
        let mut start = 0usize;
        self.ends.iter().map(move |&(key_end, end)| {
            let (k, e) = (key_end as usize, end as usize);
            let key = &self.bytes[start..k];
            let value = &self.bytes[k..e];
            start = e;
            ((!key.is_empty()).then_some(key), value)
        })
    }
}
