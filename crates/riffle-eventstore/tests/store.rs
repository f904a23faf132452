//! The event store against what it promises: expected versions, idempotent retries, atomic
//! appends that survive a torn tail, indexes by stream and category, subscriptions without a
//! gap, and a model of the store (plain vectors) as the oracle of random append sequences.

use proptest::prelude::*;
use riffle_eventstore::{
    Direction, EventStore, ExpectedVersion, Filter, NewEvent, RecordedEvent, StoreError, StoreOptions, Uuid,
};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn ev(kind: &str, n: i64) -> NewEvent {
    NewEvent::json(kind, &serde_json::json!({ "n": n })).expect("a JSON value serialises")
}

fn n_of(e: &RecordedEvent) -> i64 {
    serde_json::from_str::<serde_json::Value>(&e.data).expect("the data is JSON")["n"]
        .as_i64()
        .expect("the data has n")
}

#[test]
fn appends_are_read_by_stream_category_and_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let a = store
        .append(
            "account-1",
            ExpectedVersion::NoStream,
            vec![ev("Opened", 0), ev("Deposited", 10)],
        )
        .unwrap();
    assert_eq!(
        (a.first_version, a.last_version, a.first_position, a.position),
        (0, 1, 0, 1)
    );
    let b = store
        .append("transfer-9", ExpectedVersion::Any, vec![ev("Started", 1)])
        .unwrap();
    assert_eq!((b.first_version, b.position), (0, 2));
    let c = store
        .append("account-2", ExpectedVersion::NoStream, vec![ev("Opened", 2)])
        .unwrap();
    let d = store
        .append("account-1", ExpectedVersion::Exact(1), vec![ev("Withdrawn", 3)])
        .unwrap();
    assert_eq!((c.position, d.first_version, d.position), (3, 2, 4));
    assert_eq!(store.head(), 5);

    let all = store.read(&Filter::All, 0, 100).unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    let acc1 = store.read_stream("account-1", 0, Direction::Forward, 100).unwrap();
    assert_eq!(
        acc1.iter().map(|e| (e.version, e.position)).collect::<Vec<_>>(),
        vec![(0, 0), (1, 1), (2, 4)]
    );
    let back = store
        .read_stream("account-1", u64::MAX, Direction::Backward, 2)
        .unwrap();
    assert_eq!(back.iter().map(|e| e.version).collect::<Vec<_>>(), vec![2, 1]);
    let back_from_1 = store.read_stream("account-1", 1, Direction::Backward, 10).unwrap();
    assert_eq!(back_from_1.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 0]);
    let cat = store.read(&Filter::Category("account".into()), 1, 100).unwrap();
    assert_eq!(cat.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 3, 4]);
    let stream = store.read(&Filter::Stream("account-1".into()), 2, 100).unwrap();
    assert_eq!(stream.iter().map(|e| e.position).collect::<Vec<_>>(), vec![4]);
    assert!(store
        .read_stream("nobody", 0, Direction::Forward, 10)
        .unwrap()
        .is_empty());
    assert_eq!(store.stream_version("account-1"), (Some(2), false));
    assert_eq!(store.stream_version("nobody"), (None, false));
    // The JSON line round-trips.
    for e in &all {
        assert_eq!(&RecordedEvent::from_json(&e.to_json()).unwrap(), e);
    }
}

#[test]
fn a_wrong_expected_version_writes_nothing_and_names_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let missing = store
        .append("s-1", ExpectedVersion::Exists, vec![ev("A", 0)])
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::WrongExpectedVersion { current: None, .. }),
        "{missing}"
    );
    let exact = store
        .append("s-1", ExpectedVersion::Exact(0), vec![ev("A", 0)])
        .unwrap_err();
    assert!(matches!(exact, StoreError::WrongExpectedVersion { current: None, .. }));
    store
        .append("s-1", ExpectedVersion::NoStream, vec![ev("A", 0), ev("B", 1)])
        .unwrap();
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(5),
    ] {
        let e = store.append("s-1", expected, vec![ev("C", 2), ev("D", 3)]).unwrap_err();
        assert!(
            matches!(e, StoreError::WrongExpectedVersion { current: Some(1), .. }),
            "{e}"
        );
        assert!(e.to_string().contains("current 1"), "{e}");
    }
    assert_eq!(store.head(), 2);
    store.append("s-1", ExpectedVersion::Exists, vec![ev("C", 2)]).unwrap();
    store
        .append("s-1", ExpectedVersion::Exact(2), vec![ev("D", 3)])
        .unwrap();
    store.append("s-1", ExpectedVersion::Any, vec![ev("E", 4)]).unwrap();
    assert_eq!(store.stream_version("s-1").0, Some(4));
}

