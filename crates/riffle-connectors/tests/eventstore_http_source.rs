//! `store+http://` against the real store server (`riffle_store_server::serve`, in this
//! process on a tokio runtime, on a real TCP port) reads exactly what the store's own reads
//! return (the oracle: `EventStore::read`): `$all`, a category, a stream, from a position (at
//! the head and beyond it), bounded (to the head as of its start, across pages) and following
//! (events appended while it reads); with a token (the right one reads, a wrong or missing one
//! fails naming the URL and the 401); resumed from a checkpoint position; and across a server
//! killed and restarted on the same port (no gap, no duplicate, no error while it is down).

// A panic in a test helper is the test failing (clippy allows unwrap in #[test] fns only).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{fill, oracle};
use riffle_connectors::{LineReader, Poll, SourceUri, SplitPosition};
use riffle_eventstore::{EventStore, Filter};
use riffle_store_server::ServerOptions;

/// The tests of this file run one at a time: they count the reader threads of the process,
/// and the machine is small.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The store server on a runtime of its own; dropping it (or [`Server::kill`]) drops every
/// connection at once, as a killed process would.
struct Server {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
}

impl Server {
    /// Serves `store` on `port` (0: any free port) of 127.0.0.1.
    fn start(store: &EventStore, port: u16, token: Option<&str>) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // A port just freed by a killed server may take a few tries.
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("bind 127.0.0.1:{port}: {e}; again");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("bind 127.0.0.1:{port}: {e}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let options = ServerOptions {
            token: token.map(str::to_string),
            heartbeat: Duration::from_millis(300),
            ..ServerOptions::default()
        };
        runtime.spawn(riffle_store_server::serve(
            store.clone(),
            listener,
            options,
            std::future::pending(),
        ));
        Server { runtime, addr }
    }

    fn uri(&self, path_and_query: &str) -> String {
        format!("store+http://{}/{path_and_query}", self.addr)
    }

    /// Stops at once: every connection is dropped, nothing is said to the clients.
    fn kill(self) {
        self.runtime.shutdown_background();
    }
}

/// Polls `reader` until it finishes (bounded) or until `want` lines came (following).
fn read(reader: &mut dyn LineReader, want: Option<usize>) -> Vec<(u64, String)> {
    common::read_within(reader, want, Duration::from_secs(30))
}

/// Polls `reader` for `time`, which must give nothing and no error (a following read at its
/// head, or whose server is down).
fn idle(reader: &mut dyn LineReader, time: Duration) {
    let end = Instant::now() + time;
    while Instant::now() < end {
        match reader.poll(100).unwrap() {
            Poll::Pending => std::thread::sleep(Duration::from_millis(5)),
            Poll::Chunk(c) => panic!("unexpected lines from {}", c.first_line),
            Poll::Finished => panic!("a following read finished"),
        }
    }
}

/// The first error `reader` reports (within 10 s).
fn first_error(reader: &mut dyn LineReader) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match reader.poll(100) {
            Err(e) => return e.to_string(),
            Ok(Poll::Finished) => panic!("finished without an error"),
            Ok(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    panic!("no error within 10 s");
}

fn split(uri: &str) -> riffle_connectors::SplitSpec {
    let mut splits = SourceUri::parse(uri).unwrap().splits().unwrap();
    assert_eq!(splits.len(), 1, "the log is one split");
    splits.remove(0)
}

fn open(uri: &str) -> Box<dyn LineReader> {
    split(uri).open().unwrap()
}

/// The reader threads (`riffle-read …`) alive in this process.
fn reader_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("riffle-read"))
        .count()
}

/// Waits up to `within` for the reader threads to be gone.
fn reader_threads_end(within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if reader_threads() == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .collect();
    eprintln!("threads: {names:?}");
    false
}

