//! The remote event store as a source: `store+http://HOST:PORT/all` reads the events of a store
//! served by `riffle-store-server`, for a projection that runs in another process (or on
//! another machine) than the store.
//!
//! ```text
//! store+http://HOST:PORT/all[?from=P][&follow=true|false][&token=T]
//! store+http://HOST:PORT/categories/C?…
//! store+http://HOST:PORT/streams/S?…
//! ```
//!
//! Lines, line numbers and checkpoint positions are those of `store://` (see
//! [`crate::eventstore`]): one split, one line per event (its JSON), line `L` the event at
//! global position `L - 1`, the position after the last event handed out checkpointed, so a
//! restored job resumes after the last event of its checkpoint.
//!
//! A background thread (the model of `reader_thread.rs`) does the blocking HTTP: with
//! `follow=true` (the default) it holds the server's live subscription, `GET
//! /subscribe/all?from=P` (Server-Sent Events whose `id:` is the position and `data:` the
//! event's JSON), and when the connection drops or stays silent for [`SILENCE`] (the server
//! sends a heartbeat every 15 s) it reconnects from the position after the last event it
//! received, so no event is skipped or repeated; with `follow=false` the split asks for the
//! head (`GET /head`) when it is opened and pages through `GET /all?from=P&limit=N`
//! (`{"events":[…],"next":P}`) up to that head, and ends: like `store://`, a bounded read ends
//! at the head as of its start however busy the store is. `token=T` is sent as
//! `Authorization: Bearer T`. A refused connection is retried with backoff (50 ms doubling to
//! 2 s: the server may be restarting); an answer that retrying cannot change (401, 403, 404,
//! 400, 410) fails the job, naming the URL, the status and the server's message. The thread
//! ends within [`TICK`] of its reader being dropped (the job stopped or failed), whatever the
//! server does.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use riffle_core::{Error, Result};
use riffle_eventstore::Filter;

use crate::eventstore::{PendingEvents, StoreQuery};
use crate::source::{LineReader, Poll, Source, Split, SplitPosition, SplitSpec};

/// A live subscription silent for this long is reconnected (from where it was): a server that
/// went away without closing the connection is noticed. Three of the server's 15 s
/// heartbeats, so that an idle but healthy subscription is not reconnected.
pub const SILENCE: Duration = Duration::from_secs(45);

/// Events per page of a bounded read.
const PAGE: usize = 1000;

/// `store+http://HOST:PORT/…`: a store behind its HTTP server (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteStoreSource {
    /// `HOST:PORT`.
    address: String,
    query: StoreQuery,
    token: Option<String>,
}

impl RemoteStoreSource {
    /// Parses `store+http://HOST:PORT/all|categories/C|streams/S[?from=P][&follow=…][&token=T]`.
    ///
    /// ```
    /// use riffle_connectors::eventstore_http::RemoteStoreSource;
    /// let s = RemoteStoreSource::parse("store+http://127.0.0.1:2113/categories/account?from=5&token=t").unwrap();
    /// assert_eq!(s.subscribe_url(9), "http://127.0.0.1:2113/subscribe/categories/account?from=9");
    /// assert_eq!(s.page_url(9, 100), "http://127.0.0.1:2113/categories/account?from=9&limit=100");
    /// assert!(RemoteStoreSource::parse("store+http://127.0.0.1:2113/everything").is_err());
    /// assert!(RemoteStoreSource::parse("store+http://127.0.0.1:2113/all?category=a").is_err());
    /// ```
    pub fn parse(uri: &str) -> Result<Self> {
        let usage = || {
            Error::Config(format!(
                "source '{uri}': expected store+http://HOST:PORT/all, /categories/C or /streams/S, with ?from=P, &follow=true|false, &token=T"
            ))
        };
        let rest = uri.strip_prefix("store+http://").ok_or_else(usage)?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (address, path) = rest.split_once('/').ok_or_else(usage)?;
        if address.is_empty() || !address.contains(':') {
            return Err(usage());
        }
        let filter = match path.split_once('/') {
            None if path == "all" => Filter::All,
            Some(("categories", c)) if !c.is_empty() => Filter::Category(crate::eventstore::percent_decode(c)),
            Some(("streams", s)) if !s.is_empty() => Filter::Stream(crate::eventstore::percent_decode(s)),
            _ => return Err(usage()),
        };
        let mut token = None;
        let mut q = StoreQuery::parse(uri, query, |k, v| {
            if k == "token" {
                token = Some(v.to_string());
                true
            } else {
                false
            }
        })?;
        if q.filter != Filter::All {
            return Err(Error::Config(format!(
                "source '{uri}': name the category or stream in the path (/categories/C, /streams/S), not in the query"
            )));
        }
        q.filter = filter;
        Ok(RemoteStoreSource {
            address: address.to_string(),
            query: q,
            token,
        })
    }

