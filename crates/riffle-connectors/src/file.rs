//! Files: `file://PATH` reads a file, or every file of a folder (sorted by name, hidden
//! files skipped), one split per file, replayable from a byte offset.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use riffle_core::{Error, Result};

use crate::source::{LineChunk, LineReader, Poll, Source, Split, SplitPosition, SplitSpec};

/// `file://PATH`: a file, or the files of a folder.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// The file or folder at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSource { path: path.into() }
    }

    /// Parses `file://PATH`, or a bare path (no scheme).
    pub fn parse(uri: &str) -> Result<Self> {
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        if path.is_empty() {
            return Err(Error::Config(format!("source '{uri}': expected file://PATH")));
        }
        Ok(FileSource::new(path))
    }

    /// The file or folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Source for FileSource {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        let path = &self.path;
        let meta = std::fs::metadata(path).map_err(|source| Error::Io {
            what: "cannot open",
            path: path.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Ok(vec![SplitSpec::new(FileSplit::new(path.clone()))]);
        }
        let mut files = Vec::new();
        let entries = std::fs::read_dir(path).map_err(|source| Error::Io {
            what: "cannot list",
            path: path.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                what: "cannot list",
                path: path.clone(),
                source,
            })?;
            let p = entry.path();
            let name = entry.file_name();
            if p.is_file() && !name.to_string_lossy().starts_with('.') {
                files.push(p);
            }
        }
        files.sort();
        Ok(files.into_iter().map(|f| SplitSpec::new(FileSplit::new(f))).collect())
    }
}

/// One file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSplit {
    path: PathBuf,
}

impl FileSplit {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSplit { path: path.into() }
    }
}

impl Split for FileSplit {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn is_replayable(&self) -> bool {
        true
    }

    fn open_at(&self, position: Option<SplitPosition>) -> Result<Box<dyn LineReader>> {
        let path = &self.path;
        let mut file = File::open(path).map_err(|source| Error::Io {
            what: "cannot open",
            path: path.clone(),
            source,
        })?;
        if let Some(p) = position {
            use std::io::Seek;
            file.seek(std::io::SeekFrom::Start(p.offset))
                .map_err(|source| Error::Io {
                    what: "cannot seek in",
                    path: path.clone(),
                    source,
                })?;
        }
        let mut reader = BlockingLines::new(self.name().into(), file, path.clone());
        if let Some(p) = position {
            reader.base = p.offset;
            reader.next_line = p.line;
        }
        Ok(Box::new(reader))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::drain;
    use crate::source::SplitSpec;
    use std::io::Write;

    #[test]
    fn file_lines_with_numbers_and_crlf() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"a\r\nb\n\nc").unwrap();
        let mut r = SplitSpec::new(FileSplit::new(f.path())).open().unwrap();
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
        let err = SplitSpec::new(FileSplit::new("/no/such/file")).open().err().unwrap();
        assert!(err.to_string().contains("/no/such/file"), "{err}");
    }

    #[test]
    fn reading_from_a_position_continues_exactly_where_it_was_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        let text: String = (0..5000)
            .map(|i| format!("line {i} {}\n", "x".repeat(i % 70)))
            .collect();
        std::fs::write(&path, &text).unwrap();
        let spec = SplitSpec::new(FileSplit::new(path));
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
