//! What the tests of the store sources (`store://`, `store+http://`) share: a store filled the
//! same way, the store's own answer as the oracle, and a reader polled to its end.
#![allow(dead_code)] // each test file uses its own subset

use std::time::{Duration, Instant};

use riffle_connectors::{LineReader, Poll};
use riffle_eventstore::{EventStore, ExpectedVersion, Filter, NewEvent};

/// 3 streams in 2 categories, interleaved: `3 * rounds` events.
pub fn fill(store: &EventStore, rounds: u64) {
    for i in 0..rounds {
        for stream in ["account-1", "account-2", "ledger-main"] {
            let e = NewEvent::json("Deposited", &serde_json::json!({ "amount": i, "to": stream })).unwrap();
            store.append(stream, ExpectedVersion::Any, vec![e]).unwrap();
        }
    }
}

/// The store's own answer: every event `filter` admits from `from`, as JSON lines with their
/// line numbers (position + 1).
pub fn oracle(store: &EventStore, filter: &Filter, from: u64) -> Vec<(u64, String)> {
    store
        .read(filter, from, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| (e.position + 1, e.to_json()))
        .collect()
}

/// Polls `reader` until it finishes (bounded) or until `want` lines came (following); panics
/// after `deadline`.
pub fn read_within(reader: &mut dyn LineReader, want: Option<usize>, deadline: Duration) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + deadline;
    while Instant::now() < deadline {
        if want.is_some_and(|n| out.len() >= n) {
            return out;
        }
        match reader.poll(7).unwrap() {
            Poll::Chunk(c) => {
                for (i, l) in c.lines.into_iter().enumerate() {
                    out.push((c.first_line + i as u64, String::from_utf8(l).unwrap()));
                }
            }
            Poll::Pending => std::thread::sleep(Duration::from_millis(1)),
            Poll::Finished => return out,
        }
    }
    panic!("reader neither finished nor gave {want:?} lines: {}", out.len());
}
