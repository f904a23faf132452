//! The shell of keyed stateful operators that take part in checkpoints.
//!
//! A stateful operator (windows, count windows) receives records exchanged by key group and keeps
//! its state in an [`EpochState`]. This shell does the rest, the same way for all of them:
//!
//! * **alignment**: records of the open epoch (the lowest epoch of the input frontier) are
//!   applied at once, records of later epochs wait until the epochs before them close;
//! * **snapshots**: when the frontier passes an epoch, its remaining records are applied and the
//!   key groups that changed are written for that epoch (all of this worker's groups every
//!   [`FULL_SNAPSHOT_EVERY`] snapshots and at the start of a run), before the operator's
//!   capability moves on, so the commit downstream cannot see the epoch complete too early;
//! * **output**: results leave at the open epoch, so the snapshot of an epoch reflects exactly
//!   the results tagged with it or before; at the end of the input, the final results belong to
//!   the last epoch, whose snapshot follows them. An updating operator
//!   ([`EpochState::emits_in_record_epoch`]) fires before each epoch closes, so its results
//!   leave in the epoch of the records they reflect;
//! * **restore**: the key groups this worker owns, from every old worker's files.
//!
//! Without checkpoints the shell applies records as they come and fires on the frontier.

use std::collections::BTreeMap;
use std::sync::Arc;

use riffle_core::key_group::{KeyGroup, KEY_GROUPS};
use riffle_core::Result;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::checkpoint::{CheckpointStore, Parts};
use crate::context::JobContext;
use crate::progress::{
    emit_capability, hold_frontier, hold_frontier_fired, input_watermark, message_time, open_epoch, EpochAligner,
};
use crate::stream::{Data, Key, KeyedStream};
use crate::time::Time;

type VecBuilder<T> = CapacityContainerBuilder<Vec<T>>;

/// Snapshots between two full ones.
pub(crate) const FULL_SNAPSHOT_EVERY: u64 = 16;

/// Key groups changed since the last snapshot. Without checkpoints nothing is tracked: marking
/// hashes the key, which the hot path need not pay for.
pub(crate) struct DirtyGroups {
    dirty: Vec<bool>,
    tracking: bool,
    all: bool,
    taken: u64,
}

impl DirtyGroups {
    pub(crate) fn new(tracking: bool) -> Self {
        DirtyGroups {
            dirty: vec![false; KEY_GROUPS as usize],
            tracking,
            all: true,
            taken: 0,
        }
    }

    /// Marks the group of `key` changed.
    #[inline]
    pub(crate) fn mark<K: Key>(&mut self, key: &K) {
        if self.tracking {
            self.dirty[usize::from(KeyGroup::of(key).0)] = true;
        }
    }

    /// Marks key group `group` changed.
    #[inline]
    pub(crate) fn mark_group(&mut self, group: KeyGroup) {
        if self.tracking {
            self.dirty[usize::from(group.0)] = true;
        }
    }

    fn any(&self) -> bool {
        self.all || self.dirty.iter().any(|d| *d)
    }
}

/// The state of a keyed operator that checkpoints.
pub(crate) trait EpochState: 'static {
    /// What the operator receives.
    type In: Data;
    /// What it emits.
    type Out: Data;
    /// Applies a record that arrived with watermark `wm`, marking the groups it changes.
    fn apply(&mut self, record: Self::In, wm: i64, dirty: &mut DirtyGroups);
    /// Advances to watermark `wm`, emitting results (and marking their groups changed).
    fn fire(&mut self, wm: i64, out: &mut Vec<Self::Out>, dirty: &mut DirtyGroups);
    /// Encodes the groups for which `include` holds (empty ones too), plus anything per worker.
    fn snapshot(&self, include: &dyn Fn(u32) -> bool) -> Result<Parts>;
    /// Restores the newest parts of this worker's groups; may emit results that the old
    /// workers would have emitted (catch-up).
    fn restore(&mut self, parts: &RestoredParts<'_>, out: &mut Vec<Self::Out>) -> Result<()>;
    /// Whether the results of a record leave in the epoch the record was read in (fired before
    /// the epoch closes), rather than in whatever epoch is open when the state next fires.
    /// An updating result (the rolling aggregate) needs it: a sink that commits a source's
    /// position with each epoch (a projection's read model) must never commit a position
    /// before the rows it covers. Windows fire by the watermark instead and keep `false`.
    fn emits_in_record_epoch(&self) -> bool {
        false
    }
}

/// Encodes the parts of an operator's state, one per key group (or split, or mark): how every
/// stateful operator writes its groups into a checkpoint.
pub(crate) fn encode_parts<G, T: serde::Serialize>(
    parts: impl IntoIterator<Item = (G, T)>,
) -> Result<Vec<(G, Vec<u8>)>> {
    parts
        .into_iter()
        .map(|(id, part)| Ok((id, crate::checkpoint::encode(&part)?)))
        .collect()
}

