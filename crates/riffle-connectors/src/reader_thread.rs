//! A background thread that reads lines from a blocking stream (a socket, stdin) and hands
//! them to the worker through a channel, so that polling never blocks the worker.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;

use riffle_core::{Error, Result};

use crate::source::{LineChunk, LineReader, Poll};

fn trim_terminator(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// Lines read by a background thread (sockets, stdin) and handed over through a channel.
///
/// The thread sends what it has whenever its buffer runs dry, so a slow trickle of lines is
/// passed on at once and a fast stream in large batches.
pub(crate) struct ThreadedLines {
    origin: Arc<str>,
    rx: Receiver<std::io::Result<Vec<Vec<u8>>>>,
    next_line: u64,
    done: bool,
}

impl ThreadedLines {
    pub(crate) fn spawn<R: Read + Send + 'static>(origin: Arc<str>, input: R) -> Self {
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
