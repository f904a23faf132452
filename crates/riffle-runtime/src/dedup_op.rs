//! The deduplication operator on timely: a shell around `riffle_sketch::dedup::Deduplicator`.
//!
//! Records go to the worker owning their key's key group, wait until the watermark passes
//! their sequence time (`max(event time, watermark on arrival)`, as count windows), and are
//! then offered in sequence order; kept records leave at once with their own event time.

use std::sync::Arc;

use riffle_core::key_group::{stable_hash, KeyGroup};
use riffle_core::EventTime;
use riffle_sketch::dedup::Deduplicator;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;

use crate::stream::{Data, DataStream, Key, KeyedStream};
use crate::time::frontier_watermark;
use crate::window_op::{hold_frontier, message_time};

type VecBuilder<T> = CapacityContainerBuilder<Vec<T>>;

/// Kept records and dropped duplicates.
pub(crate) fn dedup<'s, K: Key, D: Data>(
    keyed: KeyedStream<'s, K, D>,
    within: i64,
    expected_keys: u64,
    fp_rate: f64,
) -> riffle_core::Result<(DataStream<'s, D>, DataStream<'s, D>)> {
    // Validate the configuration once, before building the operator on every worker.
    Deduplicator::new(within, expected_keys, fp_rate).map_err(|e| riffle_core::Error::Config(e.to_string()))?;
    let ctx = Arc::clone(&keyed.stream.ctx);
    if ctx.checkpoints().is_some() {
        return Err(riffle_core::Error::Config(
            "deduplication does not support checkpoints yet".into(),
        ));
    }
    let peers = keyed.stream.stream.scope().peers();
    let route_key = keyed.key.clone();
    let key_fn = keyed.key;
    let route = Exchange::new(move |(_, d): &(EventTime, D)| KeyGroup::of(&route_key(d)).worker(peers) as u64);
    let decided = keyed
        .stream
        .stream
        .unary_frontier::<VecBuilder<(EventTime, (bool, D))>, _, _, _>(route, "Dedup", move |cap, _info| {
            let mut held = vec![cap];
            let mut dedup = Deduplicator::new(within, expected_keys, fp_rate).ok();
            let mut pending: Vec<(EventTime, EventTime, u64, D)> = Vec::new();
            let mut out = Vec::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let wm = message_time(&cap).watermark;
                    for (ts, d) in data.drain(..) {
                        pending.push((ts.max(wm), ts, stable_hash(&key_fn(&d)), d));
                    }
                });
                let wm = frontier_watermark(frontier.frontier().iter());
                if pending.iter().any(|p| p.0 < wm) {
                    let (mut ready, rest): (Vec<_>, Vec<_>) =
                        std::mem::take(&mut pending).into_iter().partition(|p| p.0 < wm);
                    pending = rest;
                    // Stable: equal (sequence, event time) keep their arrival order.
                    ready.sort_by_key(|p| (p.0, p.1));
                    if let Some(dedup) = dedup.as_mut() {
                        for (seq, ts, hash, d) in ready {
                            out.push((ts, (dedup.offer(seq, hash), d)));
                        }
                    }
                    if let Some(c) = held.first() {
                        output.session(c).give_iterator(out.drain(..));
                    }
                    out.clear();
                }
                hold_frontier(&mut held, frontier.frontier());
            }
        });
    let (kept, dropped) = decided.ok_err(|(ts, (keep, d))| if keep { Ok((ts, d)) } else { Err((ts, d)) });
    Ok((
        DataStream {
            stream: kept,
            ctx: Arc::clone(&ctx),
        },
        DataStream { stream: dropped, ctx },
    ))
}
