//! The window operators on timely: the time window operator after the keyed exchange (fed by
//! the combiner of `combiner.rs` before it) and the count window operator, both thin shells
//! around `riffle_core`'s window state machines, driven by the epoch shell (`epoch_op.rs`).
//!
//! **Time window operator** (after the exchange by key group): merges partials into the state
//! and advances it to the watermark of its input frontier, emitting results at a capability it
//! holds at that frontier.

use std::sync::Arc;

use riffle_core::aggregate::Aggregate;
use riffle_core::count_window::{CountPart, CountWindowState, CountWindows};
use riffle_core::key_group::{KeyGroup, KEY_GROUPS};
use riffle_core::window::TimeWindows;
use riffle_core::window_state::{SessionPart, SessionWindowState, SlicedPart, SlicedWindowState};
use riffle_core::EventTime;
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::combiner::Partial;
use crate::epoch_op::{encode_parts, DirtyGroups, EpochState, RestoredParts};
use crate::stream::{Data, DataStream, Key, KeyedStream, WindowResult};

enum TimeState<K, D, A: Aggregate<D>> {
    Sliced(SlicedWindowState<K, D, A>),
    Session(SessionWindowState<K, D, A>),
}

type WindowOutput<'s, K, D, R> = (DataStream<'s, WindowResult<K, R>>, DataStream<'s, D>);

pub(crate) fn time_window<'s, K: Key, D: Data, A>(
    keyed: KeyedStream<'s, K, D>,
    windows: TimeWindows,
    lateness: i64,
    agg: A,
) -> WindowOutput<'s, K, D, A::Output>
where
    A: Aggregate<D>,
    A::Output: Data,
{
    let ctx = Arc::clone(&keyed.stream.ctx);
    let (partials, late) = crate::combiner::combine(keyed, windows, lateness, agg.clone());
    let peers = partials.scope().peers();
    let state = match windows {
        TimeWindows::Sliced(s) => TimeState::Sliced(SlicedWindowState::new(s, lateness, agg.clone())),
        TimeWindows::Session(g) => TimeState::Session(SessionWindowState::new(g, lateness, agg.clone())),
    };
    let op = TimeWindowOp {
        state,
        windows,
        lateness,
        agg,
    };
    let results = crate::epoch_op::epoch_operator(
        partials,
        move |p: &Partial<K, A::Acc>| KeyGroup::of(&p.key).worker(peers) as u64,
        "Window",
        Arc::clone(&ctx),
        op,
    );
    (
        DataStream {
            stream: results,
            ctx: Arc::clone(&ctx),
        },
        DataStream { stream: late, ctx },
    )
}

fn apply_partial<K: Key, D, A: Aggregate<D>>(state: &mut TimeState<K, D, A>, p: Partial<K, A::Acc>) {
    match (state, p.staged_at) {
        (TimeState::Sliced(st), None) => st.add_on_time(p.slot, p.key, p.acc),
        (TimeState::Sliced(st), Some(at)) => st.stage(at, p.slot, p.key, p.acc),
        (TimeState::Session(st), None) => st.add_on_time(p.key, p.slot, p.acc),
        (TimeState::Session(st), Some(at)) => st.stage(at, p.key, p.slot, p.acc),
    }
}

fn fire_windows<K: Key, D, A: Aggregate<D>>(
    state: &mut TimeState<K, D, A>,
    wm: i64,
    out: &mut Vec<(EventTime, WindowResult<K, A::Output>)>,
) {
    let mut emit = |w: riffle_core::Window, k: &K, r: A::Output| out.push(fired(w, k, r));
    match state {
        TimeState::Sliced(st) => st.advance(wm, &mut emit),
        TimeState::Session(st) => st.advance(wm, &mut emit),
    }
}

/// The leading field of a [`SlicedPart`]: decoded alone for key groups another worker owns.
#[derive(Deserialize)]
struct SlicedMark {
    fired_up_to: i64,
}

fn group_of<K: Key>(k: &K) -> u32 {
    u32::from(KeyGroup::of(k).0)
}

