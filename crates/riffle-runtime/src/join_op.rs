//! Join operators on timely: one two-input shell around the join state machines of
//! `riffle_core::join`.
//!
//! Both inputs are exchanged by key group, so a key's records of both sides meet on one
//! worker. Each record's lateness is decided from the watermark of the message that carries
//! it (deterministic, like windows); late records leave through per-side late streams and are
//! counted. The operator holds a capability at the meet of its two input frontiers, so it can
//! emit what the watermark releases (window results, unmatched rows, temporal joins), and it
//! reports its state size to a [`StateGauge`] named after the operator.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hashbrown::HashMap;
use riffle_core::join::{Change, IntervalJoinState, TemporalJoinState, WindowJoinState};
use riffle_core::key_group::{filled_slots, group_slots, slot_of, GroupedState, KeyGroup};
use riffle_core::window::Window;
use riffle_core::EventTime;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;
use timely::progress::Antichain;

use crate::context::StateGauge;
use crate::progress::{emit_capability, hold_frontier_fired, input_watermark, message_time, open_epoch, EpochAligner};
use crate::stream::{Data, DataStream, Key, KeyedStream};
use crate::time::Time;

type VecBuilder<T> = CapacityContainerBuilder<Vec<T>>;

/// One joined row: the key, the left and right records (one missing for unmatched rows of
/// outer joins), and the window for window joins. Its event time is the later record's (the
/// window's last millisecond for window joins).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinResult<K, L, R> {
    /// The key both records share.
    pub key: K,
    /// The left record.
    pub left: Option<L>,
    /// The right record.
    pub right: Option<R>,
    /// The window (window joins only).
    pub window: Option<Window>,
}

/// The output of a join: the joined rows, the late records of each side, the state gauge.
/// (For stream-table joins the late right records are changelog entries, `LateR`.)
pub struct Joined<'s, K: 'static, L: 'static, R: 'static, LateR: 'static = R> {
    /// Joined rows.
    pub rows: DataStream<'s, JoinResult<K, L, R>>,
    /// Left records that arrived too late to join.
    pub late_left: DataStream<'s, L>,
    /// Right records that arrived too late to join.
    pub late_right: DataStream<'s, LateR>,
    /// The operator's state size (rows held), summed over this process's workers.
    pub state: Arc<StateGauge>,
}

/// What a keyed two-input operator does with its records and watermarks.
pub(crate) trait TwoInputLogic<K, L, R, O>: 'static {
    /// Whether a left record at `ts` arriving with watermark `wm` is on time.
    fn left_on_time(&self, ts: EventTime, wm: i64) -> bool;
    /// Whether a right record is on time.
    fn right_on_time(&self, ts: EventTime, wm: i64) -> bool;
    /// An on-time left record.
    fn left(&mut self, key: K, ts: EventTime, wm: i64, value: L, out: &mut Vec<(EventTime, O)>);
    /// An on-time right record.
    fn right(&mut self, key: K, ts: EventTime, wm: i64, value: R, out: &mut Vec<(EventTime, O)>);
    /// The input watermarks advanced.
    fn advance(&mut self, left_wm: i64, right_wm: i64, out: &mut Vec<(EventTime, O)>);
    /// Rows held.
    fn len(&self) -> usize;
    /// Whether records should be handed over in event-time order once both input frontiers
    /// have passed the watermark they arrived with (rather than as they arrive).
    fn ordered(&self) -> bool {
        false
    }
    /// The state of the key groups `include` accepts, one encoded part per group (empty
    /// groups too).
    fn snapshot(&self, include: &dyn Fn(KeyGroup) -> bool) -> riffle_core::Result<Vec<(KeyGroup, Vec<u8>)>>;
    /// Takes in the checkpointed parts of the groups this worker now owns, whichever workers
    /// wrote them; may emit rows that their old workers would have emitted (catch-up).
    fn restore(&mut self, parts: &[&[u8]], out: &mut Vec<(EventTime, O)>) -> riffle_core::Result<()>;
}

/// What a join checkpoints per key group: the group's part of the state and its records
/// accepted but not yet joined. Written by reference (`PL = &(EventTime, i64, L)`), read back
/// owned.
#[derive(Serialize, Deserialize)]
struct JoinPart<'a, PL, PR> {
    state: &'a [u8],
    pending_left: Vec<PL>,
    pending_right: Vec<PR>,
}

