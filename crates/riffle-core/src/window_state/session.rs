//! The state machine of session windows: per key, sessions that merge as records arrive,
//! fired by timers as the watermark passes their ends (see the module docs for the
//! admission rules it relies on).

use std::collections::BTreeMap;
use std::hash::Hash;

use hashbrown::HashMap;

use super::StagedUpdates;
use crate::aggregate::Aggregate;
use crate::time::{EventTime, Watermark};
use crate::window::{SessionWindows, Window};

/// The part of a [`SessionWindowState`] that belongs to one key group, for checkpoints.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SessionPart<K, Acc> {
    /// The watermark the state had advanced to.
    pub watermark: Watermark,
    /// Each key's sessions.
    pub sessions: Vec<(K, Vec<Session<Acc>>)>,
    /// Staged updates by watermark.
    pub staged: StagedUpdates<K, Acc>,
}

/// One session of a key.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Session<Acc> {
    window: Window,
    acc: Acc,
    /// Whether the session changed since it last fired.
    dirty: bool,
    /// Whether the session has fired at least once.
    fired: bool,
}

/// Session windows per key, merging as records arrive, with staged late updates.
///
/// ```
/// use riffle_core::aggregate::Count;
/// use riffle_core::window::SessionWindows;
/// use riffle_core::window_state::SessionWindowState;
/// let mut s = SessionWindowState::<&str, (), Count>::new(SessionWindows::with_gap_millis(10).unwrap(), 0, Count);
/// s.add_on_time("a", 0, 1);
/// s.add_on_time("a", 25, 1);
/// s.add_on_time("a", 8, 1); // bridges nothing: [8,18) merges with [0,10) only
/// let mut out = vec![];
/// s.advance(i64::MAX, &mut |w, _k, n| out.push((w.start, w.end, n)));
/// out.sort();
/// assert_eq!(out, vec![(0, 18, 2), (25, 35, 1)]);
/// ```
pub struct SessionWindowState<K, D, A: Aggregate<D>> {
    gap: i64,
    lateness: i64,
    agg: A,
    sessions: HashMap<K, Vec<Session<A::Acc>>>,
    /// When a key needs a look: at the end of each session that has not fired (to fire it) and
    /// at the end + lateness of each that has (to drop it). Entries go stale when a session
    /// merges into a later one; looking then does nothing. The watermark visits only keys with
    /// something due, not every open session (q11 of Nexmark: a scan of all sessions per
    /// watermark step made the operator quadratic).
    timers: BTreeMap<EventTime, Vec<K>>,
    staged: BTreeMap<Watermark, Vec<(EventTime, K, A::Acc)>>,
    watermark: Watermark,
    _records: std::marker::PhantomData<fn(D)>,
}

impl<K: Hash + Eq + Clone, D, A: Aggregate<D>> SessionWindowState<K, D, A> {
    /// The state split by `group` (the key group of a key), for a checkpoint: the groups for
    /// which `include` holds, below `groups`, empty ones included.
    pub fn snapshot(
        &self,
        groups: usize,
        group: impl Fn(&K) -> u32,
        include: impl Fn(u32) -> bool,
    ) -> BTreeMap<u32, SessionPart<K, A::Acc>> {
        let watermark = self.watermark;
        let new_part = || SessionPart {
            watermark,
            sessions: Vec::new(),
            staged: Vec::new(),
        };
        let mut out: BTreeMap<u32, SessionPart<K, A::Acc>> = (0..groups as u32)
            .filter(|g| include(*g))
            .map(|g| (g, new_part()))
            .collect();
        for (k, list) in &self.sessions {
            if let Some(part) = out.get_mut(&group(k)) {
                part.sessions.push((k.clone(), list.clone()));
            }
        }
        for (&at, updates) in &self.staged {
            let mut by_group: BTreeMap<u32, Vec<(EventTime, K, A::Acc)>> = BTreeMap::new();
            for (ts, k, acc) in updates {
                by_group
                    .entry(group(k))
                    .or_default()
                    .push((*ts, k.clone(), acc.clone()));
            }
            for (g, entries) in by_group {
                if let Some(part) = out.get_mut(&g) {
                    part.staged.push((at, entries));
                }
            }
        }
        out
    }

