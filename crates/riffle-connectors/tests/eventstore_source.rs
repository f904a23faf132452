//! `store://` reads exactly the events the store's own reads return (the oracle:
//! `EventStore::read`), for `$all`, a category, a stream and from a position, bounded and
//! following, from the writer's instance and from a read-only follower; and resumes from a
//! position exactly after the last event handed out.

// A panic in a test helper is the test failing (clippy allows unwrap in #[test] fns only).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{fill, oracle};
use riffle_connectors::{LineReader, Poll, SourceUri, SplitPosition};
use riffle_eventstore::{EventStore, Filter};

/// Polls `reader` until it finishes (bounded) or until `want` lines came (following).
fn read(reader: &mut dyn LineReader, want: Option<usize>) -> Vec<(u64, String)> {
    common::read_within(reader, want, Duration::from_secs(20))
}

fn open(uri: &str) -> Box<dyn LineReader> {
    let splits = SourceUri::parse(uri).unwrap().splits().unwrap();
    assert_eq!(splits.len(), 1, "the log is one split");
    splits[0].open().unwrap()
}

#[test]
fn bounded_reads_return_exactly_the_events_of_all_a_category_a_stream_and_from_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    fill(&store, 20);
    let d = dir.path().display();
    for (query, filter, from) in [
        ("", Filter::All, 0),
        ("&category=account", Filter::Category("account".into()), 0),
        ("&stream=account-2", Filter::Stream("account-2".into()), 0),
        ("&category=ledger&from=31", Filter::Category("ledger".into()), 31),
        ("&from=59", Filter::All, 59),
        ("&from=60", Filter::All, 60),
    ] {
        let expected = oracle(&store, &filter, from);
        // The writer's own instance (registered) and a read-only follower read the same.
        let registered = riffle_connectors::eventstore::register_open_store(&store);
        let got = read(&mut *open(&format!("store://{d}?follow=false{query}")), None);
        assert_eq!(got, expected, "registered store, {query}");
        drop(registered);
        let got = read(&mut *open(&format!("store://{d}?follow=false{query}")), None);
        assert_eq!(got, expected, "read-only store, {query}");
    }
    assert_eq!(oracle(&store, &Filter::All, 0).len(), 60);
    assert_eq!(oracle(&store, &Filter::Category("account".into()), 0).len(), 40);
}

#[test]
fn a_bounded_read_ends_at_the_head_as_of_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let _registered = riffle_connectors::eventstore::register_open_store(&store);
    fill(&store, 5);
    let mut reader = open(&format!("store://{}?follow=false", dir.path().display()));
    fill(&store, 5); // after the start: not read
    let got = read(&mut *reader, None);
    assert_eq!(got, oracle(&store, &Filter::All, 0)[..15].to_vec());
}

#[test]
fn a_following_read_waits_for_new_events_and_resumes_after_the_last_one_handed_out() {
    for registered in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(dir.path()).unwrap();
        let guard = registered.then(|| riffle_connectors::eventstore::register_open_store(&store));
        fill(&store, 4);
        let uri = format!("store://{}?category=account", dir.path().display());
        let mut reader = open(&uri);
        let first = read(&mut *reader, Some(8));
        assert!(
            matches!(reader.poll(100).unwrap(), Poll::Pending),
            "at the head, it waits"
        );
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    fill(&store, 2);
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        };
        let second = read(&mut *reader, Some(20));
        writer.join().unwrap();
        let all = oracle(&store, &Filter::Category("account".into()), 0);
        assert_eq!([first, second].concat(), all, "registered: {registered}");
        // Resuming from the position after the 10th event reads the 11th onwards.
        let at = SplitPosition::at_record(all[9].0);
        let splits = SourceUri::parse(&uri).unwrap().splits().unwrap();
        let mut resumed = splits[0].open_at(Some(at)).unwrap();
        assert_eq!(
            read(&mut *resumed, Some(18)),
            all[10..].to_vec(),
            "registered: {registered}"
        );
        assert_eq!(resumed.position(), Some(SplitPosition::at_record(all[27].0)));
        drop(guard);
    }
}

#[test]
fn bad_uris_and_missing_stores_are_named() {
    let err = |uri: &str| {
        SourceUri::parse(uri)
            .and_then(|s| s.splits())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(err("store:///nonexistent/riffle-store").contains("/nonexistent/riffle-store"));
    assert!(err("store:///tmp?from=x").contains("from=x"));
    assert!(err("store:///tmp?follow=maybe").contains("follow=maybe"));
    assert!(err("store:///tmp?colour=red").contains("colour"));
    assert!(err("store+http://127.0.0.1:1/everything").contains("/all"));
}
