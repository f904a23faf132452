//! Projections (issue 15): a job that reads the event store and keeps a read-model table gives
//! the table an independent batch computation over `EventStore::read` gives, on 1 and 2
//! workers; spreads events over workers by stream while keeping each stream's order; resumes
//! after a crash exactly once (balances are sums of deltas: an event applied twice or lost
//! shows); and lets a writer wait until the table reflects its append (read-your-writes).
//! The same projection from the store's HTTP server (`store+http://`) gives the same table,
//! bounded, and following across a server killed and restarted, and stops promptly.

// A panic in a test helper is the test failing (clippy allows unwrap in #[test] fns only).
#![allow(clippy::unwrap_used)]
// Deadlines and latencies here are wall time.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use riffle_connectors::readmodel::TableUpdate;
use riffle_connectors::SourceUri;
use riffle_core::aggregate::Aggregate;
use riffle_eventstore::{EventStore, ExpectedVersion, Filter, NewEvent};
use riffle_runtime::projection::{row_with_position, store_events, Projection, ProjectionConfig, StoreEvent};
use riffle_runtime::{execute, DataStream, ExecutionConfig, JobContext};

/// A change of an account's balance.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Delta {
    stream: String,
    amount: i64,
    version: u64,
    position: u64,
}

/// Balance, events folded, highest position, last version, versions seen out of order.
type Acc = (i64, u64, u64, Option<u64>, u64);

/// A running balance per account; also counts versions that arrive out of their stream's order.
#[derive(Clone)]
struct Balance;

impl Aggregate<Delta> for Balance {
    type Acc = Acc;
    type Output = Acc;
    fn create(&self) -> Acc {
        (0, 0, 0, None, 0)
    }
    fn add(&self, acc: &mut Acc, d: Delta) {
        let in_order = acc.3.map_or(d.version == 0, |last| d.version == last + 1);
        *acc = (
            acc.0 + d.amount,
            acc.1 + 1,
            acc.2.max(d.position),
            Some(d.version),
            acc.4 + u64::from(!in_order),
        );
    }
    fn merge(&self, acc: &mut Acc, o: Acc) {
        *acc = (acc.0 + o.0, acc.1 + o.1, acc.2.max(o.2), acc.3.max(o.3), acc.4 + o.4);
    }
    fn result(&self, acc: &Acc) -> Acc {
        *acc
    }
}

fn row(balance: i64, events: u64, position: u64) -> String {
    serde_json::json!({ "balance": balance, "events": events, "position": position }).to_string()
}

fn delta(e: &StoreEvent) -> Option<Delta> {
    let sign = match e.event_type.as_str() {
        "Deposited" => 1,
        "Withdrawn" => -1,
        _ => return None,
    };
    let data: serde_json::Value = serde_json::from_str(&e.data).ok()?;
    Some(Delta {
        stream: e.stream.clone(),
        amount: sign * data["amount"].as_i64()?,
        version: e.version,
        position: e.position,
    })
}

/// The projection under test: balances of the accounts.
fn balances(events: DataStream<'_, StoreEvent>) -> DataStream<'_, TableUpdate> {
    events
        .flat_map(|e: StoreEvent| delta(&e))
        .key_by(|d: &Delta| d.stream.clone())
        .rolling(Balance)
        .flat_map(|(k, (balance, n, position, _, out_of_order)): (String, Acc)| {
            assert_eq!(out_of_order, 0, "{k}: events folded out of their stream's order");
            row_with_position(k, row(balance, n, position), position)
        })
}

/// The oracle: the same balances computed in one pass over the store's `$all`.
fn expected(store: &EventStore) -> Vec<(String, String)> {
    let mut acc: BTreeMap<String, (i64, u64, u64)> = BTreeMap::new();
    for e in store.read(&Filter::All, 0, usize::MAX).unwrap() {
        let sign = match e.event_type.as_str() {
            "Deposited" => 1,
            "Withdrawn" => -1,
            _ => continue,
        };
        let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        let a = acc.entry(e.stream.clone()).or_default();
        *a = (a.0 + sign * data["amount"].as_i64().unwrap(), a.1 + 1, e.position);
    }
    acc.into_iter().map(|(k, (b, n, p))| (k, row(b, n, p))).collect()
}

/// `n` events from `seed`: deposits and withdrawals over 12 accounts, and notes (in their own
/// streams) that change no balance.
fn append(store: &EventStore, seed: u64, n: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (stream, event) = match x % 10 {
            0 => (
                "audit-1".to_string(),
                NewEvent::json("Noted", &serde_json::json!({"x": x % 7})).unwrap(),
            ),
            r => {
                let kind = if r < 7 { "Deposited" } else { "Withdrawn" };
                let amount = (x >> 8) % 1000 + 1;
                (
                    format!("account-{}", (x >> 20) % 12),
                    NewEvent::json(kind, &serde_json::json!({ "amount": amount })).unwrap(),
                )
            }
        };
        store.append(&stream, ExpectedVersion::Any, vec![event]).unwrap();
    }
}