    /// Adds a restored part and sets the watermark to the part's.
    pub fn restore(&mut self, part: SessionPart<K, A::Acc>) {
        self.watermark = part.watermark;
        for (k, list) in part.sessions {
            for s in &list {
                let due = if s.dirty {
                    s.window.end
                } else {
                    s.window.end.saturating_add(self.lateness)
                };
                self.timers.entry(due).or_default().push(k.clone());
            }
            self.sessions.insert(k, list);
        }
        for (at, updates) in part.staged {
            self.staged.entry(at).or_default().extend(updates);
        }
    }

    /// The watermark the state has advanced to.
    pub fn watermark(&self) -> Watermark {
        self.watermark
    }

    /// Moves `other`'s keys (disjoint from this state's) into this state.
    pub fn absorb(&mut self, other: Self) {
        self.sessions.extend(other.sessions);
        for (at, keys) in other.timers {
            self.timers.entry(at).or_default().extend(keys);
        }
        for (at, updates) in other.staged {
            self.staged.entry(at).or_default().extend(updates);
        }
    }

    /// Empty state for `sessions`, keeping sessions `lateness` ms after they fire.
    pub fn new(sessions: SessionWindows, lateness: i64, agg: A) -> Self {
        SessionWindowState {
            gap: sessions.gap,
            lateness,
            agg,
            sessions: HashMap::new(),
            timers: BTreeMap::new(),
            staged: BTreeMap::new(),
            watermark: i64::MIN,
            _records: std::marker::PhantomData,
        }
    }

    /// Adds the partial aggregate of a record at `ts` (an on-time record).
    pub fn add_on_time(&mut self, key: K, ts: EventTime, acc: A::Acc) {
        let window = Window {
            start: ts,
            end: ts.saturating_add(self.gap),
        };
        self.merge_in(key, window, acc);
    }

    /// Adds the partial aggregate of a session already merged elsewhere (pre-aggregation).
    pub fn add_session(&mut self, key: K, window: Window, acc: A::Acc) {
        self.merge_in(key, window, acc);
    }

    /// Stages a record behind the watermark `at` until the watermark passes `at`.
    pub fn stage(&mut self, at: Watermark, key: K, ts: EventTime, acc: A::Acc) {
        self.staged.entry(at).or_default().push((ts, key, acc));
    }

    /// Number of sessions and staged updates held.
    pub fn len(&self) -> usize {
        self.sessions.values().map(|v| v.len()).sum::<usize>() + self.staged.values().map(|s| s.len()).sum::<usize>()
    }