    /// What is read.
    pub fn query(&self) -> &StoreQuery {
        &self.query
    }

    fn path(&self) -> String {
        match &self.query.filter {
            Filter::All => "all".to_string(),
            Filter::Category(c) => format!("categories/{}", percent_encode(c)),
            Filter::Stream(s) => format!("streams/{}", percent_encode(s)),
        }
    }

    /// The live subscription's URL from position `from`.
    pub fn subscribe_url(&self, from: u64) -> String {
        format!("http://{}/subscribe/{}?from={from}", self.address, self.path())
    }

    /// The URL of a page of up to `limit` events from `from` (a global position; a version
    /// for `/streams/S`).
    pub fn page_url(&self, from: u64, limit: usize) -> String {
        format!("http://{}/{}?from={from}&limit={limit}", self.address, self.path())
    }
}

/// Escapes what a path segment cannot hold.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Source for RemoteStoreSource {
    fn name(&self) -> String {
        format!("store+http://{}/{}", self.address, self.path())
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        Ok(vec![SplitSpec::new(self.clone())])
    }
}

impl Split for RemoteStoreSource {
    fn name(&self) -> String {
        Source::name(self)
    }

    fn description(&self) -> String {
        format!("the event store served at {}", self.address)
    }

    fn is_bounded(&self) -> bool {
        !self.query.follow
    }

    fn is_replayable(&self) -> bool {
        true
    }

    fn open_at(&self, position: Option<SplitPosition>) -> Result<Box<dyn LineReader>> {
        let from = position.map_or(self.query.from, |p| p.offset);
        // A bounded read ends at the head as of now, as `store://` does: events appended
        // while it pages are not read, so that it ends however busy the store is.
        let until = if self.query.follow {
            None
        } else {
            Some(self.head().map_err(|(url, source)| Error::Network {
                what: "cannot read the head of",
                address: url,
                source,
            })?)
        };
        let (tx, rx) = sync_channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let source = self.clone();
        let origin: Arc<str> = Split::name(self).into();
        let thread_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(format!("riffle-read {origin}"))
            .spawn(move || match until {
                None => follow(&source, from, &tx, &thread_stop),
                Some(until) => page(&source, from, until, &tx, &thread_stop),
            })
            .map_err(|source| Error::Network {
                what: "cannot start the reader thread of",
                address: origin.to_string(),
                source,
            })?;
        Ok(Box::new(RemoteReader {
            origin,
            rx,
            stop,
            pending: PendingEvents::default(),
            next: from,
            done: false,
        }))
    }
}

impl RemoteStoreSource {
    /// `GET /head`: the position the next event will take; `Err((url, why))`. A server that
    /// cannot be reached is asked again a few times (it may be restarting).
    fn head(&self) -> std::result::Result<u64, (String, std::io::Error)> {
        #[derive(serde::Deserialize)]
        struct Head {
            head: u64,
        }
        let url = format!("http://{}/head", self.address);
        let agent = agent(Some(Duration::from_secs(60)));
        let mut attempt = 0u32;
        loop {
            let body = get(&agent, self, &url, "application/json").and_then(|r| {
                r.into_body()
                    .read_to_vec()
                    .map_err(|e| (false, std::io::Error::other(e)))
            });
            match body {
                Ok(body) => {
                    return serde_json::from_slice::<Head>(&body)
                        .map(|h| h.head)
                        .map_err(|e| (url.clone(), std::io::Error::other(format!("not a head: {e}"))))
                }
                Err((fatal, e)) if fatal || attempt >= 8 => return Err((url, e)),
                Err((_, e)) => {
                    tracing::warn!("{url}: {e}; trying again");
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
            }
        }
    }
}

/// What the thread hands over: events with their positions, or why it stopped.
type Batch = std::result::Result<Vec<(u64, Vec<u8>)>, (String, std::io::Error)>;

fn agent(per_read: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_per_read(per_read)
        .build()
        .into()
}

/// Sends a GET of `url` with the source's token; `Err(fatal?, error)`.
fn get(
    agent: &ureq::Agent,
    source: &RemoteStoreSource,
    url: &str,
    accept: &str,
) -> std::result::Result<ureq::http::Response<ureq::Body>, (bool, std::io::Error)> {
    let mut request = agent.get(url).header("Accept", accept);
    if let Some(token) = &source.token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = request.call().map_err(|e| (false, std::io::Error::other(e)))?;
    let status = response.status().as_u16();
    if status == 200 {
        return Ok(response);
    }
    let reason = response.status().canonical_reason().unwrap_or("");
    let body = response
        .into_body()
        .into_with_config()
        .limit(4096)
        .read_to_vec()
        .unwrap_or_default();
    Err((is_fatal(status), std::io::Error::other(refusal(status, reason, &body))))
}

/// Whether an answer cannot change by asking again (a wrong token, path or query).
fn is_fatal(status: u16) -> bool {
    matches!(status, 400 | 401 | 403 | 404 | 405 | 410)
}

/// "the server answered 401 Unauthorized: missing bearer token…", with the server's own
/// `{"error": …}` when it gave one.
fn refusal(status: u16, reason: &str, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Answer {
        error: String,
    }
    match serde_json::from_slice::<Answer>(body) {
        Ok(a) => format!("the server answered {status} {reason}: {}", a.error),
        Err(_) => format!("the server answered {status} {reason}"),
    }
}

/// Waits before reconnecting: 50 ms, doubling to 2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(6)).min(2000))
}