/// The time window operator's state, as the epoch shell drives it.
struct TimeWindowOp<K, D, A: Aggregate<D>> {
    state: TimeState<K, D, A>,
    windows: TimeWindows,
    lateness: i64,
    agg: A,
}

impl<K: Key, D: Data, A> TimeWindowOp<K, D, A>
where
    A: Aggregate<D>,
{
    fn empty(&self) -> TimeState<K, D, A> {
        match self.windows {
            TimeWindows::Sliced(s) => TimeState::Sliced(SlicedWindowState::new(s, self.lateness, self.agg.clone())),
            TimeWindows::Session(g) => TimeState::Session(SessionWindowState::new(g, self.lateness, self.agg.clone())),
        }
    }
}

type Fired<K, R> = (EventTime, WindowResult<K, R>);

/// The result of window `window` for `key`, at the window's last millisecond.
fn fired<K: Clone, R>(window: riffle_core::Window, key: &K, value: R) -> Fired<K, R> {
    (
        window.max_timestamp(),
        WindowResult {
            window,
            key: key.clone(),
            value,
        },
    )
}

impl<K: Key, D: Data, A> EpochState for TimeWindowOp<K, D, A>
where
    A: Aggregate<D>,
    A::Output: Data,
{
    type In = Partial<K, A::Acc>;
    type Out = Fired<K, A::Output>;

    fn apply(&mut self, p: Partial<K, A::Acc>, _wm: i64, dirty: &mut DirtyGroups) {
        dirty.mark(&p.key);
        apply_partial(&mut self.state, p);
    }

    fn fire(&mut self, wm: i64, out: &mut Vec<Self::Out>, dirty: &mut DirtyGroups) {
        let before = out.len();
        fire_windows(&mut self.state, wm, out);
        for (_, r) in &out[before..] {
            dirty.mark(&r.key);
        }
    }

    fn snapshot(&self, include: &dyn Fn(u32) -> bool) -> riffle_core::Result<crate::checkpoint::Parts> {
        let groups = KEY_GROUPS as usize;
        let mut parts = Vec::new();
        match &self.state {
            TimeState::Sliced(st) => {
                st.snapshot(groups, group_of, include, |g, part| {
                    parts.push((g, crate::checkpoint::encode(part)?));
                    Ok::<(), riffle_core::Error>(())
                })?;
                // How far this worker fired, whatever groups changed.
                let mark: SlicedPart<K, A::Acc> = SlicedPart {
                    fired_up_to: st.fired_up_to(),
                    panes: Vec::new(),
                    staged: Vec::new(),
                };
                parts.push((u32::MAX, crate::checkpoint::encode(&mark)?));
            }
            TimeState::Session(st) => {
                parts.extend(encode_parts(st.snapshot(groups, group_of, include))?);
                let mark: SessionPart<K, A::Acc> = SessionPart {
                    watermark: st.watermark(),
                    sessions: Vec::new(),
                    staged: Vec::new(),
                };
                parts.push((u32::MAX, crate::checkpoint::encode(&mark)?));
            }
        }
        Ok(parts)
    }

    /// Parts written by different workers may have fired up to different watermarks; the state
    /// takes the highest, and the groups that were behind fire their windows up to it now, as
    /// their old worker would have.
    fn restore(&mut self, parts: &RestoredParts<'_>, out: &mut Vec<Self::Out>) -> riffle_core::Result<()> {
        let name = "window state";
        match self.state {
            TimeState::Sliced(_) => self.catch_up(
                parts,
                |bytes, mine| {
                    if mine {
                        let part: SlicedPart<K, A::Acc> = crate::checkpoint::decode(bytes, name)?;
                        Ok((part.fired_up_to, Some(part)))
                    } else {
                        // Only the fired watermark matters from other workers' groups.
                        let mark: SlicedMark = crate::checkpoint::decode(bytes, name)?;
                        Ok((mark.fired_up_to, None))
                    }
                },
                |state, group_parts| {
                    if let TimeState::Sliced(st) = state {
                        st.restore_all(group_parts);
                    }
                },
                out,
            ),
            TimeState::Session(_) => self.catch_up(
                parts,
                |bytes, mine| {
                    let part: SessionPart<K, A::Acc> = crate::checkpoint::decode(bytes, name)?;
                    Ok((part.watermark, mine.then_some(part)))
                },
                |state, group_parts| {
                    if let TimeState::Session(st) = state {
                        for p in group_parts {
                            st.restore(p);
                        }
                    }
                },
                out,
            ),
        }
    }
}

