//! Every query's streaming result equals the batch computation over the same events, on 1 and
//! 2 workers and over several split counts (sorted rows; for the updating q4, the last update
//! of each category).

use std::sync::{Arc, Mutex};

use riffle_nexmark::{batch, build, source, Event, GeneratorConfig, Query, Row};
use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};

/// A slow rate spreads the events over many windows and sessions: 60 K events over 60 s.
fn config() -> GeneratorConfig {
    GeneratorConfig {
        rate: 1_000,
        ..GeneratorConfig::default()
    }
}

const EVENTS: u64 = 60_000;

fn streaming(query: Query, workers: usize, splits: u64) -> Vec<Row> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    let ctx = Arc::new(JobContext::new(false, Arc::new(SystemClock)));
    execute(ExecutionConfig::threads(workers), Arc::clone(&ctx), move |env| {
        let events = source::generated(env, config(), EVENTS, splits);
        build(query, events).collect_into(Arc::clone(&sink));
    })
    .expect("job runs");
    assert_eq!(
        ctx.metrics().late.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "{query:?}: no event is late"
    );
    let rows: Vec<(i64, Row)> = out.lock().expect("no worker panicked").clone();
    final_rows(query, rows.into_iter().map(|(_, r)| r).collect())
}

/// For q4, the last update of each category (updates of a key leave one worker in order).
fn final_rows(query: Query, rows: Vec<Row>) -> Vec<Row> {
    if !query.updating() {
        return rows;
    }
    let mut last = std::collections::BTreeMap::new();
    for r in rows {
        if let Row::Q4(q) = &r {
            last.insert(q.id, r.clone());
        }
    }
    last.into_values().collect()
}

fn sorted(mut rows: Vec<Row>) -> Vec<String> {
    let mut lines: Vec<String> = rows
        .drain(..)
        .map(|r| {
            let mut b = Vec::new();
            r.write_json(&mut b).expect("rows serialise");
            String::from_utf8(b).expect("JSON is UTF-8")
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn every_query_equals_the_batch_oracle_on_one_and_two_workers() {
    let events: Vec<Event> = config().split(0, 1, EVENTS).collect();
    for query in Query::ALL {
        let expected = sorted(batch::run(query, &events));
        assert!(!expected.is_empty(), "{query:?}: the oracle finds rows");
        for (workers, splits) in [(1, 1), (2, 2), (2, 3)] {
            let got = sorted(streaming(query, workers, splits));
            assert_eq!(
                got.len(),
                expected.len(),
                "{query:?} on {workers} workers, {splits} splits: row count"
            );
            assert!(
                got == expected,
                "{query:?} on {workers} workers, {splits} splits: rows differ"
            );
        }
    }
}

fn bid(auction: u64, price: u64, date_time: i64) -> Event {
    bid_by(1, auction, price, date_time)
}

fn bid_by(bidder: u64, auction: u64, price: u64, date_time: i64) -> Event {
    Event::Bid(riffle_nexmark::model::Bid {
        auction,
        bidder,
        price,
        channel: "c".into(),
        url: "u".into(),
        date_time,
        extra: String::new(),
    })
}

/// q7's `BETWEEN window_end - 10 s AND window_end` includes the first millisecond of the next
/// window: a bid there at the previous window's maximum price is a result of both windows when
/// it is also its own window's maximum, and of the previous one only otherwise.
#[test]
fn q7_includes_bids_at_the_end_of_a_window() {
    let events = vec![
        bid(1, 50, 1_000),
        bid(2, 70, 9_999),
        // First millisecond of [10 s, 20 s): the maximum of both windows.
        bid(3, 70, 10_000),
        bid(4, 20, 15_000),
        // First millisecond of [20 s, 30 s): equals the previous maximum, below its own.
        bid(5, 70, 20_000),
        bid(6, 90, 25_000),
    ];
    let expected = sorted(batch::run(Query::Q7, &events));
    let auctions: Vec<u64> = batch::run(Query::Q7, &events)
        .into_iter()
        .map(|r| match r {
            Row::Bid(b) => b.auction,
            other => panic!("{other:?}"),
        })
        .collect();
    let mut auctions = auctions;
    auctions.sort_unstable();
    assert_eq!(auctions, vec![2, 3, 3, 5, 6], "the oracle applies the SQL's bounds");
    assert_eq!(in_memory(Query::Q7, &events, 1), expected);
    assert_eq!(in_memory(Query::Q7, &events, 2), expected);
}

/// Rows of `query` over `events` as one split, on `workers` workers, sorted.
fn in_memory(query: Query, events: &[Event], workers: usize) -> Vec<String> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    let all = events.to_vec();
    let ctx = Arc::new(JobContext::new(false, Arc::new(SystemClock)));
    execute(ExecutionConfig::threads(workers), ctx, move |env| {
        // One split, read by worker 0.
        let events = source::in_memory(env, vec![all.clone()]);
        build(query, events).collect_into(Arc::clone(&sink));
    })
    .expect("job runs");
    let got: Vec<Row> = out.lock().expect("rows").iter().map(|(_, r)| r.clone()).collect();
    sorted(got)
}

/// Sessions whose windows `[t, t + 10 s)` touch merge, as Flink's do: bids 10 s apart are one
/// session, 10.001 s apart two.
#[test]
fn q11_sessions_merge_when_they_touch() {
    let events = vec![
        bid_by(1, 1, 1, 0),
        bid_by(1, 1, 1, 10_000),
        bid_by(2, 1, 1, 0),
        bid_by(2, 1, 1, 10_001),
    ];
    let expected = sorted(batch::run(Query::Q11, &events));
    let bidder = |b: u64| {
        expected
            .iter()
            .filter(|r| r.contains(&format!("\"bidder\":{b},")))
            .count()
    };
    assert_eq!((bidder(1), bidder(2)), (1, 2), "{expected:?}");
    assert_eq!(in_memory(Query::Q11, &events, 1), expected);
    assert_eq!(in_memory(Query::Q11, &events, 2), expected);
}
