//! Line sinks: where results go as text lines.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use riffle_core::{Error, Result};

/// A destination for lines shared by every worker of a process. Each worker writes whole
/// batches of lines under a lock, so lines never interleave.
#[derive(Clone)]
pub struct LineSink {
    name: Arc<str>,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    /// Whether to flush after every batch (stdout: results should show up at once).
    flush_each_batch: bool,
}

impl LineSink {
    /// Standard output, flushed after every batch.
    pub fn stdout() -> Self {
        LineSink {
            name: "stdout".into(),
            out: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
            flush_each_batch: true,
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
            flush_each_batch: false,
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
                flush_each_batch: false,
            },
            buf,
        )
    }

    /// Writes a batch of text that consists of whole lines.
    pub fn write_batch(&self, text: &[u8]) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let res = out
            .write_all(text)
            .and_then(|_| if self.flush_each_batch { out.flush() } else { Ok(()) });
        res.map_err(|source| Error::Io {
            what: "cannot write to",
            path: PathBuf::from(&*self.name),
            source,
        })
    }

    /// Flushes buffered lines.
    pub fn flush(&self) -> Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.flush().map_err(|source| Error::Io {
            what: "cannot write to",
            path: PathBuf::from(&*self.name),
            source,
        })
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