fn config(base: &std::path::Path, store: &std::path::Path, follow: bool, workers: usize) -> ProjectionConfig {
    let mut c = ProjectionConfig::new(
        format!("store://{}?follow={follow}", store.display()),
        base.join("balances.redb"),
        base.join("ck"),
    );
    c.workers = workers;
    c.checkpoint_interval = Duration::from_millis(5);
    c
}

#[test]
fn a_bounded_projection_equals_a_batch_computation_over_all_events_on_1_and_2_workers() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path().join("store")).unwrap();
    append(&store, 1, 3000);
    let oracle = expected(&store);
    assert_eq!(oracle.len(), 12);
    let last = store
        .read(&Filter::Category("account".into()), 0, usize::MAX)
        .unwrap()
        .last()
        .unwrap()
        .position;
    for workers in [1, 2] {
        let base = dir.path().join(format!("w{workers}"));
        let p = Projection::spawn(config(&base, &dir.path().join("store"), false, workers), balances).unwrap();
        let model = p.model().clone();
        p.join().unwrap();
        assert_eq!(model.scan("").unwrap(), oracle, "{workers} workers");
        assert_eq!(model.scan("account-1").unwrap().len(), 3, "account-1, -10, -11");
        assert_eq!(model.position(), Some(last));
    }
}

#[test]
fn key_by_stream_spreads_events_over_workers_and_keeps_each_streams_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    append(&store, 2, 2000);
    let uri = format!("store://{}?follow=false", dir.path().display());
    let splits = SourceUri::parse(&uri).unwrap().splits().unwrap();
    let seen: Arc<Mutex<Vec<(usize, String, Acc)>>> = Arc::default();
    let out = Arc::clone(&seen);
    execute(
        ExecutionConfig::threads(2),
        Arc::new(JobContext::default()),
        move |env| {
            let worker = env.worker_index();
            let out = Arc::clone(&out);
            store_events(env, &splits)
                .flat_map(|e: StoreEvent| delta(&e))
                .key_by(|d: &Delta| d.stream.clone())
                .rolling(Balance)
                .for_each(move |_, (k, acc)| out.lock().unwrap().push((worker, k, acc)));
        },
    )
    .unwrap();
    let seen = seen.lock().unwrap();
    let mut worker_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (w, k, acc) in seen.iter() {
        assert_eq!(
            *worker_of.entry(k.as_str()).or_insert(*w),
            *w,
            "{k} is folded on one worker"
        );
        assert_eq!(acc.4, 0, "{k}: out of order");
    }
    let used: std::collections::BTreeSet<usize> = worker_of.values().copied().collect();
    assert_eq!(used.len(), 2, "both workers fold accounts: {worker_of:?}");
    // The last update of each account is its balance.
    let mut last: BTreeMap<String, Acc> = BTreeMap::new();
    for (_, k, acc) in seen.iter() {
        let e = last.entry(k.clone()).or_insert(*acc);
        if acc.1 > e.1 {
            *e = *acc;
        }
    }
    let got: Vec<(String, String)> = last.into_iter().map(|(k, a)| (k, row(a.0, a.1, a.2))).collect();
    assert_eq!(got, expected(&store));
}

#[test]
fn a_projection_crashed_after_checkpoints_resumes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = EventStore::open(&store_dir).unwrap();
    let _registered = riffle_connectors::eventstore::register_open_store(&store);
    append(&store, 3, 500);
    let base = dir.path().join("p");
    let p = Projection::spawn(config(&base, &store_dir, true, 2), balances).unwrap();
    // Events keep coming while the projection runs; crash it mid-way.
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for round in 0..40 {
                append(&store, 100 + round, 50);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.model().committed_epoch().unwrap_or(0) < 5 || store.head() < 1200 {
        assert!(Instant::now() < deadline, "the projection commits");
        std::thread::sleep(Duration::from_millis(1));
    }
    p.context()
        .fail(riffle_core::Error::Execution("simulated crash".into()));
    let at_crash = p.model().position();
    assert!(p.join().is_err(), "the crashed job reports its failure");
    writer.join().unwrap();
    append(&store, 7, 300);
    assert!(
        at_crash.is_some_and(|p| p + 1 < store.head()),
        "the crash left events to replay"
    );
    // Restarted from its checkpoints, to the head: every event once.
    let p = Projection::spawn(config(&base, &store_dir, false, 2), balances).unwrap();
    let model = p.model().clone();
    p.join().unwrap();
    assert_eq!(model.scan("").unwrap(), expected(&store));
    // The same as a table rebuilt from zero, onto another worker count.
    let rebuilt = Projection::spawn(config(&dir.path().join("fresh"), &store_dir, false, 1), balances).unwrap();
    let fresh = rebuilt.model().clone();
    rebuilt.join().unwrap();
    assert_eq!(model.scan("").unwrap(), fresh.scan("").unwrap());
}

