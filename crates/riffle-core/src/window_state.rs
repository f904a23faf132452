//! The state machines of the keyed time-window operators, free of any execution engine.
//!
//! # Semantics
//!
//! Each record reaches the window operator with the watermark `W` its source had emitted
//! before it (the time of the message that carries it). Relative to that watermark a record
//! is one of ([`Admission`]):
//!
//! * **on time**: none of its windows can have fired yet. It is added to its pane at once.
//! * **staged**: behind the watermark, but at least one of its windows is still within the
//!   allowed lateness (`window.end + lateness > W`). It is applied *in event order*: once
//!   every worker's watermark has passed `W`, after the windows ending at or before `W` fired.
//!   Each window it joins whose end is at or before `W` fires again with its updated
//!   result (Flink's default trigger does the same for late elements); windows still open
//!   simply include it when they fire.
//! * **late**: every window it belongs to is past its allowed lateness. It is not added; the
//!   runtime counts it and sends it to the late-data output.
//!
//! Because the admission of a record depends only on its event time and on the watermark of
//! its own source (not on how far other workers have got) and staged records are applied in
//! watermark order, the output is the same for any number of workers.
//!
//! Session windows follow Flink: each record opens `[ts, ts + gap)`, and windows that
//! intersect or touch merge. A session record is on time only when `ts > W` (it cannot touch
//! a session that already fired); it is late when its own window `[ts, ts + gap)` is past the
//! allowed lateness, even if it would have merged into a session that is not (Flink would
//! admit it there; Riffle decides without looking at state, which keeps the decision
//! independent of timing).
//!
//! State of a window is kept until the watermark passes `end + lateness`, then dropped.

use std::collections::BTreeMap;
use std::hash::Hash;

use hashbrown::HashMap;

use crate::aggregate::Aggregate;
use crate::time::{EventTime, Watermark};
use crate::window::{SessionWindows, Slicing, Window};

/// What happens to a record relative to the watermark it arrived with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Added to its pane at once.
    OnTime,
    /// Applied once the watermark has passed the record's arrival watermark.
    Staged,
    /// Not added: every window it belongs to is past its allowed lateness.
    Late,
}

/// Admission of a record at `ts`, arriving with watermark `wm`, into sliced windows.
///
/// ```
/// use riffle_core::window::{TimeWindows, TumblingWindows};
/// use riffle_core::window_state::{admit_sliced, Admission};
/// let TimeWindows::Sliced(s) = TumblingWindows::of_millis(10).unwrap().into() else { unreachable!() };
/// assert_eq!(admit_sliced(&s, 12, 15, 5), Admission::OnTime);  // [10,20) still open
/// assert_eq!(admit_sliced(&s, 5, 12, 5), Admission::Staged);   // [0,10) fired, within lateness
/// assert_eq!(admit_sliced(&s, 5, 15, 5), Admission::Late);     // [0,10) + 5 <= 15
/// ```
#[inline]
pub fn admit_sliced(slicing: &Slicing, ts: EventTime, wm: Watermark, lateness: i64) -> Admission {
    let pane = slicing.pane_of(ts);
    if slicing.first_window_end(pane) > wm {
        Admission::OnTime
    } else if slicing.last_window_end(pane).saturating_add(lateness) > wm {
        Admission::Staged
    } else {
        Admission::Late
    }
}

/// Admission of a record at `ts`, arriving with watermark `wm`, into session windows.
#[inline]
pub fn admit_session(sessions: &SessionWindows, ts: EventTime, wm: Watermark, lateness: i64) -> Admission {
    if ts > wm {
        Admission::OnTime
    } else if ts.saturating_add(sessions.gap).saturating_add(lateness) > wm {
        Admission::Staged
    } else {
        Admission::Late
    }
}

/// Partial aggregates of tumbling, sliding or global windows, per pane and key, with staged
/// late updates, fired as the watermark advances.
///
/// ```
/// use riffle_core::aggregate::Count;
/// use riffle_core::window::{TimeWindows, TumblingWindows};
/// use riffle_core::window_state::SlicedWindowState;
/// let TimeWindows::Sliced(s) = TumblingWindows::of_millis(10).unwrap().into() else { unreachable!() };
/// let mut state = SlicedWindowState::<&str, (), Count>::new(s, 0, Count);
/// state.add_on_time(0, "a", 2);
/// state.add_on_time(10, "a", 1);
/// let mut out = vec![];
/// state.advance(10, &mut |w, k, n| out.push((w.start, *k, n)));
/// assert_eq!(out, vec![(0, "a", 2)]);
/// ```
pub struct SlicedWindowState<K, D, A: Aggregate<D>> {
    slicing: Slicing,
    lateness: i64,
    agg: A,
    panes: BTreeMap<EventTime, HashMap<K, A::Acc>>,
    staged: BTreeMap<Watermark, Vec<(EventTime, K, A::Acc)>>,
    fired_up_to: Watermark,
    _records: std::marker::PhantomData<fn(D)>,
}