#[test]
fn invalid_appends_are_refused_with_the_event_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let bad_json = NewEvent {
        id: None,
        event_type: "T".into(),
        data: "{not json".into(),
        metadata: None,
    };
    let e = store
        .append("s", ExpectedVersion::Any, vec![ev("A", 0), bad_json])
        .unwrap_err();
    assert!(e.to_string().contains("event 1: the data is not JSON"), "{e}");
    assert!(store.append("s", ExpectedVersion::Any, vec![]).is_err());
    assert!(store.append("", ExpectedVersion::Any, vec![ev("A", 0)]).is_err());
    assert!(store.append("s", ExpectedVersion::Any, vec![ev("$system", 0)]).is_err());
    let id = Uuid::new_v4();
    let twice = store
        .append(
            "s",
            ExpectedVersion::Any,
            vec![ev("A", 0).with_id(id), ev("B", 1).with_id(id)],
        )
        .unwrap_err();
    assert!(twice.to_string().contains("appears twice"), "{twice}");
    assert_eq!(store.head(), 0);
}

#[test]
fn a_retried_append_returns_the_first_positions_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let ids = [Uuid::new_v4(), Uuid::new_v4()];
    let batch = || vec![ev("A", 0).with_id(ids[0]), ev("B", 1).with_id(ids[1])];
    store.append("other", ExpectedVersion::Any, vec![ev("X", 9)]).unwrap();
    let first = store.append("s-1", ExpectedVersion::NoStream, batch()).unwrap();
    assert!(!first.already_written);
    // The retry's expected version no longer holds; it is still recognised as a retry.
    let retry = store.append("s-1", ExpectedVersion::NoStream, batch()).unwrap();
    assert!(retry.already_written);
    assert_eq!(
        (
            retry.first_version,
            retry.last_version,
            retry.first_position,
            retry.position
        ),
        (0, 1, 1, 2)
    );
    assert_eq!(store.head(), 3);
    // Part of the ids, or the ids in another stream, is not a retry.
    let part = store.append("s-1", ExpectedVersion::Any, vec![ev("A", 0).with_id(ids[0])]);
    assert!(
        part.is_ok(),
        "a prefix of the same append is a retry of its first event: {part:?}"
    );
    let elsewhere = store.append("s-2", ExpectedVersion::Any, batch()).unwrap_err();
    assert!(elsewhere.to_string().contains("already appended"), "{elsewhere}");
    let mixed = store
        .append(
            "s-1",
            ExpectedVersion::Any,
            vec![ev("A", 0).with_id(ids[1]), ev("B", 1).with_id(ids[0])],
        )
        .unwrap_err();
    assert!(matches!(mixed, StoreError::InvalidAppend { .. }));
    // After a restart, the ids are still known.
    drop(store);
    let store = EventStore::open(dir.path()).unwrap();
    let again = store.append("s-1", ExpectedVersion::Any, batch()).unwrap();
    assert!(again.already_written);
    assert_eq!(again.position, 2);
    assert_eq!(store.head(), 3);
}