/// The key functions of a join's two sides.
type KeyFns<'a, K, L, R> = (&'a dyn Fn(&L) -> K, &'a dyn Fn(&R) -> K);

/// Writes this worker's key groups of the join for `epoch`: every group it owns, whole (join
/// state is bounded by its interval or window, so there is no incremental variant).
#[allow(clippy::too_many_arguments)]
fn snapshot_join<K: Key, L: Data, R: Data, O, S: TwoInputLogic<K, L, R, O>>(
    logic: &S,
    pending_left: &[(EventTime, i64, L)],
    pending_right: &[(EventTime, i64, R)],
    (left_key, right_key): KeyFns<'_, K, L, R>,
    store: &crate::checkpoint::CheckpointStore,
    epoch: u64,
    op_name: &str,
    (worker, peers): (usize, usize),
) -> riffle_core::Result<()> {
    let mine = |g: KeyGroup| g.worker(peers) == worker;
    let states = logic.snapshot(&mine)?;
    type Pending<'p, L, R> = (Vec<&'p (EventTime, i64, L)>, Vec<&'p (EventTime, i64, R)>);
    let mut pending: Vec<Option<Pending<'_, L, R>>> = group_slots(&mine, || (Vec::new(), Vec::new()));
    for p in pending_left {
        if let Some(slot) = slot_of(&mut pending, &left_key(&p.2)) {
            slot.0.push(p);
        }
    }
    for p in pending_right {
        if let Some(slot) = slot_of(&mut pending, &right_key(&p.2)) {
            slot.1.push(p);
        }
    }
    let mut parts = Vec::with_capacity(states.len());
    for (group, state) in &states {
        let (pending_left, pending_right) = pending[usize::from(group.0)].take().unwrap_or_default();
        let part = JoinPart {
            state,
            pending_left,
            pending_right,
        };
        parts.push((u32::from(group.0), crate::checkpoint::encode(&part)?));
    }
    store.write(epoch, op_name, worker, parts, crate::checkpoint::SnapshotKind::Full)
}

/// Restores the key groups this worker owns from every old worker's parts (the newest part of
/// each group), whatever the number of workers that wrote them.
fn restore_join<K, L: Data, R: Data, O, S: TwoInputLogic<K, L, R, O>>(
    logic: &mut S,
    pending_left: &mut Vec<(EventTime, i64, L)>,
    pending_right: &mut Vec<(EventTime, i64, R)>,
    parts: &[(u32, Vec<u8>)],
    (worker, peers): (usize, usize),
    out: &mut Vec<(EventTime, O)>,
) -> riffle_core::Result<()> {
    type OwnedPart<'a, L, R> = JoinPart<'a, (EventTime, i64, L), (EventTime, i64, R)>;
    let mut states = Vec::new();
    for (group, bytes) in crate::epoch_op::newest_parts(parts) {
        if group == u32::MAX || KeyGroup(group as u16).worker(peers) != worker {
            continue;
        }
        let part: OwnedPart<'_, L, R> = bincode::deserialize(bytes).map_err(|e| {
            riffle_core::Error::Execution(format!(
                "cannot decode the snapshot of join state (key group {group}): {e}"
            ))
        })?;
        states.push(part.state);
        pending_left.extend(part.pending_left);
        pending_right.extend(part.pending_right);
    }
    logic.restore(&states, out)
}

/// Encodes the parts of a [`GroupedState`], one per group `include` accepts.
fn encode_groups<S: GroupedState + Serialize>(
    state: &S,
    include: &dyn Fn(KeyGroup) -> bool,
) -> riffle_core::Result<Vec<(KeyGroup, Vec<u8>)>> {
    crate::epoch_op::encode_parts(state.split_groups(include))
}

/// Decodes the parts of a [`GroupedState`].
fn decode_groups<S: GroupedState + serde::de::DeserializeOwned>(
    parts: &[&[u8]],
    what: &str,
) -> riffle_core::Result<Vec<S>> {
    parts
        .iter()
        .map(|bytes| crate::checkpoint::decode(bytes, what))
        .collect()
}