#[test]
fn bounded_reads_return_exactly_the_events_of_all_a_category_a_stream_and_from_a_position() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    // 2 400 events: `$all` and the account category take several pages of 1 000.
    fill(&store, 800);
    let server = Server::start(&store, 0, None);
    for (path, filter, from) in [
        ("all", Filter::All, 0),
        ("categories/account", Filter::Category("account".into()), 0),
        ("streams/account-2", Filter::Stream("account-2".into()), 0),
        ("streams/account-2", Filter::Stream("account-2".into()), 1501),
        ("categories/ledger", Filter::Category("ledger".into()), 31),
        ("all", Filter::All, 999),
        ("all", Filter::All, 2399),
        ("all", Filter::All, 2400),
        ("all", Filter::All, 100_000),
        ("streams/nobody-1", Filter::Stream("nobody-1".into()), 0),
        ("categories/nobody", Filter::Category("nobody".into()), 0),
    ] {
        let expected = oracle(&store, &filter, from);
        let mut reader = open(&server.uri(&format!("{path}?follow=false&from={from}")));
        let got = read(&mut *reader, None);
        assert_eq!(got.len(), expected.len(), "{path} from {from}");
        assert!(got == expected, "{path} from {from}: not the store's events");
        let end = expected.last().map_or(from, |&(line, _)| line);
        assert!(
            reader.position().unwrap().offset >= end,
            "{path} from {from}: position {:?} before the last event read",
            reader.position()
        );
    }
    assert_eq!(oracle(&store, &Filter::All, 0).len(), 2400);
    assert!(
        reader_threads_end(Duration::from_secs(2)),
        "a bounded read's thread ends with it"
    );
    server.kill();
}

#[test]
fn a_bounded_read_ends_at_the_head_as_of_its_start() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    fill(&store, 5);
    let server = Server::start(&store, 0, None);
    let mut reader = open(&server.uri("all?follow=false"));
    fill(&store, 5); // after the start: not read
    let got = read(&mut *reader, None);
    assert_eq!(got, oracle(&store, &Filter::All, 0)[..15].to_vec());
    // The same with a category: its events after the start are not read either.
    let mut reader = open(&server.uri("categories/account?follow=false"));
    fill(&store, 5);
    let got = read(&mut *reader, None);
    assert_eq!(
        got,
        oracle(&store, &Filter::Category("account".into()), 0)[..20].to_vec()
    );
    server.kill();
}

#[test]
fn a_following_read_sees_appends_in_order_and_resumes_after_the_last_event_handed_out() {
    let _serial = serial();
    for (path, filter) in [
        ("all", Filter::All),
        ("categories/account", Filter::Category("account".into())),
        ("streams/ledger-main", Filter::Stream("ledger-main".into())),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(dir.path()).unwrap();
        fill(&store, 4);
        let server = Server::start(&store, 0, None);
        let uri = server.uri(path);
        let mut reader = open(&uri);
        let before = oracle(&store, &filter, 0).len();
        let first = read(&mut *reader, Some(before));
        idle(&mut *reader, Duration::from_millis(100));
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    fill(&store, 2);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        writer.join().unwrap();
        let all = oracle(&store, &filter, 0);
        let second = read(&mut *reader, Some(all.len() - before));
        assert!([first, second].concat() == all, "{path}: not the store's events");
        idle(&mut *reader, Duration::from_millis(100));
        assert_eq!(reader.position(), Some(SplitPosition::at_record(all.last().unwrap().0)));

        // The checkpoint position: reopened after the 10th event, it reads the 11th onwards.
        let mut resumed = split(&uri).open_at(Some(SplitPosition::at_record(all[9].0))).unwrap();
        assert!(
            read(&mut *resumed, Some(all.len() - 10)) == all[10..],
            "{path}: resumed"
        );
        // At the head and beyond it: nothing until new events come, then exactly those.
        let head = store.head();
        let mut at_head = split(&uri).open_at(Some(SplitPosition::at_record(head))).unwrap();
        let mut beyond = open(&server.uri(&format!("{path}?from={}", head + 3)));
        idle(&mut *at_head, Duration::from_millis(100));
        idle(&mut *beyond, Duration::from_millis(10));
        fill(&store, 3);
        let (new, after_3) = (oracle(&store, &filter, head), oracle(&store, &filter, head + 3));
        assert!(read(&mut *at_head, Some(new.len())) == new, "{path}: from the head");
        assert!(
            read(&mut *beyond, Some(after_3.len())) == after_3,
            "{path}: from beyond the head"
        );
        drop((reader, resumed, at_head, beyond));
        server.kill();
    }
}