#[test]
fn concurrent_writers_with_exact_versions_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    store
        .append("account-1", ExpectedVersion::NoStream, vec![ev("Opened", 0)])
        .unwrap();
    let threads = 8;
    let per_thread = 40;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut won = Vec::new();
                let mut conflicts = 0;
                for i in 0..per_thread {
                    loop {
                        let (current, _) = store.stream_version("account-1");
                        let amount = (t * 1000 + i) as i64;
                        match store.append(
                            "account-1",
                            ExpectedVersion::Exact(current.unwrap()),
                            vec![ev("Deposited", amount)],
                        ) {
                            Ok(r) => {
                                won.push((r.first_version, amount));
                                break;
                            }
                            Err(StoreError::WrongExpectedVersion { .. }) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                (won, conflicts)
            })
        })
        .collect();
    let mut won: Vec<(u64, i64)> = Vec::new();
    for h in handles {
        won.extend(h.join().unwrap().0);
    }
    won.sort();
    // Each version won exactly once, by one thread, and the stream holds exactly the winners.
    assert_eq!(
        won.iter().map(|w| w.0).collect::<Vec<_>>(),
        (1..=(threads * per_thread) as u64).collect::<Vec<_>>()
    );
    let events = store.read_stream("account-1", 1, Direction::Forward, 10_000).unwrap();
    assert_eq!(events.iter().map(|e| (e.version, n_of(e))).collect::<Vec<_>>(), won);
    let sum: i64 = events.iter().map(n_of).sum();
    assert_eq!(sum, won.iter().map(|w| w.1).sum::<i64>());
}

#[test]
fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let threads = 32;
    let per_thread = 50;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (0..per_thread)
                    .map(|i| {
                        store
                            .append(
                                &format!("w-{t}"),
                                ExpectedVersion::Exact(i as u64).max_if_first(i),
                                vec![ev("E", i as i64)],
                            )
                            .unwrap()
                            .position
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut positions: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    positions.sort();
    assert_eq!(positions, (0..(threads * per_thread) as u64).collect::<Vec<_>>());
    let stats = store.writer_stats();
    assert_eq!(stats.appends, (threads * per_thread) as u64);
    // Not a timing assertion: with 32 writers waiting, a commit carries more than one append.
    assert!(stats.commits < stats.appends, "{stats:?}");
}

trait FirstAppend {
    fn max_if_first(self, i: usize) -> ExpectedVersion;
}
impl FirstAppend for ExpectedVersion {
    fn max_if_first(self, i: usize) -> ExpectedVersion {
        if i == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(i as u64 - 1)
        }
    }
}

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .expect("the store directory lists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_and_whole_appends_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EventStore::open(dir.path()).unwrap();
        store
            .append("a-1", ExpectedVersion::NoStream, vec![ev("A", 0)])
            .unwrap();
        store
            .append(
                "a-2",
                ExpectedVersion::NoStream,
                vec![ev("A", 1), ev("B", 2), ev("C", 3)],
            )
            .unwrap();
    }
    let seg = last_segment(dir.path());
    let whole = std::fs::read(&seg).unwrap();
    let first_len = {
        // The length of the first append's one frame.
        8 + u32::from_le_bytes(whole[0..4].try_into().unwrap()) as usize
    };
    for cut in first_len..whole.len() {
        let copy = tempfile::tempdir().unwrap();
        std::fs::write(copy.path().join(seg.file_name().unwrap()), &whole[..cut]).unwrap();
        let store = EventStore::open(copy.path()).unwrap();
        // The three-event append is all there or not at all.
        let expected_head = if cut == whole.len() { 4 } else { 1 };
        assert_eq!(store.head(), expected_head, "cut at {cut}");
        assert_eq!(
            std::fs::metadata(copy.path().join(seg.file_name().unwrap()))
                .unwrap()
                .len() as usize,
            first_len
        );
        // The log goes on from the cut.
        let r = store
            .append("a-2", ExpectedVersion::NoStream, vec![ev("Z", 9)])
            .unwrap();
        assert_eq!(r.position, 1);
        drop(store);
        assert_eq!(EventStore::open(copy.path()).unwrap().head(), 2);
    }
}