/// Sleeps `time` unless `stop` is raised first; whether it was.
fn sleep_unless(stop: &AtomicBool, time: Duration) -> bool {
    let end = Instant::now() + time;
    loop {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(TICK));
    }
}

/// The live subscription: reads Server-Sent Events, reconnecting from the last position,
/// until the reader is dropped (`stop`).
fn follow(source: &RemoteStoreSource, mut next: u64, tx: &SyncSender<Batch>, stop: &AtomicBool) {
    let mut attempt = 0u32;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let url = source.subscribe_url(next);
        let mut reader = match subscribe(source, &url, stop) {
            Ok(r) => r,
            Err((true, e)) => {
                let _ = tx.send(Err((url, e)));
                return;
            }
            Err((false, e)) => {
                if is_stop(&e) {
                    return;
                }
                tracing::warn!("{url}: {e}; reconnecting");
                if sleep_unless(stop, backoff(attempt)) {
                    return;
                }
                attempt += 1;
                continue;
            }
        };
        let (mut data, mut id): (Vec<u8>, Option<u64>) = (Vec::new(), None);
        // The SSE `event:` type; store events have none (`message`).
        let mut kind: Option<Vec<u8>> = None;
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut line = Vec::new();
        let ended = loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break None,
                Ok(_) => {}
                Err(e) => break Some(e),
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if line.is_empty() {
                // The end of an event.
                match kind.take() {
                    Some(k) if k.as_slice() != b"message" => {
                        // `event: error` (the server's read failed, or it is shutting down):
                        // its data is `{"error", "position"}`, not an event of the store;
                        // taking it for one would hand out a line in place of a real event.
                        // Reconnecting from `next` reads again what it could not.
                        break Some(std::io::Error::other(format!(
                            "the server sent an {} event: {}",
                            String::from_utf8_lossy(&k),
                            String::from_utf8_lossy(&data)
                        )));
                    }
                    _ => {}
                }
                if !data.is_empty() {
                    let position = id.or_else(|| event_position(&data));
                    match position {
                        Some(p) if p >= next => {
                            batch.push((p, std::mem::take(&mut data)));
                            next = p + 1;
                        }
                        Some(_) => data.clear(), // seen before a reconnect
                        None => {
                            let _ = tx.send(Err((
                                url.clone(),
                                std::io::Error::other("an event without a position (no id: and no \"position\")"),
                            )));
                            return;
                        }
                    }
                }
                id = None;
                attempt = 0;
                let flush = !batch.is_empty() && (reader.buffer().is_empty() || batch.len() >= 4096);
                if flush && tx.send(Ok(std::mem::take(&mut batch))).is_err() {
                    return;
                }
            } else if let Some(d) = field(&line, b"data") {
                if !data.is_empty() {
                    data.push(b'\n');
                }
                data.extend_from_slice(d);
            } else if let Some(i) = field(&line, b"id") {
                id = std::str::from_utf8(i).ok().and_then(|s| s.trim().parse().ok());
            } else if let Some(k) = field(&line, b"event") {
                kind = Some(k.to_vec());
            }
            // Comments (`: heartbeat`), `retry:` carry nothing for us.
        };
        if !batch.is_empty() && tx.send(Ok(batch)).is_err() {
            return;
        }
        match ended {
            Some(e) if is_stop(&e) => return,
            Some(e) => tracing::warn!("{url}: {e}; reconnecting from position {next}"),
            None => tracing::info!("{url}: the server closed the subscription; reconnecting from position {next}"),
        }
        if sleep_unless(stop, backoff(attempt)) {
            return;
        }
        attempt += 1;
    }
}