#[test]
fn a_token_is_sent_and_a_wrong_or_missing_one_fails_naming_the_url_and_the_401() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    fill(&store, 10);
    let server = Server::start(&store, 0, Some("s3cret"));
    let all = oracle(&store, &Filter::All, 0);
    assert!(read(&mut *open(&server.uri("all?follow=false&token=s3cret")), None) == all);
    assert!(read(&mut *open(&server.uri("all?token=s3cret")), Some(30)) == all);
    for query in ["?follow=false&token=n0t-1t", "?follow=false", "?token=n0t-1t", ""] {
        let uri = server.uri(&format!("all{query}"));
        // The error may come from the open (a bounded read asks for the head) or a poll.
        let error = match split(&uri).open() {
            Err(e) => e.to_string(),
            Ok(mut reader) => first_error(&mut *reader),
        };
        assert!(error.contains(&format!("http://{}/", server.addr)), "{query}: {error}");
        assert!(error.contains("401"), "{query}: {error}");
        assert!(
            !error.contains("s3cret") && !error.contains("n0t-1t"),
            "{query}: the token is not shown: {error}"
        );
    }
    server.kill();
}

#[test]
fn a_following_read_waits_out_a_killed_server_and_resumes_without_a_gap_or_a_duplicate() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    fill(&store, 10);
    let server = Server::start(&store, 0, None);
    let port = server.addr.port();
    let uri = server.uri("categories/account");
    let mut reader = open(&uri);
    let mut got = read(&mut *reader, Some(20));
    server.kill();
    // While the server is down: appends go on, the reader waits without an error.
    fill(&store, 10);
    idle(&mut *reader, Duration::from_millis(1500));
    let server = Server::start(&store, port, None);
    fill(&store, 10);
    let all = oracle(&store, &Filter::Category("account".into()), 0);
    got.extend(read(&mut *reader, Some(all.len() - got.len())));
    assert!(got == all, "{} lines read, {} in the store", got.len(), all.len());
    // Killed mid-stream: a long catch-up cut at a random point.
    fill(&store, 3000);
    let all = oracle(&store, &Filter::Category("account".into()), 0);
    let mut reader = open(&uri);
    let mut got = read(&mut *reader, Some(10));
    server.kill();
    let server = Server::start(&store, port, None);
    got.extend(read(&mut *reader, Some(all.len() - got.len())));
    idle(&mut *reader, Duration::from_millis(100));
    let lines: Vec<u64> = got.iter().map(|(l, _)| *l).collect();
    let repeated: Vec<_> = lines.windows(2).filter(|w| w[0] >= w[1]).collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|g| !all.contains(g))
        .map(|(l, s)| (l, &s[..s.len().min(300)]))
        .collect();
    eprintln!("not in the store: {extra:?}");
    assert!(
        got == all,
        "{} lines read, {} in the store; out of order: {repeated:?}",
        got.len(),
        all.len()
    );
    drop(reader);
    server.kill();
}

#[test]
fn a_dropped_following_reader_stops_its_thread_promptly() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    fill(&store, 3);
    let server = Server::start(&store, 0, None);
    assert!(reader_threads_end(Duration::from_secs(5)), "no reader thread before");
    let mut reader = open(&server.uri("all"));
    read(&mut *reader, Some(9));
    idle(&mut *reader, Duration::from_millis(50));
    assert_eq!(reader_threads(), 1);
    drop(reader);
    assert!(
        reader_threads_end(Duration::from_secs(1)),
        "the reader thread outlives its reader"
    );
    // A reader whose server is down (its thread backing off) stops as promptly.
    let mut reader = open(&server.uri("all"));
    read(&mut *reader, Some(9));
    server.kill();
    idle(&mut *reader, Duration::from_millis(300));
    drop(reader);
    assert!(
        reader_threads_end(Duration::from_secs(1)),
        "the reader thread outlives its reader"
    );
}