#[test]
fn garbage_after_the_last_append_is_cut_and_damage_before_it_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        segment_bytes: 200,
        ..StoreOptions::default()
    };
    {
        let store = EventStore::open_with(dir.path(), options.clone()).unwrap();
        for i in 0..20 {
            store
                .append(&format!("s-{}", i % 3), ExpectedVersion::Any, vec![ev("E", i)])
                .unwrap();
        }
    }
    let seg = last_segment(dir.path());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&[0u8; 300])
        .unwrap();
    {
        let store = EventStore::open_with(dir.path(), options.clone()).unwrap();
        assert_eq!(store.head(), 20);
        let all = store.read(&Filter::All, 0, 100).unwrap();
        assert_eq!(all.iter().map(n_of).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>());
    }
    // A flipped byte in an earlier segment is damage, reported, not cut.
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    assert!(segs.len() > 3, "{segs:?}");
    let mut bytes = std::fs::read(&segs[1]).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&segs[1], bytes).unwrap();
    let err = EventStore::open_with(dir.path(), options).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(segs[1].file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn segments_rotate_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        segment_bytes: 1000,
        ..StoreOptions::default()
    };
    let store = EventStore::open_with(dir.path(), options.clone()).unwrap();
    for i in 0..300 {
        store
            .append(&format!("c{}-{}", i % 4, i % 7), ExpectedVersion::Any, vec![ev("E", i)])
            .unwrap();
    }
    let check = |store: &EventStore| {
        let all = store.read(&Filter::All, 0, 1000).unwrap();
        assert_eq!(all.iter().map(n_of).collect::<Vec<_>>(), (0..300).collect::<Vec<_>>());
        let some = store.read(&Filter::All, 137, 50).unwrap();
        assert_eq!(
            some.iter().map(|e| e.position).collect::<Vec<_>>(),
            (137..187).collect::<Vec<_>>()
        );
        let cat = store.read(&Filter::Category("c2".into()), 0, 1000).unwrap();
        assert_eq!(
            cat.iter().map(n_of).collect::<Vec<_>>(),
            (0..300).filter(|i| i % 4 == 2).collect::<Vec<_>>()
        );
        let back = store.read_stream("c1-5", u64::MAX, Direction::Backward, 1000).unwrap();
        let mut expect: Vec<i64> = (0..300).filter(|i| i % 4 == 1 && i % 7 == 5).collect();
        expect.reverse();
        assert_eq!(back.iter().map(n_of).collect::<Vec<_>>(), expect);
    };
    check(&store);
    assert!(std::fs::read_dir(dir.path()).unwrap().count() > 10);
    drop(store);
    check(&EventStore::open_with(dir.path(), options).unwrap());
}

#[test]
fn a_deleted_stream_can_be_neither_read_nor_appended() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    store
        .append(
            "cart-1",
            ExpectedVersion::NoStream,
            vec![ev("Added", 1), ev("Added", 2)],
        )
        .unwrap();
    let wrong = store.delete_stream("cart-1", ExpectedVersion::Exact(0)).unwrap_err();
    assert!(matches!(
        wrong,
        StoreError::WrongExpectedVersion { current: Some(1), .. }
    ));
    let tomb = store.delete_stream("cart-1", ExpectedVersion::Exact(1)).unwrap();
    assert_eq!((tomb.first_version, tomb.position), (2, 2));
    let mut store = Some(store);
    for reopen in [false, true] {
        if reopen {
            drop(store.take());
            store = Some(EventStore::open(dir.path()).unwrap());
        }
        let s = store.as_ref().unwrap();
        assert!(matches!(
            s.read_stream("cart-1", 0, Direction::Forward, 10),
            Err(StoreError::StreamDeleted { .. })
        ));
        assert!(matches!(
            s.append("cart-1", ExpectedVersion::Any, vec![ev("Added", 3)]),
            Err(StoreError::StreamDeleted { .. })
        ));
        assert_eq!(s.stream_version("cart-1"), (Some(2), true));
        let all = s.read(&Filter::All, 0, 10).unwrap();
        assert_eq!(all.last().unwrap().event_type, riffle_eventstore::STREAM_DELETED);
        // A subscriber to the stream sees its events and the tombstone, then the deletion.
        let mut sub = s.subscribe(Filter::Stream("cart-1".into()), 0);
        let seen = sub.next_batch(10, Duration::from_secs(1)).unwrap();
        assert_eq!(seen.iter().map(|e| e.version).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(matches!(
            sub.next_batch(10, Duration::from_millis(10)),
            Err(StoreError::StreamDeleted { .. })
        ));
    }
}