/// Staged updates (slot, key, partial aggregate) by the watermark they arrived with.
pub type StagedUpdates<K, Acc> = Vec<(Watermark, Vec<(EventTime, K, Acc)>)>;

/// The part of a [`SlicedWindowState`] that belongs to one key group, for checkpoints.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SlicedPart<K, Acc> {
    /// The watermark the state had fired up to.
    pub fired_up_to: Watermark,
    /// Per pane, the keys' partial aggregates.
    pub panes: Vec<(EventTime, Vec<(K, Acc)>)>,
    /// Staged updates by watermark.
    pub staged: StagedUpdates<K, Acc>,
}

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

impl<K: Hash + Eq + Clone, D, A: Aggregate<D>> SlicedWindowState<K, D, A> {
    /// The state split by `group` (the key group of a key, below `groups`), for a checkpoint:
    /// each group for which `include` holds is encoded with `encode`, even if it is empty (so
    /// that it replaces an older part of an incremental chain).
    ///
    /// Parts hold copies of the entries, made in one pass over each pane in memory order:
    /// parts that borrowed the entries (one pointer each) were encoded group by group, and
    /// each group's pass over the pane touched one entry in 128 across the whole map, a cache
    /// miss per entry; at 31 M keys that took two thirds of the snapshot.
    pub fn snapshot<E>(
        &self,
        groups: usize,
        group: impl Fn(&K) -> u32,
        include: impl Fn(u32) -> bool,
        mut encode: impl FnMut(u32, &SlicedPart<K, A::Acc>) -> Result<(), E>,
    ) -> Result<(), E> {
        let new_part = || SlicedPart {
            fired_up_to: self.fired_up_to,
            panes: Vec::new(),
            staged: Vec::new(),
        };
        let mut parts: Vec<SlicedPart<K, A::Acc>> = (0..groups).map(|_| new_part()).collect();
        let wanted: Vec<bool> = (0..groups as u32).map(&include).collect();
        for (&pane, keys) in &self.panes {
            let mut by_group: Vec<Vec<(K, A::Acc)>> = vec![Vec::new(); groups];
            for (k, acc) in keys {
                let g = group(k) as usize % groups;
                if wanted[g] {
                    by_group[g].push((k.clone(), acc.clone()));
                }
            }
            for (g, entries) in by_group.into_iter().enumerate() {
                if !entries.is_empty() {
                    parts[g].panes.push((pane, entries));
                }
            }
        }
        for (&at, updates) in &self.staged {
            let mut by_group: Vec<Vec<(EventTime, K, A::Acc)>> = vec![Vec::new(); groups];
            for (pane, k, acc) in updates {
                let g = group(k) as usize % groups;
                if wanted[g] {
                    by_group[g].push((*pane, k.clone(), acc.clone()));
                }
            }
            for (g, entries) in by_group.into_iter().enumerate() {
                if !entries.is_empty() {
                    parts[g].staged.push((at, entries));
                }
            }
        }
        for (g, part) in parts.into_iter().enumerate() {
            if wanted[g] {
                encode(g as u32, &part)?;
            }
        }
        Ok(())
    }

    /// Adds a restored part (of a key group this state did not hold) and sets the fired
    /// watermark to the part's.
    pub fn restore(&mut self, part: SlicedPart<K, A::Acc>) {
        self.restore_all(vec![part]);
    }

    /// Restores several parts at once: each pane's map is sized once for all of them (growing
    /// it part by part rehashed every entry several times: a fifth of the restore time).
    pub fn restore_all(&mut self, parts: Vec<SlicedPart<K, A::Acc>>) {
        let mut sizes: BTreeMap<EventTime, usize> = BTreeMap::new();
        for part in &parts {
            for (pane, entries) in &part.panes {
                *sizes.entry(*pane).or_default() += entries.len();
            }
        }
        for (pane, n) in sizes {
            self.panes.entry(pane).or_default().reserve(n);
        }
        for part in parts {
            self.fired_up_to = part.fired_up_to;
            for (pane, entries) in part.panes {
                self.panes.entry(pane).or_default().extend(entries);
            }
            for (at, updates) in part.staged {
                self.staged.entry(at).or_default().extend(updates);
            }
        }
    }

    /// The watermark the state has fired up to.
    pub fn fired_up_to(&self) -> Watermark {
        self.fired_up_to
    }

    /// Moves `other`'s keys (disjoint from this state's) into this state, which keeps its
    /// fired watermark.
    pub fn absorb(&mut self, other: Self) {
        for (pane, entries) in other.panes {
            match self.panes.get_mut(&pane) {
                Some(map) if !map.is_empty() => map.extend(entries),
                _ => {
                    self.panes.insert(pane, entries);
                }
            }
        }
        for (at, updates) in other.staged {
            self.staged.entry(at).or_default().extend(updates);
        }
    }