/// Takes the pending records whose arrival watermark is below `release` (all of them when
/// not `ordered`), sorted by event time when `ordered`.
fn take_ready<T>(pending: &mut Vec<(EventTime, i64, T)>, release: i64, ordered: bool) -> Vec<(EventTime, i64, T)> {
    if !ordered {
        return std::mem::take(pending);
    }
    if !pending.iter().any(|p| p.1 < release) {
        return Vec::new();
    }
    let (mut ready, rest): (Vec<_>, Vec<_>) = std::mem::take(pending).into_iter().partition(|p| p.1 < release);
    *pending = rest;
    ready.sort_by_key(|p| p.0);
    ready
}

/// A record of a join's left or right input held for a later epoch: event time, the
/// watermark it arrived with, the record.
enum Held<L, R> {
    Left((EventTime, i64, L)),
    Right((EventTime, i64, R)),
}

impl<L, R> Held<L, R> {
    /// Appends each record to the pending records of its side, in order.
    fn sort_into(records: Vec<Self>, left: &mut Vec<(EventTime, i64, L)>, right: &mut Vec<(EventTime, i64, R)>) {
        for h in records {
            match h {
                Held::Left(x) => left.push(x),
                Held::Right(x) => right.push(x),
            }
        }
    }
}

/// What one input of a join does with an arriving record: whether it is on time, and how it
/// is wrapped when it is late or held for a later epoch.
struct Side<OnTime, Late, Hold> {
    on_time: OnTime,
    late: Late,
    held: Hold,
}

impl<OnTime, Late, Hold> Side<OnTime, Late, Hold> {
    /// Sorts the records of a message that came at `t`: late ones into `buffer`, those of an
    /// epoch the operator has not reached into `aligner` (when `aligning`), the others into
    /// `pending`. Returns how many were late.
    fn admit<T, O, L, R>(
        &self,
        t: Time,
        data: &mut Vec<(EventTime, T)>,
        aligning: bool,
        aligner: &mut EpochAligner<Held<L, R>>,
        pending: &mut Vec<(EventTime, i64, T)>,
        buffer: &mut Vec<(EventTime, Out<O, L, R>)>,
    ) -> u64
    where
        OnTime: Fn(EventTime, i64) -> bool,
        Late: Fn(T) -> Out<O, L, R>,
        Hold: Fn((EventTime, i64, T)) -> Held<L, R>,
    {
        let mut late = 0;
        for (ts, d) in data.drain(..) {
            if !(self.on_time)(ts, t.watermark) {
                late += 1;
                buffer.push((ts, (self.late)(d)));
            } else if aligning && aligner.is_ahead(t.epoch) {
                aligner.hold(t.epoch, [(self.held)((ts, t.watermark, d))]);
            } else {
                pending.push((ts, t.watermark, d));
            }
        }
        late
    }
}

#[derive(Clone, Serialize, Deserialize)]
enum Out<O, L, R> {
    Row(O),
    LateLeft(L),
    LateRight(R),
}

/// What [`keyed_binary`] builds: its rows, each side's late records and its state gauge.
pub(crate) struct BinaryOutput<'s, O: 'static, L: 'static, R: 'static> {
    pub(crate) rows: DataStream<'s, O>,
    pub(crate) late_left: DataStream<'s, L>,
    pub(crate) late_right: DataStream<'s, R>,
    pub(crate) state: Arc<StateGauge>,
}