#[test]
fn whitespace_between_tokens_is_removed_so_that_an_event_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let e = NewEvent {
        id: None,
        event_type: "T".into(),
        data: "{\n  \"a\" : [1,\r\n 2],\n \"s\": \"x \\n y\"\n}".into(),
        metadata: Some("{ \"m\" :\n true }".into()),
    };
    store.append("s", ExpectedVersion::Any, vec![e]).unwrap();
    let got = &store.read(&Filter::All, 0, 1).unwrap()[0];
    assert_eq!(got.data, r#"{"a":[1,2],"s":"x \n y"}"#);
    assert_eq!(got.metadata, r#"{"m":true}"#);
    assert!(!got.to_json().contains('\n'));
}

#[test]
fn snapshots_are_saved_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    assert_eq!(store.load_snapshot("account-1/x").unwrap(), None);
    store.save_snapshot("account-1/x", 4, r#"{"balance":10}"#).unwrap();
    store.save_snapshot("account-1/x", 9, r#"{"balance":25}"#).unwrap();
    assert!(store.save_snapshot("account-1/x", 10, "nope").is_err());
    drop(store);
    let store = EventStore::open(dir.path()).unwrap();
    let s = store.load_snapshot("account-1/x").unwrap().unwrap();
    assert_eq!((s.version, s.state.as_str()), (9, r#"{"balance":25}"#));
}

#[test]
fn a_second_writer_on_the_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let err = EventStore::open(dir.path()).err().unwrap();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(store);
    EventStore::open(dir.path()).unwrap();
}

#[test]
fn a_subscription_catches_up_then_follows_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    for i in 0..500 {
        store
            .append(
                &format!("{}-{}", if i % 2 == 0 { "even" } else { "odd" }, i % 5),
                ExpectedVersion::Any,
                vec![ev("E", i)],
            )
            .unwrap();
    }
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 500..3000 {
                let s = format!("{}-{}", if i % 2 == 0 { "even" } else { "odd" }, i % 5);
                store.append(&s, ExpectedVersion::Any, vec![ev("E", i)]).unwrap();
            }
        })
    };
    let follow = |filter: Filter, from: u64, want: usize| {
        let mut sub = store.subscribe(filter, from);
        let mut got = Vec::new();
        while got.len() < want {
            got.extend(sub.next_batch(97, Duration::from_secs(10)).unwrap().iter().map(n_of));
        }
        got
    };
    let all = follow(Filter::All, 0, 3000);
    assert_eq!(all, (0..3000).collect::<Vec<_>>());
    let odd = follow(Filter::Category("odd".into()), 100, 1450);
    assert_eq!(odd, (100..3000).filter(|i| i % 2 == 1).collect::<Vec<_>>());
    writer.join().unwrap();
    let one = follow(Filter::Stream("even-4".into()), 0, 300);
    assert_eq!(one, (0..3000).filter(|i| i % 2 == 0 && i % 5 == 4).collect::<Vec<_>>());
    // Nothing more: a timeout gives an empty batch.
    let mut sub = store.subscribe(Filter::All, 3000);
    assert!(sub.next_batch(10, Duration::from_millis(20)).unwrap().is_empty());
    assert_eq!(sub.position(), 3000);
}