/// What a stateful operator restores from: the newest part of each key group of a checkpoint,
/// whichever workers wrote them (and every per-worker mark, id `u32::MAX`), and which groups
/// are this worker's now.
pub(crate) struct RestoredParts<'a> {
    parts: Vec<(u32, &'a [u8])>,
    mine: &'a dyn Fn(u32) -> bool,
}

impl RestoredParts<'_> {
    /// Every part, this worker's and the others'.
    pub(crate) fn all(&self) -> &[(u32, &[u8])] {
        &self.parts
    }

    /// Whether group `group` is this worker's.
    pub(crate) fn is_mine(&self, group: u32) -> bool {
        (self.mine)(group)
    }

    /// Decodes the parts of this worker's groups as `T`s (`what` names the state in errors)
    /// and hands each to `restore`, in order: how every stateful operator takes its groups back
    /// from a checkpoint.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        mut restore: impl FnMut(u32, T) -> Result<()>,
    ) -> Result<()> {
        for &(group, bytes) in &self.parts {
            if self.is_mine(group) {
                restore(group, crate::checkpoint::decode(bytes, what)?)?;
            }
        }
        Ok(())
    }
}

/// The newest part of each id (parts come oldest first: an incremental chain); parts with id
/// `u32::MAX` (per-worker marks) are all kept.
pub(crate) fn newest_parts(parts: &[(u32, Vec<u8>)]) -> Vec<(u32, &[u8])> {
    let mut newest: BTreeMap<u32, &[u8]> = BTreeMap::new();
    let mut marks: Vec<(u32, &[u8])> = Vec::new();
    for (g, bytes) in parts {
        if *g == u32::MAX {
            marks.push((*g, bytes));
        } else {
            newest.insert(*g, bytes);
        }
    }
    newest.into_iter().chain(marks).collect()
}

/// Writes the snapshot of `epoch` and resets the changed groups.
pub(crate) fn take_snapshot<S: EpochState>(
    state: &S,
    store: &CheckpointStore,
    epoch: u64,
    op_name: &str,
    (worker, peers): (usize, usize),
    dirty: &mut DirtyGroups,
) -> Result<()> {
    let full = dirty.all || dirty.taken.is_multiple_of(FULL_SNAPSHOT_EVERY);
    // Only the groups this worker owns: an empty part of another worker's group would replace
    // that worker's part on restore.
    let include = |g: u32| KeyGroup(g as u16).worker(peers) == worker && (full || dirty.dirty[g as usize]);
    let parts = state.snapshot(&include)?;
    let kind = if full {
        crate::checkpoint::SnapshotKind::Full
    } else {
        crate::checkpoint::SnapshotKind::Incremental
    };
    store.write(epoch, op_name, worker, parts, kind)?;
    dirty.all = false;
    dirty.taken += 1;
    dirty.dirty.iter_mut().for_each(|d| *d = false);
    Ok(())
}

/// Restores `state` from the checkpoint parts of `op_name`.
pub(crate) fn restore_state<S: EpochState>(
    state: &mut S,
    parts: &[(u32, Vec<u8>)],
    (worker, peers): (usize, usize),
    out: &mut Vec<S::Out>,
) -> Result<()> {
    let mine = |g: u32| g != u32::MAX && KeyGroup(g as u16).worker(peers) == worker;
    let parts = RestoredParts {
        parts: newest_parts(parts),
        mine: &mine,
    };
    state.restore(&parts, out)
}

/// Builds the operator: `stream` exchanged by `route` (the worker of a record's key group).
/// `make(key)` builds the state of a keyed operator over the records of `keyed` (given the
/// stream's key function); it runs in [`epoch_operator`], each record exchanged to the worker
/// owning its key's group.
pub(crate) fn keyed_epoch_operator<'s, K: Key, D: Data, S: EpochState<In = (riffle_core::EventTime, D)>>(
    keyed: KeyedStream<'s, K, D>,
    name: &'static str,
    make: impl FnOnce(std::rc::Rc<dyn Fn(&D) -> K>) -> S,
) -> Stream<'s, Time, Vec<S::Out>> {
    let ctx = Arc::clone(&keyed.stream.ctx);
    let peers = keyed.stream.stream.scope().peers();
    let route_key = keyed.key.clone();
    epoch_operator(
        keyed.stream.stream,
        move |(_, d): &(riffle_core::EventTime, D)| KeyGroup::of(&route_key(d)).worker(peers) as u64,
        name,
        ctx,
        make(keyed.key),
    )
}