/// How often a blocked read of the subscription looks at the stop flag: the longest a reader
/// thread outlives its reader.
const TICK: Duration = Duration::from_millis(100);

/// Opens the subscription `url` (`GET`, HTTP/1.1, on a socket of its own rather than through
/// `ureq`: a blocked read must end within [`TICK`] of the reader being dropped, and `ureq`
/// gives no way to close a connection it reads from another thread, while its read timeout
/// ends the response) and returns its body, dechunked, once the answer is 200;
/// `Err(fatal?, error)` otherwise.
fn subscribe<'a>(
    source: &RemoteStoreSource,
    url: &str,
    stop: &'a AtomicBool,
) -> std::result::Result<BufReader<Body<'a>>, (bool, std::io::Error)> {
    let retry = |e: std::io::Error| (false, e);
    let path = url
        .strip_prefix("http://")
        .and_then(|u| u.find('/').map(|i| &u[i..]))
        .unwrap_or("/");
    let mut last = std::io::Error::new(ErrorKind::NotFound, "the host name has no address");
    let mut stream = None;
    for addr in source.address.to_socket_addrs().map_err(retry)? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or((false, last))?;
    stream.set_read_timeout(Some(TICK)).map_err(retry)?;
    stream.set_nodelay(true).map_err(retry)?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
        source.address
    );
    if let Some(token) = &source.token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).map_err(retry)?;
    let mut raw = BufReader::new(Patient {
        stream,
        stop,
        heard: Instant::now(),
    });
    // The status line and the headers.
    let mut line = String::new();
    raw.read_line(&mut line).map_err(retry)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            retry(std::io::Error::other(format!(
                "not an HTTP answer: {:?}",
                line.trim_end()
            )))
        })?;
    let reason = line.split_whitespace().skip(2).collect::<Vec<_>>().join(" ");
    let (mut chunked, mut length) = (false, None::<u64>);
    loop {
        line.clear();
        if raw.read_line(&mut line).map_err(retry)? == 0 {
            return Err(retry(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "the answer's headers are cut",
            )));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok();
            }
        }
    }
    let body = Body {
        raw,
        chunked,
        left: if chunked { 0 } else { length.unwrap_or(u64::MAX) },
        started: false,
        done: false,
    };
    if status == 200 {
        return Ok(BufReader::with_capacity(1 << 16, body));
    }
    let mut text = Vec::new();
    let _ = body.take(4096).read_to_end(&mut text);
    Err((is_fatal(status), std::io::Error::other(refusal(status, &reason, &text))))
}

/// Why a read of the subscription failed when its reader was dropped. (Not
/// `ErrorKind::Interrupted`: `BufRead::read_until` retries that forever.)
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the reader stopped")
    }
}

impl std::error::Error for Stopped {}

/// Whether `e` is [`Stopped`].
fn is_stop(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Stopped>())
}

/// The subscription's socket: a read that times out (every [`TICK`]) is tried again unless
/// the reader was dropped ([`Stopped`]) or the server has said nothing, not even a
/// heartbeat, for [`SILENCE`] (`TimedOut`: it went away without closing).
struct Patient<'a> {
    stream: TcpStream,
    stop: &'a AtomicBool,
    heard: Instant,
}

impl Read for Patient<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(std::io::Error::other(Stopped));
            }
            match self.stream.read(buf) {
                Ok(n) => {
                    self.heard = Instant::now();
                    return Ok(n);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if self.heard.elapsed() >= SILENCE {
                        return Err(std::io::Error::new(
                            ErrorKind::TimedOut,
                            format!("nothing heard for {} s", SILENCE.as_secs()),
                        ));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A response body: chunked (`Transfer-Encoding: chunked`, as a streamed SSE answer is), of
/// a `Content-Length`, or up to the end of the connection.
struct Body<'a> {
    raw: BufReader<Patient<'a>>,
    chunked: bool,
    /// Bytes left in the current chunk (or the body).
    left: u64,
    /// A chunk was read (its CRLF comes before the next size).
    started: bool,
    done: bool,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() || (!self.chunked && self.left == 0) {
            return Ok(0);
        }
        if self.chunked && self.left == 0 {
            let mut line = String::new();
            if self.started {
                self.raw.read_line(&mut line)?; // the CRLF after the last chunk
                line.clear();
            }
            self.started = true;
            if self.raw.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "the answer is cut"));
            }
            let size = line.trim_end().split(';').next().unwrap_or("").trim();
            self.left = u64::from_str_radix(size, 16)
                .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, format!("not a chunk size: {size:?}")))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.raw.read(&mut buf[..want])?;
        if n == 0 {
            self.done = true;
            return if self.chunked || self.left != u64::MAX {
                Err(std::io::Error::new(ErrorKind::UnexpectedEof, "the answer is cut"))
            } else {
                Ok(0)
            };
        }
        if self.left != u64::MAX || self.chunked {
            self.left -= n as u64;
        }
        if !self.chunked && self.left == 0 {
            self.done = true;
        }
        Ok(n)
    }
}

