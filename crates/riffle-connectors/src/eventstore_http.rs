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
//! event's JSON), and when the connection drops or stays silent for [`SILENCE`] it reconnects
//! from the position after the last event it received, so no event is skipped or repeated;
//! with `follow=false` it pages through `GET /all?from=P&limit=N` (`{"events":[…],"next":P}`)
//! until a page comes back empty, and ends. `token=T` is sent as `Authorization: Bearer T`. A
//! refused connection is retried with backoff (the server may be restarting); an answer that
//! retrying cannot change (401, 403, 404, 400) fails the job, naming the URL.

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use riffle_core::{Error, Result};
use riffle_eventstore::Filter;

use crate::eventstore::{PendingEvents, StoreQuery};
use crate::source::{LineReader, Poll, Source, Split, SplitPosition, SplitSpec};

/// A live subscription silent for this long is reconnected (from where it was): a server that
/// went away without closing the connection is noticed, and so is a job that has ended.
pub const SILENCE: Duration = Duration::from_secs(15);

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
        let (tx, rx) = sync_channel(64);
        let source = self.clone();
        let origin: Arc<str> = Split::name(self).into();
        std::thread::Builder::new()
            .name(format!("riffle-read {origin}"))
            .spawn(move || {
                if source.query.follow {
                    follow(&source, from, &tx)
                } else {
                    page(&source, from, &tx)
                }
            })
            .map_err(|source| Error::Network {
                what: "cannot start the reader thread of",
                address: origin.to_string(),
                source,
            })?;
        Ok(Box::new(RemoteReader {
            origin,
            rx,
            pending: PendingEvents::default(),
            next: from,
            done: false,
        }))
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
    match status {
        200 => Ok(response),
        400 | 401 | 403 | 404 | 405 => Err((
            true,
            std::io::Error::other(format!(
                "the server answered {status} {}",
                response.status().canonical_reason().unwrap_or("")
            )),
        )),
        _ => Err((false, std::io::Error::other(format!("the server answered {status}")))),
    }
}

/// Waits before reconnecting: 50 ms, doubling to 2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(6)).min(2000))
}

/// The live subscription: reads Server-Sent Events, reconnecting from the last position.
fn follow(source: &RemoteStoreSource, mut next: u64, tx: &SyncSender<Batch>) {
    let agent = agent(Some(SILENCE));
    let mut attempt = 0u32;
    loop {
        // Also a check that the job still reads: it has gone away when this fails.
        if tx.send(Ok(Vec::new())).is_err() {
            return;
        }
        let url = source.subscribe_url(next);
        let response = match get(&agent, source, &url, "text/event-stream") {
            Ok(r) => r,
            Err((true, e)) => {
                let _ = tx.send(Err((url, e)));
                return;
            }
            Err((false, e)) => {
                tracing::warn!("{url}: {e}; reconnecting");
                std::thread::sleep(backoff(attempt));
                attempt += 1;
                continue;
            }
        };
        let mut reader = BufReader::with_capacity(1 << 16, response.into_body().into_reader());
        let (mut data, mut id): (Vec<u8>, Option<u64>) = (Vec::new(), None);
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
            }
            // Comments (`: ping`), `event:` and `retry:` carry nothing for us.
        };
        if !batch.is_empty() && tx.send(Ok(batch)).is_err() {
            return;
        }
        match ended {
            Some(e) => tracing::warn!("{url}: {e}; reconnecting from position {next}"),
            None => tracing::info!("{url}: the server closed the subscription; reconnecting from position {next}"),
        }
        std::thread::sleep(backoff(attempt));
        attempt += 1;
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

/// A bounded read: pages until one comes back empty.
fn page(source: &RemoteStoreSource, mut next: u64, tx: &SyncSender<Batch>) {
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
    loop {
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
                std::thread::sleep(backoff(attempt));
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
        for raw in &page.events {
            match event_position(raw.get().as_bytes()) {
                Some(p) if p >= next => batch.push((p, raw.get().as_bytes().to_vec())),
                Some(_) => {}
                None => {
                    let _ = tx.send(Err((url, std::io::Error::other("an event without a position"))));
                    return;
                }
            }
        }
        if page.events.is_empty() {
            return; // the head: the read ends
        }
        if let Some(&(last, _)) = batch.last() {
            next = last + 1;
        }
        if !batch.is_empty() && tx.send(Ok(batch)).is_err() {
            return;
        }
        match page.next {
            Some(c) if c > cursor => cursor = c,
            _ => return,
        }
    }
}

/// The worker's side: events from the thread, handed out in runs of consecutive positions.
struct RemoteReader {
    origin: Arc<str>,
    rx: Receiver<Batch>,
    pending: PendingEvents,
    /// The position after the last event handed out.
    next: u64,
    done: bool,
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