pub(crate) fn epoch_operator<'s, S: EpochState>(
    stream: Stream<'s, Time, Vec<S::In>>,
    route: impl Fn(&S::In) -> u64 + 'static,
    name: &'static str,
    ctx: Arc<JobContext>,
    mut state: S,
) -> Stream<'s, Time, Vec<S::Out>> {
    let (worker, peers) = (stream.scope().index(), stream.scope().peers());
    let op_name = crate::checkpoint::stateful_name(name);
    stream.unary_frontier::<VecBuilder<S::Out>, _, _, _>(Exchange::new(route), name, move |cap, _info| {
        let mut held = vec![cap];
        let mut out: Vec<S::Out> = Vec::new();
        let store = ctx.checkpoints().cloned();
        // Records of epochs after the open one wait here until it closes (alignment).
        let mut aligner: EpochAligner<(i64, S::In)> = EpochAligner::new(store.as_ref().map_or(0, |s| s.start_epoch()));
        let mut dirty = DirtyGroups::new(store.is_some());
        // The watermark the state has fired to (with checkpoints; see `hold_frontier_fired`).
        let mut fired = i64::MIN;
        if let Some(store) = &store {
            if let Err(e) = restore_state(&mut state, &store.restored_parts(&op_name), (worker, peers), &mut out) {
                ctx.fail(e);
            }
        }
        move |(input, frontier), output| {
            let Some(store) = &store else {
                input.for_each(|cap, data| {
                    let wm = message_time(&cap).watermark;
                    for x in data.drain(..) {
                        state.apply(x, wm, &mut dirty);
                    }
                });
                if let Some(wm) = input_watermark(frontier.frontier(), &ctx) {
                    state.fire(wm, &mut out, &mut dirty);
                }
                if !out.is_empty() {
                    if let Some(c) = held.first() {
                        output.session(c).give_iterator(out.drain(..));
                    }
                    out.clear();
                }
                hold_frontier(&mut held, frontier.frontier());
                return;
            };
            input.for_each(|cap, data| {
                let t = message_time(&cap);
                if aligner.is_ahead(t.epoch) {
                    aligner.hold(t.epoch, data.drain(..).map(|x| (t.watermark, x)));
                } else {
                    for x in data.drain(..) {
                        state.apply(x, t.watermark, &mut dirty);
                    }
                }
            });
            let per_epoch = state.emits_in_record_epoch();
            // The results of the records just applied leave in their epoch (the open one,
            // before it may close below), and so do those of each epoch closed below.
            let mut emit_in = |epoch: u64, state: &mut S, out: &mut Vec<S::Out>, dirty: &mut DirtyGroups| {
                state.fire(fired, out, dirty);
                if !out.is_empty() {
                    if let Some(c) = emit_capability(&held, epoch) {
                        output.session(&c).give_iterator(out.drain(..));
                    }
                    out.clear();
                }
            };
            if per_epoch {
                emit_in(aligner.epoch(), &mut state, &mut out, &mut dirty);
            }
            let open = open_epoch(frontier.frontier());
            // Close every epoch the frontier has passed: its records are all here.
            let now = aligner.advance(open, |epoch, records| {
                for (wm, x) in records {
                    state.apply(x, wm, &mut dirty);
                }
                if per_epoch {
                    emit_in(epoch, &mut state, &mut out, &mut dirty);
                }
                if dirty.any() {
                    if let Err(e) = take_snapshot(&state, store, epoch, &op_name, (worker, peers), &mut dirty) {
                        ctx.fail(e);
                    }
                }
            });
            for (wm, x) in now {
                state.apply(x, wm, &mut dirty);
            }
            // Records held back for a later epoch may have arrived with a lower watermark than
            // the frontier's (the frontier holds another source's older epoch at a higher
            // watermark): the state must not move past them.
            let held_back = aligner.held().map(|(wm, _)| *wm).min().unwrap_or(i64::MAX);
            if let Some(wm) = input_watermark(frontier.frontier(), &ctx) {
                let to = wm.min(held_back);
                state.fire(to, &mut out, &mut dirty);
                fired = fired.max(to);
            }
            if !out.is_empty() {
                // Results leave in the open epoch (at the end, the last one, whose snapshot
                // follows the final firing), at the watermark the state had fired to before:
                // not the frontier's, which is past the windows that fired now.
                if let Some(c) = emit_capability(&held, aligner.epoch()) {
                    output.session(&c).give_iterator(out.drain(..));
                }
                out.clear();
            }
            if open.is_none() && dirty.any() {
                // The end: the last epoch's snapshot includes the final firing.
                if let Err(e) = take_snapshot(&state, store, aligner.epoch(), &op_name, (worker, peers), &mut dirty) {
                    ctx.fail(e);
                }
            }
            hold_frontier_fired(&mut held, frontier.frontier(), fired);
        }
    })
}