#[test]
fn after_an_append_waiting_for_its_position_shows_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = EventStore::open(&store_dir).unwrap();
    let _registered = riffle_connectors::eventstore::register_open_store(&store);
    append(&store, 4, 100);
    let p = Projection::spawn(config(&dir.path().join("p"), &store_dir, true, 2), balances).unwrap();
    let mut latencies = Vec::new();
    let mut balance = None;
    for i in 1..=40 {
        let e = NewEvent::json("Deposited", &serde_json::json!({ "amount": 1 })).unwrap();
        let written = store.append("account-5", ExpectedVersion::Any, vec![e]).unwrap();
        let t = Instant::now();
        assert!(p.model().wait_for_position(written.position, Duration::from_secs(10)));
        latencies.push(t.elapsed());
        let row: serde_json::Value = serde_json::from_str(&p.model().get("account-5").unwrap().unwrap()).unwrap();
        assert!(row["position"].as_u64().unwrap() >= written.position);
        let b = row["balance"].as_i64().unwrap();
        // The first wait may also see the 100 events before; after it, every deposit adds 1.
        if let Some(prev) = balance {
            assert_eq!(b, prev + 1, "append {i}");
        }
        balance = Some(b);
    }
    let oracle = expected(&store);
    let want = oracle.iter().find(|(k, _)| k == "account-5").map(|(_, r)| r.clone());
    assert_eq!(p.model().get("account-5").unwrap(), want);
    latencies.sort();
    eprintln!(
        "append → visible (5 ms checkpoints, sequential appends): p50 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    p.stop().unwrap();
}

/// The store server on a runtime of its own, on `port` (0: any); dropping the runtime drops
/// every connection at once, as a killed process would.
fn serve(store: &EventStore, port: u16) -> (tokio::runtime::Runtime, u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))) {
            Ok(l) => break l,
            Err(e) => {
                assert!(Instant::now() < deadline, "bind 127.0.0.1:{port}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let port = listener.local_addr().unwrap().port();
    let options = riffle_store_server::ServerOptions::default();
    runtime.spawn(riffle_store_server::serve(
        store.clone(),
        listener,
        options,
        std::future::pending(),
    ));
    (runtime, port)
}

fn http_config(base: &std::path::Path, port: u16, follow: bool) -> ProjectionConfig {
    let mut c = ProjectionConfig::new(
        format!("store+http://127.0.0.1:{port}/all?follow={follow}"),
        base.join("balances.redb"),
        base.join("ck"),
    );
    c.checkpoint_interval = Duration::from_millis(5);
    c
}

#[test]
fn a_projection_from_the_store_server_equals_the_one_from_the_store_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = EventStore::open(&store_dir).unwrap();
    append(&store, 5, 2500);
    let (server, port) = serve(&store, 0);
    let p = Projection::spawn(http_config(&dir.path().join("http"), port, false), balances).unwrap();
    let remote = p.model().clone();
    p.join().unwrap();
    let _registered = riffle_connectors::eventstore::register_open_store(&store);
    let p = Projection::spawn(config(&dir.path().join("local"), &store_dir, false, 2), balances).unwrap();
    let local = p.model().clone();
    p.join().unwrap();
    assert_eq!(remote.scan("").unwrap(), expected(&store));
    assert_eq!(remote.scan("").unwrap(), local.scan("").unwrap());
    assert_eq!(remote.position(), local.position());
    server.shutdown_background();
}

#[test]
fn a_following_projection_from_the_store_server_survives_its_restart_and_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path().join("store")).unwrap();
    append(&store, 6, 500);
    let (server, port) = serve(&store, 0);
    let base = dir.path().join("p");
    let p = Projection::spawn(http_config(&base, port, true), balances).unwrap();
    append(&store, 7, 300);
    assert!(p.model().wait_for_position(store.head() - 1, Duration::from_secs(20)));
    // Killed: events appended while it is down arrive after its restart, once each.
    server.shutdown_background();
    append(&store, 8, 300);
    std::thread::sleep(Duration::from_millis(300));
    let (server, _) = serve(&store, port);
    append(&store, 9, 300);
    assert!(p.model().wait_for_position(store.head() - 1, Duration::from_secs(20)));
    assert_eq!(p.model().scan("").unwrap(), expected(&store));
    // A clean stop does not wait for the subscription (idle: no event to wake it).
    let t = Instant::now();
    p.stop().unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "stop took {:?}", t.elapsed());
    // Crashed after more appends and restarted from its checkpoints, bounded: every event once.
    let p = Projection::spawn(http_config(&base, port, true), balances).unwrap();
    append(&store, 10, 500);
    assert!(p.model().wait_for_position(store.head() - 1, Duration::from_secs(20)));
    p.context()
        .fail(riffle_core::Error::Execution("simulated crash".into()));
    assert!(p.join().is_err());
    append(&store, 11, 200);
    let p = Projection::spawn(http_config(&base, port, false), balances).unwrap();
    let model = p.model().clone();
    p.join().unwrap();
    assert_eq!(model.scan("").unwrap(), expected(&store));
    server.shutdown_background();
}

