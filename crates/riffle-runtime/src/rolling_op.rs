//! The rolling (running) aggregate: one accumulator per key over all of time, whose current
//! result is emitted whenever it changes, as Flink's `keyBy().reduce()` or an SQL `GROUP BY`
//! without a window produce an updating result.
//!
//! Records are added as they arrive (aggregates merge, so the order does not matter); each time
//! the watermark advances, every key changed since the last firing emits its result once, at
//! the highest event time of the key's records so far (a key's updates never go back in time). The stream of updates is a
//! changelog: how many intermediate updates a key emits depends on how the watermark advances,
//! the last update of every key does not (it is the aggregate of all its records). The
//! operator runs in the epoch shell (see [`crate::epoch_op`]), so it checkpoints and restores
//! by key group onto any number of workers.

use std::rc::Rc;
use std::sync::Arc;

use hashbrown::HashMap;
use riffle_core::aggregate::Aggregate;
use riffle_core::key_group::{KeyGroup, KEY_GROUPS};
use riffle_core::EventTime;
use serde::{Deserialize, Serialize};

use crate::epoch_op::{encode_parts, DirtyGroups, EpochState, RestoredParts};
use crate::stream::{Data, DataStream, Key, KeyedStream};

/// One key's state: its accumulator, the highest event time of its records (the time of its
/// updates, so they never go back in time) and whether it changed since the last firing.
#[derive(Clone, Serialize, Deserialize)]
struct KeyState<Acc> {
    acc: Acc,
    latest: EventTime,
    changed: bool,
}

struct RollingOp<K, D, A: Aggregate<D>> {
    agg: A,
    keys: HashMap<K, KeyState<A::Acc>>,
    changed: Vec<K>,
    key: Rc<dyn Fn(&D) -> K>,
}

impl<K: Key, D: Data, A> EpochState for RollingOp<K, D, A>
where
    A: Aggregate<D>,
    A::Output: Data,
{
    type In = (EventTime, D);
    type Out = (EventTime, (K, A::Output));

    fn apply(&mut self, (ts, d): (EventTime, D), _wm: i64, dirty: &mut DirtyGroups) {
        let key = (self.key)(&d);
        dirty.mark(&key);
        let state = match self.keys.get_mut(&key) {
            Some(state) => state,
            None => self.keys.entry(key.clone()).or_insert(KeyState {
                acc: self.agg.create(),
                latest: ts,
                changed: false,
            }),
        };
        self.agg.add(&mut state.acc, d);
        state.latest = state.latest.max(ts);
        if !state.changed {
            state.changed = true;
            self.changed.push(key);
        }
    }

    fn fire(&mut self, _wm: i64, out: &mut Vec<Self::Out>, dirty: &mut DirtyGroups) {
        for key in self.changed.drain(..) {
            if let Some(state) = self.keys.get_mut(&key) {
                if std::mem::take(&mut state.changed) {
                    dirty.mark(&key);
                    out.push((state.latest, (key, self.agg.result(&state.acc))));
                }
            }
        }
    }

    fn emits_in_record_epoch(&self) -> bool {
        true
    }

    fn snapshot(&self, include: &dyn Fn(u32) -> bool) -> riffle_core::Result<crate::checkpoint::Parts> {
        type Group<'a, K, Acc> = Vec<(&'a K, &'a KeyState<Acc>)>;
        let mut groups: Vec<Group<K, A::Acc>> = vec![Vec::new(); KEY_GROUPS as usize];
        for (k, s) in &self.keys {
            groups[usize::from(KeyGroup::of(k).0)].push((k, s));
        }
        encode_parts(
            groups
                .into_iter()
                .enumerate()
                .map(|(g, part)| (g as u32, part))
                .filter(|(g, _)| include(*g)),
        )
    }

    fn restore(&mut self, parts: &RestoredParts<'_>, _out: &mut Vec<Self::Out>) -> riffle_core::Result<()> {
        parts.decode("rolling aggregate state", |_, part: Vec<(K, KeyState<A::Acc>)>| {
            for (k, s) in part {
                if s.changed {
                    self.changed.push(k.clone());
                }
                self.keys.insert(k, s);
            }
            Ok(())
        })
    }
}

/// The rolling aggregate of `keyed` with `agg`: `(key, result)` updates.
pub(crate) fn rolling<'s, K: Key, D: Data, A>(keyed: KeyedStream<'s, K, D>, agg: A) -> DataStream<'s, (K, A::Output)>
where
    A: Aggregate<D>,
    A::Output: Data,
{
    let ctx = Arc::clone(&keyed.stream.ctx);
    let updates = crate::epoch_op::keyed_epoch_operator(keyed, "Rolling", |key| RollingOp {
        agg,
        keys: HashMap::new(),
        changed: Vec::new(),
        key,
    });
    DataStream { stream: updates, ctx }
}