    /// Whether no state is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn merge_in(&mut self, key: K, window: Window, acc: A::Acc) -> Window {
        let list = match self.sessions.get_mut(&key) {
            Some(list) => list,
            None => self.sessions.entry(key.clone()).or_default(),
        };
        let mut merged = Session {
            window,
            acc,
            dirty: true,
            fired: false,
        };
        let mut i = 0;
        while i < list.len() {
            let w = list[i].window;
            // Flink's TimeWindow::intersects: touching windows merge too.
            if w.start <= merged.window.end && merged.window.start <= w.end {
                let s = list.swap_remove(i);
                merged.window = Window {
                    start: w.start.min(merged.window.start),
                    end: w.end.max(merged.window.end),
                };
                self.agg.merge(&mut merged.acc, s.acc);
                merged.fired |= s.fired;
            } else {
                i += 1;
            }
        }
        let w = merged.window;
        list.push(merged);
        self.timers.entry(w.end).or_default().push(key);
        w
    }

    /// Advances the watermark to `wm`, firing sessions that ended and applying staged
    /// records in watermark order; see the module docs.
    pub fn advance(&mut self, wm: Watermark, emit: &mut dyn FnMut(Window, &K, A::Output)) {
        if wm <= self.watermark && self.staged.range(..wm).next().is_none() {
            return;
        }
        while let Some(entry) = self.staged.first_entry() {
            if *entry.key() >= wm {
                break;
            }
            let (at, updates) = entry.remove_entry();
            self.fire_and_clean(at, emit);
            for (ts, key, acc) in updates {
                self.add_on_time(key, ts, acc);
            }
            // Sessions that end at or before `at` and changed fire now, as late updates.
            self.fire_and_clean(at, emit);
        }
        self.fire_and_clean(wm, emit);
        self.watermark = self.watermark.max(wm);
    }

    fn fire_and_clean(&mut self, wm: Watermark, emit: &mut dyn FnMut(Window, &K, A::Output)) {
        let lateness = self.lateness;
        let agg = &self.agg;
        let due = match wm.checked_add(1) {
            Some(after) => {
                let later = self.timers.split_off(&after);
                std::mem::replace(&mut self.timers, later)
            }
            None => std::mem::take(&mut self.timers),
        };
        let mut dropped_later: Vec<(EventTime, K)> = Vec::new();
        for key in due.into_values().flatten() {
            let Some(list) = self.sessions.get_mut(&key) else {
                continue;
            };
            list.retain_mut(|s| {
                if s.window.end <= wm && s.dirty {
                    emit(s.window, &key, agg.result(&s.acc));
                    s.dirty = false;
                    s.fired = true;
                    if lateness > 0 {
                        dropped_later.push((s.window.end.saturating_add(lateness), key.clone()));
                    }
                }
                s.window.end.saturating_add(lateness) > wm
            });
            if list.is_empty() {
                self.sessions.remove(&key);
            }
        }
        for (at, key) in dropped_later {
            self.timers.entry(at).or_default().push(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Count;
    use proptest::prelude::*;

    proptest! {
        /// Sessions: the merged sessions are the connected components, whatever the insertion order.
        #[test]
        fn sessions_are_components_in_any_order(mut ts in proptest::collection::vec(0i64..300, 1..60), gap in 1i64..30, seed in any::<u64>()) {
            let mut sorted = ts.clone();
            sorted.sort();
            let mut expect = vec![];
            let (mut start, mut end, mut n) = (sorted[0], sorted[0] + gap, 0u64);
            for t in &sorted {
                if *t <= end { end = end.max(t + gap); n += 1; } else { expect.push((start, end, n)); start = *t; end = t + gap; n = 1; }
            }
            expect.push((start, end, n));
            // deterministic shuffle
            let mut x = seed;
            for i in (1..ts.len()).rev() { x = x.wrapping_mul(6364136223846793005).wrapping_add(1); ts.swap(i, (x >> 33) as usize % (i + 1)); }
            let mut st = SessionWindowState::<u8, (), Count>::new(SessionWindows::with_gap_millis(gap).unwrap(), 0, Count);
            for t in ts { st.add_on_time(0, t, 1); }
            let mut got = vec![];
            st.advance(i64::MAX, &mut |w, _, n| got.push((w.start, w.end, n)));
            got.sort();
            prop_assert_eq!(got, expect);
        }
    }

    #[test]
    fn session_late_record_bridges_and_refires() {
        let mut s =
            SessionWindowState::<&str, (), Count>::new(SessionWindows::with_gap_millis(10).unwrap(), 100, Count);
        s.add_on_time("a", 0, 1);
        s.add_on_time("a", 25, 1);
        let mut out = vec![];
        s.advance(40, &mut |w, _, n| out.push((w.start, w.end, n)));
        out.sort();
        assert_eq!(out, vec![(0, 10, 1), (25, 35, 1)]);
        s.stage(40, "a", 12, 1); // [12,22) touches neither...
        s.stage(40, "a", 10, 1); // [10,20) touches [0,10) and [12,22)
        out.clear();
        s.advance(41, &mut |w, _, n| out.push((w.start, w.end, n)));
        assert_eq!(out, vec![(0, 22, 3)]);
    }
}
