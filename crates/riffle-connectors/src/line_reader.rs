//! Non-blocking readers of whole lines, one per split.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;

use riffle_core::{Error, Result};

use crate::generator::GeneratedLines;
use crate::uri::SplitSpec;

/// Consecutive lines of one split, without their line terminators (`\n` or `\r\n`).
///
/// Lines are bytes: validating UTF-8 is the consumer's job, so that it can report an invalid
/// line with its position instead of failing the whole read.
#[derive(Debug, Default)]
pub struct LineChunk {
    /// The 1-based number of the first line within its split.
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

/// Reads a split as chunks of lines without blocking the calling worker for long.
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
}

/// A position in a replayable split: the byte offset of the next unread line (or the index of
/// the next generated line) and its line number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitPosition {
    /// Byte offset in a file, or line index of a generator.
    pub offset: u64,
    /// Number of the next line (1-based), for messages.
    pub line: u64,
}

impl SplitSpec {
    /// Opens the split: opens the file, connects the socket (failing at once if the
    /// connection is refused), or starts reading stdin.
    pub fn open(&self) -> Result<Box<dyn LineReader>> {
        self.open_at(None)
    }

    /// Opens the split at `position` (from [`LineReader::position`]), or at its start.
    /// Fails for a position in a split that cannot be replayed.
    pub fn open_at(&self, position: Option<SplitPosition>) -> Result<Box<dyn LineReader>> {
        let origin: Arc<str> = self.name().into();
        if position.is_some() && !self.is_replayable() {
            return Err(Error::Config(format!(
                "{} cannot be read again from a checkpointed position",
                self.name()
            )));
        }
        match self {
            SplitSpec::File(path) => {
                let mut file = File::open(path).map_err(|source| Error::Io {
                    what: "cannot open",
                    path: path.clone(),
                    source,
                })?;
                let mut reader = BlockingLines::new(
                    origin,
                    file.try_clone().map_err(|source| Error::Io {
                        what: "cannot open",
                        path: path.clone(),
                        source,
                    })?,
                    path.clone(),
                );
                if let Some(p) = position {
                    use std::io::Seek;
                    file.seek(std::io::SeekFrom::Start(p.offset))
                        .map_err(|source| Error::Io {
                            what: "cannot seek in",
                            path: path.clone(),
                            source,
                        })?;
                    reader.base = p.offset;
                    reader.next_line = p.line;
                }
                Ok(Box::new(reader))
            }
            SplitSpec::Socket(addr) => {
                let stream = TcpStream::connect(addr).map_err(|source| Error::Network {
                    what: "cannot connect to",
                    address: addr.clone(),
                    source,
                })?;
                Ok(Box::new(ThreadedLines::spawn(origin, stream)))
            }
            SplitSpec::Stdin => Ok(Box::new(ThreadedLines::spawn(origin, std::io::stdin()))),
            SplitSpec::Kafka(partition) => partition.open_at(position),
            SplitSpec::Generator(g) => {
                let mut reader = GeneratedLines::new(origin, g.clone());
                if let Some(p) = position {
                    reader.seek(p.offset);
                }
                Ok(Box::new(reader))
            }
        }
    }
}