/// The shell: routing, lateness, capabilities and the state gauge around `logic`.
pub(crate) fn keyed_binary<'s, K, L, R, O, S>(
    left: KeyedStream<'s, K, L>,
    right: KeyedStream<'s, K, R>,
    name: &str,
    logic: S,
) -> BinaryOutput<'s, O, L, R>
where
    K: Key,
    L: Data,
    R: Data,
    O: Data,
    S: TwoInputLogic<K, L, R, O>,
{
    let ctx = Arc::clone(&left.stream.ctx);
    let peers = left.stream.stream.scope().peers();
    let worker = left.stream.stream.scope().index();
    let op_name = crate::checkpoint::stateful_name(name);
    let (lk, rk) = (left.key.clone(), right.key.clone());
    let route_l = Exchange::new(move |(_, d): &(EventTime, L)| KeyGroup::of(&lk(d)).worker(peers) as u64);
    let route_r = Exchange::new(move |(_, d): &(EventTime, R)| KeyGroup::of(&rk(d)).worker(peers) as u64);
    let (left_key, right_key) = (left.key, right.key);
    let op_ctx = Arc::clone(&ctx);
    let gauge_name = std::cell::RefCell::new(None);
    let gauge_slot = &gauge_name;
    let output = left
        .stream
        .stream
        .binary_frontier::<_, VecBuilder<(EventTime, Out<O, L, R>)>, _, _, _, _>(
            right.stream.stream,
            route_l,
            route_r,
            name,
            |cap, info| {
                let gauge = op_ctx.state_gauge(&format!("{name} {:?}", info.address));
                *gauge_slot.borrow_mut() = Some(Arc::clone(&gauge));
                let mut held = vec![cap];
                // The watermark the state has advanced to (see `hold_frontier_fired`).
                let mut fired = i64::MIN;
                let mut logic = logic;
                let mut rows: Vec<(EventTime, O)> = Vec::new();
                let mut buffer: Vec<(EventTime, Out<O, L, R>)> = Vec::new();
                let mut size = 0usize;
                let ordered = logic.ordered();
                let mut pending_left: Vec<(EventTime, i64, L)> = Vec::new();
                let mut pending_right: Vec<(EventTime, i64, R)> = Vec::new();
                // Checkpoints: records of epochs after the open one wait here (alignment); the
                // state and the records accepted but not yet joined are written per epoch.
                let store = op_ctx.checkpoints().cloned();
                let mut aligner: EpochAligner<Held<L, R>> =
                    EpochAligner::new(store.as_ref().map_or(0, |s| s.start_epoch()));
                if let Some(store) = &store {
                    let parts = store.restored_parts(&op_name);
                    if let Err(e) = restore_join(
                        &mut logic,
                        &mut pending_left,
                        &mut pending_right,
                        &parts,
                        (worker, peers),
                        &mut rows,
                    ) {
                        op_ctx.fail(e);
                    }
                }
                move |(input1, frontier1), (input2, frontier2), output| {
                    let mut late = 0u64;
                    // Each record is late (out at once), of an epoch not reached yet (held), or
                    // accepted (pending until it is joined).
                    let aligning = store.is_some();
                    let left = Side {
                        on_time: |ts, wm| logic.left_on_time(ts, wm),
                        late: Out::LateLeft,
                        held: Held::Left,
                    };
                    let right = Side {
                        on_time: |ts, wm| logic.right_on_time(ts, wm),
                        late: Out::LateRight,
                        held: Held::Right,
                    };
                    let (pl, pr, al, out) = (&mut pending_left, &mut pending_right, &mut aligner, &mut buffer);
                    input1.for_each(|cap, data| late += left.admit(message_time(&cap), data, aligning, al, pl, out));
                    input2.for_each(|cap, data| late += right.admit(message_time(&cap), data, aligning, al, pr, out));
                    if late > 0 {
                        op_ctx.metrics().late.fetch_add(late, Ordering::Relaxed);
                    }
                    let mut meet: Antichain<Time> = Antichain::new();
                    for t in frontier1.frontier().iter().chain(frontier2.frontier().iter()) {
                        meet.insert(*t);
                    }
                    let open = open_epoch(meet.borrow());
                    if let Some(store) = &store {
                        // Close every epoch the frontiers have passed: its records are all here,
                        // accepted but maybe not joined yet; both are in the snapshot.
                        let now = aligner.advance(open, |epoch, records| {
                            Held::sort_into(records, &mut pending_left, &mut pending_right);
                            if let Err(e) = snapshot_join(
                                &logic,
                                &pending_left,
                                &pending_right,
                                (&*left_key, &*right_key),
                                store,
                                epoch,
                                &op_name,
                                (worker, peers),
                            ) {
                                op_ctx.fail(e);
                            }
                        });
                        Held::sort_into(now, &mut pending_left, &mut pending_right);
                    }
                    // Records held back for a later epoch may have arrived with a lower watermark
                    // than their input's frontier: the state must not move past them.
                    let held_back = |left: bool| {
                        aligner
                            .held()
                            .filter_map(|h| match h {
                                Held::Left(x) if left => Some(x.1),
                                Held::Right(x) if !left => Some(x.1),
                                _ => None,
                            })
                            .min()
                            .unwrap_or(i64::MAX)
                    };
                    // A job that halted ends with empty frontiers although its inputs did not
                    // end: the state is frozen (records still join as they come, but nothing
                    // is evicted or fired as complete, and ordered records wait in
                    // `pending_*`, which the final snapshot keeps).
                    let (lw, rw) = (
                        input_watermark(frontier1.frontier(), &op_ctx),
                        input_watermark(frontier2.frontier(), &op_ctx),
                    );
                    let frozen = lw.is_none() || rw.is_none();
                    let (lw, rw) = (
                        lw.unwrap_or(i64::MIN).min(held_back(true)),
                        rw.unwrap_or(i64::MIN).min(held_back(false)),
                    );
                    // Ordered logic takes records once both frontiers have passed the watermark
                    // they came with, in event-time order: inputs that run ahead of each other
                    // then do not scatter inserts through the state.
                    let release = if ordered { lw.min(rw) } else { i64::MAX };
                    let ready_left = take_ready(&mut pending_left, release, ordered);
                    for (ts, wm, d) in ready_left {
                        logic.left(left_key(&d), ts, wm, d, &mut rows);
                    }
                    let ready_right = take_ready(&mut pending_right, release, ordered);
                    for (ts, wm, d) in ready_right {
                        logic.right(right_key(&d), ts, wm, d, &mut rows);
                    }
                    // Unprocessed records are on time at a watermark of at least `release`: state
                    // may only be freed up to there.
                    if !frozen {
                        if ordered {
                            logic.advance(release, release, &mut rows);
                        } else {
                            logic.advance(lw, rw, &mut rows);
                        }
                        fired = fired.max(lw.min(rw));
                    }
                    buffer.extend(rows.drain(..).map(|(ts, o)| (ts, Out::Row(o))));
                    if !buffer.is_empty() {
                        // Rows leave in the open epoch (a row must not belong to a later epoch
                        // than the state that produced it; at the end, the last one), at the
                        // watermark the state had advanced to before, not the frontier's.
                        if let Some(c) = emit_capability(&held, aligner.epoch()) {
                            output.session(&c).give_container(&mut buffer);
                        }
                        buffer.clear();
                    }
                    if let (Some(store), None) = (&store, open) {
                        // The end: the last epoch's snapshot follows its final rows.
                        if let Err(e) = snapshot_join(
                            &logic,
                            &pending_left,
                            &pending_right,
                            (&*left_key, &*right_key),
                            store,
                            aligner.epoch(),
                            &op_name,
                            (worker, peers),
                        ) {
                            op_ctx.fail(e);
                        }
                    }
                    let n = logic.len() + pending_left.len() + pending_right.len();
                    gauge.update(size, n);
                    size = n;
                    hold_frontier_fired(&mut held, meet.borrow(), fired);
                }
            },
        );
    // The constructor above ran while the operator was built.
    let gauge = gauge_name.into_inner().unwrap_or_default();
    type Split<'s, A, B> = (
        timely::dataflow::Stream<'s, Time, Vec<(EventTime, A)>>,
        timely::dataflow::Stream<'s, Time, Vec<(EventTime, B)>>,
    );
    let (rows, late): Split<'s, O, Result<L, R>> = output.ok_err(|(ts, o)| match o {
        Out::Row(r) => Ok((ts, r)),
        Out::LateLeft(l) => Err((ts, Ok(l))),
        Out::LateRight(r) => Err((ts, Err(r))),
    });
    let (late_left, late_right) = late.ok_err(|(ts, side): (EventTime, Result<L, R>)| match side {
        Ok(l) => Ok((ts, l)),
        Err(r) => Err((ts, r)),
    });
    BinaryOutput {
        rows: DataStream {
            stream: rows,
            ctx: Arc::clone(&ctx),
        },
        late_left: DataStream {
            stream: late_left,
            ctx: Arc::clone(&ctx),
        },
        late_right: DataStream {
            stream: late_right,
            ctx,
        },
        state: gauge,
    }
}