    /// Empty state for windows cut by `slicing`, keeping windows `lateness` ms after they fire.
    pub fn new(slicing: Slicing, lateness: i64, agg: A) -> Self {
        SlicedWindowState {
            slicing,
            lateness,
            agg,
            panes: BTreeMap::new(),
            staged: BTreeMap::new(),
            fired_up_to: i64::MIN,
            _records: std::marker::PhantomData,
        }
    }

    /// Merges an on-time partial aggregate into pane `pane` (a pane start).
    pub fn add_on_time(&mut self, pane: EventTime, key: K, acc: A::Acc) {
        let keys = self.panes.entry(pane).or_default();
        match keys.get_mut(&key) {
            Some(a) => self.agg.merge(a, acc),
            None => {
                keys.insert(key, acc);
            }
        }
    }

    /// Stages a partial aggregate of records behind the watermark `at` until the watermark
    /// passes `at`.
    pub fn stage(&mut self, at: Watermark, pane: EventTime, key: K, acc: A::Acc) {
        self.staged.entry(at).or_default().push((pane, key, acc));
    }

    /// Number of (pane, key) entries and staged updates held: the state size.
    pub fn len(&self) -> usize {
        self.panes.values().map(|p| p.len()).sum::<usize>() + self.staged.values().map(|s| s.len()).sum::<usize>()
    }

    /// Whether no state is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Advances the watermark to `wm`: fires every window ending at or before `wm`, applies
    /// staged updates in watermark order (re-firing the windows they change) and drops state
    /// past its allowed lateness. `emit` receives each fired window, key and result.
    pub fn advance(&mut self, wm: Watermark, emit: &mut dyn FnMut(Window, &K, A::Output)) {
        if wm <= self.fired_up_to && self.staged.range(..wm).next().is_none() {
            return;
        }
        while let Some(entry) = self.staged.first_entry() {
            if *entry.key() >= wm {
                break;
            }
            let (at, updates) = entry.remove_entry();
            self.fire_until(at, emit);
            self.cleanup(at);
            self.apply_staged(at, updates, emit);
        }
        self.fire_until(wm, emit);
        self.cleanup(wm);
    }

    fn window_result(&self, window: Window, key: &K) -> Option<A::Output> {
        let mut acc: Option<A::Acc> = None;
        for pane in self.slicing.panes_of_window(window) {
            if let Some(a) = self.panes.get(&pane).and_then(|p| p.get(key)) {
                match acc.as_mut() {
                    None => acc = Some(a.clone()),
                    Some(x) => self.agg.merge(x, a.clone()),
                }
            }
        }
        acc.map(|a| self.agg.result(&a))
    }

    fn apply_staged(
        &mut self,
        at: Watermark,
        updates: Vec<(EventTime, K, A::Acc)>,
        emit: &mut dyn FnMut(Window, &K, A::Output),
    ) {
        let mut refire: Vec<(Window, K)> = Vec::new();
        for (pane, key, acc) in updates {
            let (slicing, lateness) = (self.slicing, self.lateness);
            slicing.windows_of_pane(pane, &mut |w| {
                if w.end <= at && w.end.saturating_add(lateness) > at {
                    refire.push((w, key.clone()));
                }
            });
            self.add_on_time(pane, key, acc);
        }
        refire.sort_by_key(|r| r.0);
        let mut seen: hashbrown::HashSet<(Window, K)> = hashbrown::HashSet::new();
        for (w, k) in refire {
            if seen.insert((w, k.clone())) {
                if let Some(r) = self.window_result(w, &k) {
                    emit(w, &k, r);
                }
            }
        }
    }

    fn fire_until(&mut self, wm: Watermark, emit: &mut dyn FnMut(Window, &K, A::Output)) {
        if wm <= self.fired_up_to {
            return;
        }
        let from = self.fired_up_to;
        let mut windows = std::collections::BTreeSet::new();
        let lowest_pane = if self.slicing.is_global() {
            i64::MIN
        } else {
            from.saturating_sub(self.slicing.size)
        };
        for (&pane, _) in self.panes.range(lowest_pane..) {
            if pane >= wm {
                break;
            }
            self.slicing.windows_of_pane(pane, &mut |w| {
                if w.end > from && w.end <= wm {
                    windows.insert((w.end, w.start));
                }
            });
        }
        for (end, start) in windows {
            let window = Window { start, end };
            if self.slicing.pane == self.slicing.size || self.slicing.is_global() {
                // One pane per window: emit its entries directly.
                let pane = if self.slicing.is_global() { i64::MIN } else { start };
                if let Some(keys) = self.panes.get(&pane) {
                    for (k, acc) in keys {
                        emit(window, k, self.agg.result(acc));
                    }
                }
            } else {
                let mut merged: HashMap<&K, A::Acc> = HashMap::new();
                for pane in self.slicing.panes_of_window(window) {
                    if let Some(keys) = self.panes.get(&pane) {
                        for (k, acc) in keys {
                            match merged.get_mut(k) {
                                Some(m) => self.agg.merge(m, acc.clone()),
                                None => {
                                    merged.insert(k, acc.clone());
                                }
                            }
                        }
                    }
                }
                for (k, acc) in merged {
                    emit(window, k, self.agg.result(&acc));
                }
            }
        }
        self.fired_up_to = wm;
    }

