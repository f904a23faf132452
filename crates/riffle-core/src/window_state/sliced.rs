//! The state machine of tumbling, sliding and global windows: partial aggregates per pane
//! and key, combined into windows when the watermark fires them (see the module docs for
//! the admission rules it relies on).

use std::collections::BTreeMap;
use std::hash::Hash;

use hashbrown::HashMap;

use super::StagedUpdates;
use crate::aggregate::Aggregate;
use crate::time::{EventTime, Watermark};
use crate::window::{Slicing, Window};

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
}