fn trim_terminator(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// Lines read directly from a local file (a local read does not block for long).
///
/// Reads blocks of 256 KiB and cuts them at newlines with `memchr`: each line is copied
/// once, into an allocation of its exact size.
struct BlockingLines<R> {
    origin: Arc<str>,
    reader: R,
    path: PathBuf,
    next_line: u64,
    eof: bool,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
}

const BLOCK: usize = 1 << 18;

impl<R: Read> BlockingLines<R> {
    fn new(origin: Arc<str>, reader: R, path: PathBuf) -> Self {
        BlockingLines {
            origin,
            reader,
            path,
            next_line: 1,
            eof: false,
            buf: Vec::with_capacity(BLOCK),
            pos: 0,
            base: 0,
        }
    }

    /// Reads more bytes after the unconsumed ones; returns false at end of file.
    fn refill(&mut self) -> Result<bool> {
        self.base += self.pos as u64;
        self.buf.drain(..self.pos);
        self.pos = 0;
        let len = self.buf.len();
        let want = (len + BLOCK).max(self.buf.capacity());
        self.buf.resize(want, 0);
        loop {
            match self.reader.read(&mut self.buf[len..]) {
                Ok(n) => {
                    self.buf.truncate(len + n);
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.buf.truncate(len);
                    return Err(Error::Io {
                        what: "cannot read",
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }
}

impl<R: Read + Send> LineReader for BlockingLines<R> {
    fn origin(&self) -> &Arc<str> {
        &self.origin
    }

    fn position(&self) -> Option<SplitPosition> {
        Some(SplitPosition {
            offset: self.base + self.pos as u64,
            line: self.next_line,
        })
    }

    fn poll(&mut self, max_lines: usize) -> Result<Poll> {
        let mut chunk = LineChunk {
            first_line: self.next_line,
            lines: Vec::with_capacity(max_lines.min(4096)),
        };
        while chunk.lines.len() < max_lines {
            let rest = &self.buf[self.pos..];
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    let mut line = rest[..i].to_vec();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    chunk.lines.push(line);
                    self.pos += i + 1;
                }
                None if self.eof => {
                    if !rest.is_empty() {
                        let mut line = rest.to_vec();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        chunk.lines.push(line);
                        self.pos = self.buf.len();
                    }
                    break;
                }
                None => {
                    if !self.refill()? {
                        self.eof = true;
                    }
                }
            }
        }
        self.next_line += chunk.lines.len() as u64;
        if chunk.lines.is_empty() {
            Ok(Poll::Finished)
        } else {
            Ok(Poll::Chunk(chunk))
        }
    }
}

/// Lines read by a background thread (sockets, stdin) and handed over through a channel.
///
/// The thread sends what it has whenever its buffer runs dry, so a slow trickle of lines is
/// passed on at once and a fast stream in large batches.
struct ThreadedLines {
    origin: Arc<str>,
    rx: Receiver<std::io::Result<Vec<Vec<u8>>>>,
    next_line: u64,
    done: bool,
}

impl ThreadedLines {
    fn spawn<R: Read + Send + 'static>(origin: Arc<str>, input: R) -> Self {
        let (tx, rx) = sync_channel(64);
        let name = origin.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("riffle-read {name}"))
            .spawn(move || {
                let mut reader = BufReader::with_capacity(1 << 16, input);
                let mut batch = Vec::new();
                loop {
                    let mut line = Vec::new();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) => break,
                        Ok(_) => {
                            trim_terminator(&mut line);
                            batch.push(line);
                            let flush = reader.buffer().is_empty() || batch.len() >= 4096;
                            if flush && tx.send(Ok(std::mem::take(&mut batch))).is_err() {
                                return; // the job has gone away
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                if !batch.is_empty() {
                    let _ = tx.send(Ok(batch));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(origin = %name, error = %e, "cannot start reader thread");
        }
        ThreadedLines {
            origin,
            rx,
            next_line: 1,
            done: false,
        }
    }
}

impl LineReader for ThreadedLines {
    fn origin(&self) -> &Arc<str> {
        &self.origin
    }

    fn poll(&mut self, max_lines: usize) -> Result<Poll> {
        if self.done {
            return Ok(Poll::Finished);
        }
        let mut lines = Vec::new();
        while lines.len() < max_lines {
            match self.rx.try_recv() {
                Ok(Ok(mut batch)) => lines.append(&mut batch),
                Ok(Err(source)) => {
                    self.done = true;
                    return Err(Error::Network {
                        what: "cannot read from",
                        address: self.origin.to_string(),
                        source,
                    });
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.done = true;
                    break;
                }
            }
        }
        if lines.is_empty() {
            return Ok(if self.done { Poll::Finished } else { Poll::Pending });
        }
        let chunk = LineChunk {
            first_line: self.next_line,
            lines,
        };
        self.next_line += chunk.lines.len() as u64;
        Ok(Poll::Chunk(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn drain(reader: &mut dyn LineReader) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut out = vec![];
        for _ in 0..10_000 {
            match reader.poll(2).unwrap() {
                Poll::Chunk(c) => out.push((c.first_line, c.lines)),
                Poll::Pending => std::thread::sleep(std::time::Duration::from_millis(1)),
                Poll::Finished => return out,
            }
        }
        panic!("reader did not finish");
    }

    #[test]
    fn file_lines_with_numbers_and_crlf() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"a\r\nb\n\nc").unwrap();
        let mut r = SplitSpec::File(f.path().to_path_buf()).open().unwrap();
        let got = drain(r.as_mut());
        assert_eq!(
            got,
            vec![
                (1, vec![b"a".to_vec(), b"b".to_vec()]),
                (3, vec![b"".to_vec(), b"c".to_vec()])
            ]
        );
    }

    #[test]
    fn missing_file_is_a_named_error() {
        let err = SplitSpec::File("/no/such/file".into()).open().err().unwrap();
        assert!(err.to_string().contains("/no/such/file"), "{err}");
    }

    #[test]
    fn socket_lines_until_the_server_closes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"x y\nz\n").unwrap();
        });
        let mut r = SplitSpec::Socket(addr).open().unwrap();
        let lines: Vec<Vec<u8>> = drain(r.as_mut()).into_iter().flat_map(|c| c.1).collect();
        server.join().unwrap();
        assert_eq!(lines, vec![b"x y".to_vec(), b"z".to_vec()]);
    }

    #[test]
    fn refused_socket_is_a_network_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = SplitSpec::Socket(addr.clone()).open().err().unwrap();
        assert!(err.is_retryable());
        assert!(err.to_string().contains(&addr));
    }
}

#[cfg(test)]
mod position_tests {
    use super::*;

    #[test]
    fn reading_from_a_position_continues_exactly_where_it_was_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        let text: String = (0..5000)
            .map(|i| format!("line {i} {}\n", "x".repeat(i % 70)))
            .collect();
        std::fs::write(&path, &text).unwrap();
        let spec = SplitSpec::File(path);
        let mut all = Vec::new();
        let mut r = spec.open().unwrap();
        while let Poll::Chunk(c) = r.poll(333).unwrap() {
            all.extend(c.lines);
        }
        for stop in [1usize, 7, 16] {
            let mut r = spec.open().unwrap();
            let mut got = Vec::new();
            for _ in 0..stop {
                if let Poll::Chunk(c) = r.poll(333).unwrap() {
                    got.extend(c.lines);
                }
            }
            let pos = r.position().unwrap();
            let mut r2 = spec.open_at(Some(pos)).unwrap();
            let mut first = None;
            while let Poll::Chunk(c) = r2.poll(333).unwrap() {
                first.get_or_insert(c.first_line);
                got.extend(c.lines);
            }
            assert_eq!(got, all, "stopped after {stop} chunks");
            if let Some(first) = first {
                assert_eq!(first, pos.line);
            }
        }
    }
}