#[test]
fn a_read_only_store_follows_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open_with(
        dir.path(),
        StoreOptions {
            segment_bytes: 2000,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    store.append("a-1", ExpectedVersion::Any, vec![ev("E", 0)]).unwrap();
    let follower = EventStore::open_read_only(dir.path()).unwrap();
    assert_eq!(follower.head(), 1);
    assert!(matches!(
        follower.append("a-1", ExpectedVersion::Any, vec![ev("E", 1)]),
        Err(StoreError::ReadOnly { .. })
    ));
    let writer = std::thread::spawn(move || {
        for i in 1..400 {
            store
                .append(
                    &format!("a-{}", i % 3),
                    ExpectedVersion::Any,
                    vec![ev("E", i), ev("F", i)],
                )
                .unwrap();
        }
    });
    let mut sub = follower.subscribe(Filter::All, 0);
    let mut got = Vec::new();
    while got.len() < 799 {
        got.extend(
            sub.next_batch(1000, Duration::from_secs(10))
                .unwrap()
                .iter()
                .map(|e| e.position),
        );
    }
    writer.join().unwrap();
    assert_eq!(got, (0..799).collect::<Vec<_>>());
}

/// A model of the store: streams as vectors of versions, the log as a vector.
#[derive(Default)]
struct Model {
    streams: HashMap<String, u64>,
    log: Vec<(String, i64)>,
}

#[derive(Debug, Clone)]
enum Op {
    Append { stream: u8, expected: u8, count: u8 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..4, 0u8..6, 1u8..4).prop_map(|(stream, expected, count)| Op::Append { stream, expected, count }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn the_store_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EventStore::open(dir.path()).unwrap();
        let mut model = Model::default();
        let mut n = 0i64;
        for op in ops {
            match op {
                Op::Reopen => {
                    drop(store);
                    store = EventStore::open(dir.path()).unwrap();
                }
                Op::Append { stream, expected, count } => {
                    let s = format!("s-{stream}");
                    let current = model.streams.get(&s).copied();
                    let expected = match expected {
                        0 => ExpectedVersion::Any,
                        1 => ExpectedVersion::NoStream,
                        2 => ExpectedVersion::Exists,
                        3 => ExpectedVersion::Exact(current.unwrap_or(0)),
                        v => ExpectedVersion::Exact(v as u64),
                    };
                    let events: Vec<NewEvent> = (0..count).map(|i| ev("E", n + i as i64)).collect();
                    let result = store.append(&s, expected, events);
                    if expected.admits(current) {
                        let r = result.unwrap();
                        let first = current.map_or(0, |v| v + 1);
                        prop_assert_eq!((r.first_version, r.first_position), (first, model.log.len() as u64));
                        for i in 0..count {
                            model.log.push((s.clone(), n + i as i64));
                        }
                        model.streams.insert(s, first + count as u64 - 1);
                    } else {
                        let is_wrong_version = matches!(result, Err(StoreError::WrongExpectedVersion { current: c, .. }) if c == current);
                        prop_assert!(is_wrong_version);
                    }
                    n += count as i64;
                }
            }
        }
        let all = store.read(&Filter::All, 0, 10_000).unwrap();
        prop_assert_eq!(all.iter().map(|e| (e.stream.clone(), n_of(e))).collect::<Vec<_>>(), model.log.clone());
        for (s, v) in &model.streams {
            let events = store.read_stream(s, 0, Direction::Forward, 10_000).unwrap();
            prop_assert_eq!(events.len() as u64, v + 1);
            prop_assert!(events.iter().enumerate().all(|(i, e)| e.version == i as u64 && &e.stream == s));
        }
    }
}

#[test]
fn a_waker_is_called_once_new_events_are_readable_and_no_more_once_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    // The head each call sees: the events that woke it are readable by then.
    let seen: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let wake: Arc<dyn Fn() + Send + Sync> = {
        let (seen, store) = (Arc::clone(&seen), store.clone());
        Arc::new(move || seen.lock().unwrap().push(store.head()))
    };
    store.wake_on_new_events(&wake);
    store
        .append("a-1", ExpectedVersion::NoStream, vec![ev("A", 1)])
        .unwrap();
    // Published (and the waker called) before the append is answered.
    assert_eq!(*seen.lock().unwrap(), [1]);
    store
        .append("a-1", ExpectedVersion::Exact(0), vec![ev("A", 2), ev("A", 3)])
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [1, 3]);
    // A failed append publishes nothing and wakes nobody.
    assert!(store
        .append("a-1", ExpectedVersion::NoStream, vec![ev("A", 4)])
        .is_err());
    assert_eq!(*seen.lock().unwrap(), [1, 3]);
    drop(wake);
    store.append("a-1", ExpectedVersion::Any, vec![ev("A", 5)]).unwrap();
    assert_eq!(*seen.lock().unwrap(), [1, 3]);
}