    fn cleanup(&mut self, wm: Watermark) {
        let (slicing, lateness) = (self.slicing, self.lateness);
        while let Some(entry) = self.panes.first_entry() {
            if slicing.last_window_end(*entry.key()).saturating_add(lateness) <= wm {
                entry.remove();
            } else {
                break;
            }
        }
    }
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
        /// Incremental (advance in random steps) equals batch (count per window) for on-time data.
        #[test]
        fn sliced_incremental_equals_batch(
            records in proptest::collection::vec((0i64..200, 0u8..4), 0..100),
            size in 1i64..40, slide_div in 1i64..5, steps in proptest::collection::vec(0i64..60, 0..8),
        ) {
            let slide = (size / slide_div).max(1);
            let assigner = SlidingWindows::of_millis(size, slide).unwrap();
            let s = sliced(size, slide);
            let mut st = SlicedWindowState::<u8, (), Count>::new(s, 0, Count);
            for (ts, k) in &records {
                st.add_on_time(s.pane_of(*ts), *k, 1);
            }
            let mut got = vec![];
            let mut wm = i64::MIN;
            for step in steps {
                wm = if wm == i64::MIN { step } else { wm + step };
                st.advance(wm, &mut |w, k, n| got.push((w, *k, n)));
            }
            st.advance(i64::MAX, &mut |w, k, n| got.push((w, *k, n)));
            got.sort();
            let mut batch: std::collections::BTreeMap<(Window, u8), u64> = Default::default();
            for (ts, k) in &records {
                assigner.assign(*ts, &mut |w| *batch.entry((w, *k)).or_default() += 1).unwrap();
            }
            let expect: Vec<_> = batch.into_iter().map(|((w, k), n)| (w, k, n)).collect();
            prop_assert_eq!(got, expect);
            prop_assert!(st.is_empty());
        }

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
    use crate::window::{SlidingWindows, TimeWindows, TumblingWindows, WindowAssigner};

    fn sliced(size: i64, slide: i64) -> Slicing {
        match TimeWindows::from(SlidingWindows::of_millis(size, slide).unwrap()) {
            TimeWindows::Sliced(s) => s,
            TimeWindows::Session(_) => unreachable!(),
        }
    }

    #[test]
    fn tumbling_fires_at_end_and_late_update_refires() {
        let TimeWindows::Sliced(s) = TumblingWindows::of_millis(10).unwrap().into() else {
            unreachable!()
        };
        let mut st = SlicedWindowState::<&str, (), Count>::new(s, 5, Count);
        st.add_on_time(0, "a", 1);
        let mut out = vec![];
        st.advance(9, &mut |w, k, n| out.push((w, *k, n)));
        assert!(out.is_empty());
        st.advance(10, &mut |w, k, n| out.push((w, *k, n)));
        assert_eq!(out, vec![(Window { start: 0, end: 10 }, "a", 1)]);
        // A late record arriving with watermark 12 (within lateness 5) re-fires [0,10).
        st.stage(12, 0, "a", 1);
        out.clear();
        st.advance(12, &mut |w, k, n| out.push((w, *k, n)));
        assert!(out.is_empty(), "staged until the watermark passes 12");
        st.advance(13, &mut |w, k, n| out.push((w, *k, n)));
        assert_eq!(out, vec![(Window { start: 0, end: 10 }, "a", 2)]);
        st.advance(15, &mut |_, _, _| {});
        assert!(st.is_empty(), "state is dropped at end + lateness");
    }

    #[test]
    fn sliding_merges_panes() {
        let s = sliced(10, 5);
        let mut st = SlicedWindowState::<u8, (), Count>::new(s, 0, Count);
        st.add_on_time(0, 1, 1);
        st.add_on_time(5, 1, 2);
        st.add_on_time(10, 1, 4);
        let mut out = vec![];
        st.advance(i64::MAX, &mut |w, _, n| out.push((w.start, w.end, n)));
        out.sort();
        assert_eq!(out, vec![(-5, 5, 1), (0, 10, 3), (5, 15, 6), (10, 20, 4)]);
        assert!(st.is_empty());
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
