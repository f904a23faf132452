//! Sockets: `socket://HOST:PORT` connects as a client and reads lines until the server
//! closes the connection (Flink's `socketTextStream`). Not replayable: what the server sent
//! before a restart is gone.

use std::net::TcpStream;

use riffle_core::{Error, Result};

use crate::reader_thread::ThreadedLines;
use crate::source::{LineReader, Source, Split, SplitPosition, SplitSpec};

/// `socket://HOST:PORT`: one split, the connection.
#[derive(Clone, Debug, PartialEq)]
pub struct SocketSource {
    address: String,
}

impl SocketSource {
    /// Parses `socket://HOST:PORT`.
    pub fn parse(uri: &str) -> Result<Self> {
        let addr = uri.strip_prefix("socket://").unwrap_or(uri);
        if addr.is_empty() || !addr.contains(':') {
            return Err(Error::Config(format!("source '{uri}': expected socket://HOST:PORT")));
        }
        Ok(SocketSource {
            address: addr.trim_end_matches('/').to_string(),
        })
    }
}

impl Source for SocketSource {
    fn name(&self) -> String {
        format!("socket://{}", self.address)
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        Ok(vec![SplitSpec::new(SocketSplit::new(&self.address))])
    }
}

/// A TCP server to connect to.
#[derive(Clone, Debug, PartialEq)]
pub struct SocketSplit {
    address: String,
}

impl SocketSplit {
    /// The server at `address` (`HOST:PORT`).
    pub fn new(address: &str) -> Self {
        SocketSplit {
            address: address.to_string(),
        }
    }
}

impl Split for SocketSplit {
    fn name(&self) -> String {
        format!("socket://{}", self.address)
    }

    fn description(&self) -> String {
        format!("the socket {}", self.name())
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn is_replayable(&self) -> bool {
        false
    }

    fn open_at(&self, _position: Option<SplitPosition>) -> Result<Box<dyn LineReader>> {
        let stream = TcpStream::connect(&self.address).map_err(|source| Error::Network {
            what: "cannot connect to",
            address: self.address.clone(),
            source,
        })?;
        Ok(Box::new(ThreadedLines::spawn(self.name().into(), stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::drain;
    use std::io::Write;

    #[test]
    fn socket_lines_until_the_server_closes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"x y\nz\n").unwrap();
        });
        let mut r = SplitSpec::new(SocketSplit::new(&addr)).open().unwrap();
        let lines: Vec<Vec<u8>> = drain(r.as_mut()).into_iter().flat_map(|c| c.1).collect();
        server.join().unwrap();
        assert_eq!(lines, vec![b"x y".to_vec(), b"z".to_vec()]);
    }

    #[test]
    fn refused_socket_is_a_network_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = SplitSpec::new(SocketSplit::new(&addr)).open().err().unwrap();
        assert!(err.is_retryable());
        assert!(err.to_string().contains(&addr));
    }
}