impl<K: Key, D: Data, A> TimeWindowOp<K, D, A>
where
    A: Aggregate<D>,
    A::Output: Data,
{
    /// Restores the parts of this worker's groups so that each catches up with the highest
    /// watermark any old worker had fired to: `decode` gives a part's fired watermark (and the
    /// part, for this worker's groups), `restore` takes parts into a state. Parts that fired to
    /// the same watermark are restored together into a fresh state, fired up to the highest,
    /// and absorbed.
    fn catch_up<P>(
        &mut self,
        parts: &RestoredParts<'_>,
        decode: impl Fn(&[u8], bool) -> riffle_core::Result<(i64, Option<P>)>,
        restore: impl Fn(&mut TimeState<K, D, A>, Vec<P>),
        out: &mut Vec<Fired<K, A::Output>>,
    ) -> riffle_core::Result<()> {
        let mut highest = i64::MIN;
        let mut by_mark: BTreeMap<i64, Vec<P>> = BTreeMap::new();
        for &(g, bytes) in parts.all() {
            let (mark, part) = decode(bytes, parts.is_mine(g))?;
            highest = highest.max(mark);
            if let Some(part) = part {
                by_mark.entry(mark).or_default().push(part);
            }
        }
        for (_mark, group_parts) in by_mark {
            let mut tmp = self.empty();
            restore(&mut tmp, group_parts);
            fire_windows(&mut tmp, highest, out);
            match (&mut self.state, tmp) {
                (TimeState::Sliced(st), TimeState::Sliced(t)) => st.absorb(t),
                (TimeState::Session(st), TimeState::Session(t)) => st.absorb(t),
                _ => {}
            }
        }
        if highest > i64::MIN {
            match &mut self.state {
                TimeState::Sliced(st) => st.restore(SlicedPart {
                    fired_up_to: highest,
                    panes: Vec::new(),
                    staged: Vec::new(),
                }),
                TimeState::Session(st) => st.restore(SessionPart {
                    watermark: highest,
                    sessions: Vec::new(),
                    staged: Vec::new(),
                }),
            }
        }
        Ok(())
    }
}

/// The count window operator's state, as the epoch shell drives it.
struct CountWindowOp<K, D, A: Aggregate<D>> {
    state: CountWindowState<K, D, A>,
    key: std::rc::Rc<dyn Fn(&D) -> K>,
}

impl<K: Key, D: Data, A> EpochState for CountWindowOp<K, D, A>
where
    A: Aggregate<D>,
    A::Output: Data,
{
    type In = (EventTime, D);
    type Out = Fired<K, A::Output>;

    fn apply(&mut self, (ts, d): (EventTime, D), wm: i64, dirty: &mut DirtyGroups) {
        let key = (self.key)(&d);
        dirty.mark(&key);
        self.state.add(key, ts, wm, d);
    }

    fn fire(&mut self, wm: i64, out: &mut Vec<Self::Out>, dirty: &mut DirtyGroups) {
        self.state.advance(wm, &mut |w, k: &K, r| {
            dirty.mark(k);
            out.push(fired(w, k, r))
        });
    }

    fn snapshot(&self, include: &dyn Fn(u32) -> bool) -> riffle_core::Result<crate::checkpoint::Parts> {
        encode_parts(self.state.snapshot(KEY_GROUPS as usize, group_of, include))
    }

    fn restore(&mut self, parts: &RestoredParts<'_>, _out: &mut Vec<Self::Out>) -> riffle_core::Result<()> {
        // Sequencing is per key: a group resumes where its old worker was, with no catch-up.
        parts.decode("count window state", |_, part: CountPart<K, D>| {
            self.state.restore(part);
            Ok(())
        })
    }
}

