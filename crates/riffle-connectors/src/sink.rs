//! Line sinks: where results go as text lines.
//!
//! Every batch is flushed as it is written, to a file as to stdout: a streaming job's results
//! must show up when they are produced, not when a buffer happens to fill (a batch is what a
//! worker produced in one step, so this costs one write per step, not per line). A reader that
//! closes the sink (`riffle … | head -1`) is not an error: the sink reports itself closed
//! ([`LineSink::is_closed`]) and drops what follows, and the job stops cleanly.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use riffle_core::{Error, Result};

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
