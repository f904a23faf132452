//! The deduplication operator on timely: a `riffle_sketch::dedup::Deduplicator` in the epoch
//! shell of keyed stateful operators (see [`crate::epoch_op`]), so it checkpoints and restores
//! onto any number of workers like the window operators.
//!
//! Records go to the worker owning their key's key group, wait until the watermark passes
//! their sequence time (`max(event time, watermark on arrival)`, as count windows), and are
//! then offered in sequence order; kept records leave at once with their own event time.

use std::rc::Rc;
use std::sync::Arc;

use riffle_core::key_group::{stable_hash, KeyGroup, KEY_GROUPS};
use riffle_core::EventTime;
use riffle_sketch::dedup::Deduplicator;
use riffle_sketch::CountingBloomFilter;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::core::OkErr;

use crate::epoch_op::{encode_parts, DirtyGroups, EpochState, RestoredParts};
use crate::stream::{Data, DataStream, Key, KeyedStream};

/// A record waiting for the watermark: (sequence time, event time, key hash, record).
type Waiting<D> = (EventTime, EventTime, u64, D);

/// What a checkpoint holds of one key group.
#[derive(Serialize, Deserialize)]
struct DedupPart<D> {
    pending: Vec<Waiting<D>>,
    filter: Option<Vec<u8>>,
    recent: Vec<(EventTime, u64)>,
}

struct DedupOp<K, D> {
    dedup: Deduplicator,
    pending: Vec<Waiting<D>>,
    key: Rc<dyn Fn(&D) -> K>,
}

fn group_of_hash(hash: u64) -> usize {
    usize::from(KeyGroup::of_hash(hash).0)
}

impl<K: Key, D: Data> EpochState for DedupOp<K, D> {
    type In = (EventTime, D);
    type Out = (EventTime, (bool, D));

    fn apply(&mut self, (ts, d): (EventTime, D), wm: i64, dirty: &mut DirtyGroups) {
        let hash = stable_hash(&(self.key)(&d));
        dirty.mark_group(KeyGroup::of_hash(hash));
        self.pending.push((ts.max(wm), ts, hash, d));
    }

    fn fire(&mut self, wm: i64, out: &mut Vec<Self::Out>, dirty: &mut DirtyGroups) {
        if !self.pending.iter().any(|p| p.0 < wm) {
            return;
        }
        let (mut ready, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending).into_iter().partition(|p| p.0 < wm);
        self.pending = rest;
        // Stable: equal (sequence, event time) keep their arrival order.
        ready.sort_by_key(|p| (p.0, p.1));
        for (seq, ts, hash, d) in ready {
            dirty.mark_group(KeyGroup::of_hash(hash));
            out.push((ts, (self.dedup.offer(seq, hash), d)));
        }
    }

    fn snapshot(&self, include: &dyn Fn(u32) -> bool) -> riffle_core::Result<crate::checkpoint::Parts> {
        encode_parts((0..KEY_GROUPS as u16).filter(|g| include(u32::from(*g))).map(|g| {
            let (filter, recent) = self.dedup.snapshot_group(g);
            let part = DedupPart {
                pending: self
                    .pending
                    .iter()
                    .filter(|p| group_of_hash(p.2) == usize::from(g))
                    .cloned()
                    .collect(),
                filter: filter.map(CountingBloomFilter::to_bytes),
                recent,
            };
            (u32::from(g), part)
        }))
    }

    fn restore(&mut self, parts: &RestoredParts<'_>, _out: &mut Vec<Self::Out>) -> riffle_core::Result<()> {
        parts.decode("deduplication state", |g, part: DedupPart<D>| {
            let filter = part
                .filter
                .map(|b| CountingBloomFilter::from_bytes(&b))
                .transpose()
                .map_err(|e| riffle_core::Error::Execution(format!("deduplication state: {e}")))?;
            self.pending.extend(part.pending);
            self.dedup.restore_group(g as u16, filter, part.recent);
            Ok(())
        })
    }
}

/// Kept records and dropped duplicates.
pub(crate) fn dedup<'s, K: Key, D: Data>(
    keyed: KeyedStream<'s, K, D>,
    within: i64,
    expected_keys: u64,
    fp_rate: f64,
) -> riffle_core::Result<(DataStream<'s, D>, DataStream<'s, D>)> {
    let dedup =
        Deduplicator::new(within, expected_keys, fp_rate).map_err(|e| riffle_core::Error::Config(e.to_string()))?;
    let ctx = Arc::clone(&keyed.stream.ctx);
    let decided = crate::epoch_op::keyed_epoch_operator(keyed, "Dedup", |key| DedupOp {
        dedup,
        pending: Vec::new(),
        key,
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