pub(crate) fn count_window<'s, K: Key, D: Data, A>(
    keyed: KeyedStream<'s, K, D>,
    shape: CountWindows,
    agg: A,
) -> DataStream<'s, WindowResult<K, A::Output>>
where
    A: Aggregate<D>,
    A::Output: Data,
{
    let ctx = Arc::clone(&keyed.stream.ctx);
    let results = crate::epoch_op::keyed_epoch_operator(keyed, "CountWindow", |key| CountWindowOp {
        state: CountWindowState::new(shape, agg),
        key,
    });
    DataStream { stream: results, ctx }
}

/// A global-window count per key, held as the time window operator holds it but outside any
/// dataflow, snapshotted and restored by the operator's own checkpoint code paths: for tools
/// that write, read or time checkpoints of keyed window state without running a job (`riffle
/// bench checkpoint` times them). One worker owns every key group; records are their own keys
/// (the word count's shape).
#[doc(hidden)]
pub struct GlobalCountState<K: Key> {
    op: TimeWindowOp<K, K, riffle_core::aggregate::Count>,
    dirty: DirtyGroups,
}

impl<K: Key> Default for GlobalCountState<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Key> GlobalCountState<K> {
    /// The operator's worker and the number of workers: one worker owns every key group.
    const WORKERS: (usize, usize) = (0, 1);

    /// An empty state; its first snapshot is a full one.
    pub fn new() -> Self {
        use riffle_core::{aggregate::Count, window::Slicing};
        let op = TimeWindowOp {
            state: TimeState::Sliced(SlicedWindowState::new(Slicing::GLOBAL, 0, Count)),
            windows: TimeWindows::Sliced(Slicing::GLOBAL),
            lateness: 0,
            agg: Count,
        };
        GlobalCountState {
            op,
            dirty: DirtyGroups::new(true),
        }
    }

    /// Adds `count` to the count of `key`, as the operator applies an on-time partial
    /// aggregate from a combiner, and marks the key's group changed for the next snapshot.
    pub fn add(&mut self, key: K, count: u64) {
        let p = Partial {
            key,
            slot: riffle_core::window::Slicing::GLOBAL.pane_of(0),
            staged_at: None,
            acc: count,
        };
        self.op.apply(p, i64::MIN, &mut self.dirty);
    }

    /// The keys counted (the state's entries).
    pub fn len(&self) -> usize {
        match &self.op.state {
            TimeState::Sliced(st) => st.len(),
            TimeState::Session(st) => st.len(),
        }
    }

    /// Whether no key is counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the snapshot of `epoch` into `store` under the operator name `operator`, as the
    /// operator does when the frontier passes an epoch: every key group the first time (and
    /// periodically after that), otherwise only the groups changed since the last snapshot.
    /// The checkpoint is complete once the store writes its manifest (when its sinks, see
    /// `CheckpointStore::register_sink`, have all seen the epoch complete).
    pub fn snapshot(
        &mut self,
        store: &crate::checkpoint::CheckpointStore,
        epoch: u64,
        operator: &str,
    ) -> riffle_core::Result<()> {
        crate::epoch_op::take_snapshot(&self.op, store, epoch, operator, Self::WORKERS, &mut self.dirty)
    }

    /// The state restored from the parts of `operator` in the checkpoint `store` opened (empty
    /// if it restored none), as the operator restores at start-up.
    pub fn restore(store: &crate::checkpoint::CheckpointStore, operator: &str) -> riffle_core::Result<Self> {
        let mut state = Self::new();
        // Global windows fire only at the end of the input: a restore emits nothing.
        let mut fired = Vec::new();
        crate::epoch_op::restore_state(
            &mut state.op,
            &store.restored_parts(operator),
            Self::WORKERS,
            &mut fired,
        )?;
        Ok(state)
    }
}