/// Interval join logic.
pub(crate) struct IntervalLogic<K, L, R>(pub(crate) IntervalJoinState<K, L, R>);

type RowsOut<K, L, R> = Vec<(EventTime, JoinResult<K, L, R>)>;

fn push_row<K: Clone, L: Clone, R: Clone>(
    out: &mut RowsOut<K, L, R>,
    window: Option<Window>,
) -> impl FnMut(&K, EventTime, Option<&L>, Option<&R>) + '_ {
    move |k, ts, l, r| {
        out.push((
            ts,
            JoinResult {
                key: k.clone(),
                left: l.cloned(),
                right: r.cloned(),
                window,
            },
        ))
    }
}

impl<K: Key, L: Data, R: Data> TwoInputLogic<K, L, R, JoinResult<K, L, R>> for IntervalLogic<K, L, R> {
    fn left_on_time(&self, ts: EventTime, wm: i64) -> bool {
        ts >= wm
    }
    fn right_on_time(&self, ts: EventTime, wm: i64) -> bool {
        ts >= wm
    }
    fn left(&mut self, key: K, ts: EventTime, _wm: i64, value: L, out: &mut RowsOut<K, L, R>) {
        self.0.insert_left(key, ts, value, &mut push_row(out, None));
    }
    fn right(&mut self, key: K, ts: EventTime, _wm: i64, value: R, out: &mut RowsOut<K, L, R>) {
        self.0.insert_right(key, ts, value, &mut push_row(out, None));
    }
    fn advance(&mut self, left_wm: i64, right_wm: i64, out: &mut RowsOut<K, L, R>) {
        self.0.advance(left_wm, right_wm, &mut push_row(out, None));
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn ordered(&self) -> bool {
        true
    }
    fn snapshot(&self, include: &dyn Fn(KeyGroup) -> bool) -> riffle_core::Result<Vec<(KeyGroup, Vec<u8>)>> {
        encode_groups(&self.0, include)
    }
    fn restore(&mut self, parts: &[&[u8]], _out: &mut RowsOut<K, L, R>) -> riffle_core::Result<()> {
        for part in decode_groups(parts, "interval join state")? {
            self.0.absorb(part);
        }
        Ok(())
    }
}

/// Collects window join rows into `out`.
fn window_rows<K: Clone, L: Clone, R: Clone>(
    out: &mut RowsOut<K, L, R>,
) -> impl FnMut(Window, &K, EventTime, Option<&L>, Option<&R>) + '_ {
    move |w, k, ts, l, r| {
        out.push((
            ts,
            JoinResult {
                key: k.clone(),
                left: l.cloned(),
                right: r.cloned(),
                window: Some(w),
            },
        ))
    }
}