/// Append → visible latency at a fixed append rate, per checkpoint interval (a measurement,
/// not a check): `cargo test -p riffle-runtime --release --test projection -- --ignored --nocapture`.
/// Env: `RATES` (appends/s, default `1000,10000`), `INTERVALS` (ms, default `2,5,10,20`).
#[test]
#[ignore]
fn measure_append_to_visible_latency() {
    let list = |var: &str, default: &str| -> Vec<u64> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(|x| x.parse().unwrap())
            .collect()
    };
    for rate in list("RATES", "1000,10000") {
        for interval in list("INTERVALS", "2,5,10,20") {
            let dir = tempfile::tempdir().unwrap();
            let store_dir = dir.path().join("store");
            let store = EventStore::open(&store_dir).unwrap();
            let _registered = riffle_connectors::eventstore::register_open_store(&store);
            let mut c = config(&dir.path().join("p"), &store_dir, true, 2);
            c.checkpoint_interval = Duration::from_millis(interval);
            let p = Projection::spawn(c, balances).unwrap();
            let model = p.model().clone();
            // Acknowledgement times by position, filled by the store's writer thread.
            let acks: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
            let total = rate * 2; // two seconds of appends
                                  // Observe the table's position as it moves, while the appends go on; every
                                  // acknowledged position at or below it became visible then.
            let observer = {
                let (model, acks) = (model.clone(), Arc::clone(&acks));
                std::thread::spawn(move || {
                    let mut latencies = Vec::new();
                    let mut seen = 0u64;
                    while seen < total {
                        assert!(
                            model.wait_for_position(seen, Duration::from_secs(10)),
                            "the projection keeps up"
                        );
                        let now = Instant::now();
                        let visible = model.position().unwrap_or(0);
                        let acks = acks.lock().unwrap();
                        // Positions not acknowledged yet (the callback runs after the fsync) are
                        // counted when their acknowledgement is there: at 0.
                        let counted = acks.range(seen..=visible).count() as u64;
                        for (_, t) in acks.range(seen..=visible) {
                            latencies.push(now.saturating_duration_since(*t));
                        }
                        for _ in counted..(visible + 1 - seen) {
                            latencies.push(Duration::ZERO);
                        }
                        seen = visible + 1;
                    }
                    latencies
                })
            };
            let start = Instant::now();
            for i in 0..total {
                let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let e = NewEvent::json("Deposited", &serde_json::json!({ "amount": 1 })).unwrap();
                let acks = Arc::clone(&acks);
                store.append_with(
                    &format!("account-{}", i % 64),
                    ExpectedVersion::Any,
                    vec![e],
                    move |r| {
                        if let Ok(r) = r {
                            acks.lock().unwrap().insert(r.position, Instant::now());
                        }
                    },
                );
            }
            let mut latencies = observer.join().unwrap();
            p.stop().unwrap();
            latencies.sort();
            let q = |f: f64| latencies[((latencies.len() as f64 * f) as usize).min(latencies.len() - 1)];
            eprintln!(
                "rate {rate}/s, checkpoint interval {interval} ms: append→visible p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} appends)",
                q(0.5).as_secs_f64() * 1e3,
                q(0.99).as_secs_f64() * 1e3,
                q(1.0).as_secs_f64() * 1e3,
                latencies.len()
            );
        }
    }
}