/// The value of an SSE field `name:` (one leading space dropped).
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

/// The `position` of an event's JSON.
fn event_position(json: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Position {
        position: u64,
    }
    serde_json::from_slice::<Position>(json).ok().map(|p| p.position)
}

/// A bounded read: pages up to `until` (the head when the read started), or until a page
/// comes back empty.
fn page(source: &RemoteStoreSource, mut next: u64, until: u64, tx: &SyncSender<Batch>, stop: &AtomicBool) {
    #[derive(serde::Deserialize)]
    struct Page {
        events: Vec<Box<serde_json::value::RawValue>>,
        next: Option<u64>,
    }
    let agent = agent(Some(Duration::from_secs(60)));
    let mut attempt = 0u32;
    // `/all` and `/categories/C` page by global position; `/streams/S` by version, from the
    // stream's start (events before `next` are skipped).
    let by_version = matches!(source.query.filter, Filter::Stream(_));
    let mut cursor = if by_version { 0 } else { next };
    while next < until && !stop.load(Ordering::Relaxed) {
        let url = source.page_url(cursor, PAGE);
        let body = get(&agent, source, &url, "application/json").and_then(|r| {
            r.into_body()
                .read_to_vec()
                .map_err(|e| (false, std::io::Error::other(e)))
        });
        let body = match body {
            Ok(b) => b,
            Err((fatal, e)) if fatal || attempt >= 8 => {
                let _ = tx.send(Err((url, e)));
                return;
            }
            Err((_, e)) => {
                tracing::warn!("{url}: {e}; trying again");
                if sleep_unless(stop, backoff(attempt)) {
                    return;
                }
                attempt += 1;
                continue;
            }
        };
        attempt = 0;
        let page: Page = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err((url, std::io::Error::other(format!("not a page of events: {e}")))));
                return;
            }
        };
        let mut batch = Vec::with_capacity(page.events.len());
        let mut at_bound = false;
        for raw in &page.events {
            match event_position(raw.get().as_bytes()) {
                Some(p) if p >= until => at_bound = true,
                Some(p) if p >= next => batch.push((p, raw.get().as_bytes().to_vec())),
                Some(_) => {}
                None => {
                    let _ = tx.send(Err((url, std::io::Error::other("an event without a position"))));
                    return;
                }
            }
        }
        if let Some(&(last, _)) = batch.last() {
            next = last + 1;
        }
        if !batch.is_empty() && tx.send(Ok(batch)).is_err() {
            return;
        }
        if page.events.is_empty() || at_bound {
            return; // the head, or the bound: the read ends
        }
        match page.next {
            Some(c) if c > cursor => cursor = c,
            _ => return,
        }
        if !by_version {
            // Nothing the filter admits lies below the page's `next`.
            next = next.max(cursor);
        }
    }
}

/// The worker's side: events from the thread, handed out in runs of consecutive positions.
struct RemoteReader {
    origin: Arc<str>,
    rx: Receiver<Batch>,
    /// Raised when the reader is dropped: its thread ends within [`TICK`].
    stop: Arc<AtomicBool>,
    pending: PendingEvents,
    /// The position after the last event handed out.
    next: u64,
    done: bool,
}

impl Drop for RemoteReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl LineReader for RemoteReader {
    fn origin(&self) -> &Arc<str> {
        &self.origin
    }

    fn poll(&mut self, max_lines: usize) -> Result<Poll> {
        while !self.done {
            match self.rx.try_recv() {
                Ok(Ok(batch)) => {
                    for (p, line) in batch {
                        self.pending.push(p, line);
                    }
                }
                Ok(Err((url, source))) => {
                    self.done = true;
                    return Err(Error::Network {
                        what: "cannot read events from",
                        address: url,
                        source,
                    });
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.done = true,
            }
        }
        match self.pending.take_run(max_lines) {
            Some((chunk, after)) => {
                self.next = after;
                Ok(Poll::Chunk(chunk))
            }
            None if self.done => Ok(Poll::Finished),
            None => Ok(Poll::Pending),
        }
    }

    fn position(&self) -> Option<SplitPosition> {
        Some(SplitPosition::at_record(self.next))
    }
}