/// Window join logic.
pub(crate) struct WindowLogic<K, L, R>(pub(crate) WindowJoinState<K, L, R>);

impl<K: Key, L: Data, R: Data> TwoInputLogic<K, L, R, JoinResult<K, L, R>> for WindowLogic<K, L, R> {
    fn left_on_time(&self, ts: EventTime, wm: i64) -> bool {
        self.0.is_on_time(ts, wm)
    }
    fn right_on_time(&self, ts: EventTime, wm: i64) -> bool {
        self.0.is_on_time(ts, wm)
    }
    fn left(&mut self, key: K, ts: EventTime, wm: i64, value: L, _out: &mut RowsOut<K, L, R>) {
        self.0.insert_left(key, ts, wm, value);
    }
    fn right(&mut self, key: K, ts: EventTime, wm: i64, value: R, _out: &mut RowsOut<K, L, R>) {
        self.0.insert_right(key, ts, wm, value);
    }
    fn advance(&mut self, left_wm: i64, right_wm: i64, out: &mut RowsOut<K, L, R>) {
        self.0.advance(left_wm.min(right_wm), &mut window_rows(out));
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn snapshot(&self, include: &dyn Fn(KeyGroup) -> bool) -> riffle_core::Result<Vec<(KeyGroup, Vec<u8>)>> {
        encode_groups(&self.0, include)
    }
    fn restore(&mut self, parts: &[&[u8]], out: &mut RowsOut<K, L, R>) -> riffle_core::Result<()> {
        let parts: Vec<WindowJoinState<K, L, R>> = decode_groups(parts, "window join state")?;
        self.0.absorb_caught_up(parts, &mut window_rows(out));
        Ok(())
    }
}

/// Event-time temporal join logic: left is the stream, right the table's changelog.
pub(crate) struct TemporalLogic<K, S, V>(pub(crate) TemporalJoinState<K, S, V>);

impl<K: Key, S: Data, V: Data> TwoInputLogic<K, S, (K, Change<V>), JoinResult<K, S, V>> for TemporalLogic<K, S, V> {
    fn left_on_time(&self, ts: EventTime, wm: i64) -> bool {
        ts >= wm
    }
    fn right_on_time(&self, ts: EventTime, wm: i64) -> bool {
        ts >= wm
    }
    fn left(&mut self, key: K, ts: EventTime, _wm: i64, value: S, _out: &mut RowsOut<K, S, V>) {
        self.0.insert_stream(key, ts, value);
    }
    fn right(&mut self, key: K, ts: EventTime, _wm: i64, value: (K, Change<V>), _out: &mut RowsOut<K, S, V>) {
        self.0.apply(key, ts, value.1);
    }
    fn advance(&mut self, left_wm: i64, right_wm: i64, out: &mut RowsOut<K, S, V>) {
        self.0.advance(left_wm, right_wm, &mut |k, ts, s, v| {
            out.push((
                ts,
                JoinResult {
                    key: k.clone(),
                    left: Some(s.clone()),
                    right: v.cloned(),
                    window: None,
                },
            ))
        });
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn snapshot(&self, include: &dyn Fn(KeyGroup) -> bool) -> riffle_core::Result<Vec<(KeyGroup, Vec<u8>)>> {
        encode_groups(&self.0, include)
    }
    fn restore(&mut self, parts: &[&[u8]], _out: &mut RowsOut<K, S, V>) -> riffle_core::Result<()> {
        for part in decode_groups(parts, "temporal join state")? {
            self.0.absorb(part);
        }
        Ok(())
    }
}

/// Lookup join logic (processing-time semantics): a stream record joins the table's latest row
/// when it arrives; nothing is late and nothing waits.
pub(crate) struct LookupLogic<K, S, V> {
    pub(crate) table: HashMap<K, V>,
    pub(crate) left_outer: bool,
    pub(crate) _stream: std::marker::PhantomData<fn(S)>,
}

impl<K: Key, S: Data, V: Data> TwoInputLogic<K, S, (K, Change<V>), JoinResult<K, S, V>> for LookupLogic<K, S, V> {
    fn left_on_time(&self, _ts: EventTime, _wm: i64) -> bool {
        true
    }
    fn right_on_time(&self, _ts: EventTime, _wm: i64) -> bool {
        true
    }
    fn left(&mut self, key: K, ts: EventTime, _wm: i64, value: S, out: &mut RowsOut<K, S, V>) {
        let row = self.table.get(&key).cloned();
        if row.is_some() || self.left_outer {
            out.push((
                ts,
                JoinResult {
                    key,
                    left: Some(value),
                    right: row,
                    window: None,
                },
            ));
        }
    }
    fn right(&mut self, key: K, _ts: EventTime, _wm: i64, value: (K, Change<V>), _out: &mut RowsOut<K, S, V>) {
        match value.1 {
            Change::Upsert(v) => {
                self.table.insert(key, v);
            }
            Change::Delete => {
                self.table.remove(&key);
            }
        }
    }
    fn advance(&mut self, _left_wm: i64, _right_wm: i64, _out: &mut RowsOut<K, S, V>) {}
    fn len(&self) -> usize {
        self.table.len()
    }
    fn snapshot(&self, include: &dyn Fn(KeyGroup) -> bool) -> riffle_core::Result<Vec<(KeyGroup, Vec<u8>)>> {
        let mut slots = group_slots(include, HashMap::new);
        for (key, row) in &self.table {
            if let Some(part) = slot_of(&mut slots, key) {
                part.insert(key, row);
            }
        }
        crate::epoch_op::encode_parts(filled_slots(slots))
    }
    fn restore(&mut self, parts: &[&[u8]], _out: &mut RowsOut<K, S, V>) -> riffle_core::Result<()> {
        for bytes in parts {
            let part: HashMap<K, V> = crate::checkpoint::decode(bytes, "lookup join table")?;
            self.table.extend(part);
        }
        Ok(())
    }
}
