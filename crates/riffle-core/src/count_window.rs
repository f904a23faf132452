//! Count windows: windows of a fixed number of records per key.
//!
//! Flink's count windows take records in arrival order, which changes with the number of
//! workers. Riffle takes them in a deterministic order instead: a record is *sequenced* at
//! `max(ts, W)`, its event time or, if it arrived behind the watermark `W`, the watermark it
//! arrived with, and records of a key are numbered in order of `(sequence time, event time)`
//! once the watermark has passed their sequence time. Records equal in both keep their
//! arrival order (this only matters when they differ in value and a window boundary falls
//! between them).
//!
//! * Tumbling (`size`): fires every `size` records of a key with those records; an
//!   incomplete last window never fires (as Flink's `countWindow(size)`).
//! * Sliding (`size`, `slide`): fires every `slide` records with the last `size` records
//!   (fewer at the start), as Flink's `countWindow(size, slide)`.
//!
//! The window reported for a count window spans the event times of its records:
//! `[first ts, last ts + 1)`.

use std::collections::VecDeque;
use std::hash::Hash;

use hashbrown::HashMap;

use crate::aggregate::Aggregate;
use crate::time::{EventTime, Watermark};
use crate::window::Window;

/// The shape of a count window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CountWindows {
    /// Records per window.
    pub size: u64,
    /// Records between firings (`size` for tumbling).
    pub slide: u64,
}

impl CountWindows {
    /// Tumbling count windows of `size` records.
    pub fn tumbling(size: u64) -> crate::Result<Self> {
        Self::sliding(size, size)
    }

    /// Sliding count windows of `size` records, firing every `slide` records.
    pub fn sliding(size: u64, slide: u64) -> crate::Result<Self> {
        if size == 0 || slide == 0 || slide > size {
            return Err(crate::Error::Config(format!(
                "count window needs 0 < slide <= size, got size {size} slide {slide}"
            )));
        }
        Ok(CountWindows { size, slide })
    }
}

struct KeySequence<D> {
    /// The last `size` records (event time, record), oldest first.
    recent: VecDeque<(EventTime, D)>,
    /// Records since the last firing.
    since_fire: u64,
}

/// Count windows per key.
///
/// ```
/// use riffle_core::aggregate::Count;
/// use riffle_core::count_window::{CountWindowState, CountWindows};
/// let mut st = CountWindowState::<&str, u8, Count>::new(CountWindows::tumbling(2).unwrap(), Count);
/// for (ts, v) in [(3, 1u8), (1, 2), (2, 3)] {
///     st.add("k", ts, i64::MIN, v);
/// }
/// let mut out = vec![];
/// st.advance(i64::MAX, &mut |w, _k, n| out.push((w.start, w.end, n)));
/// assert_eq!(out, vec![(1, 3, 2)]); // records at 1 and 2; the one at 3 waits for a partner
/// ```
pub struct CountWindowState<K, D, A: Aggregate<D>> {
    shape: CountWindows,
    agg: A,
    pending: Vec<(EventTime, EventTime, K, D)>,
    keys: HashMap<K, KeySequence<D>>,
}

/// A key's open count windows: its last records and the records since its last firing.
pub type KeyRecords<K, D> = (K, Vec<(EventTime, D)>, u64);

/// The part of a [`CountWindowState`] that belongs to one key group, for checkpoints.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CountPart<K, D> {
    /// Records not yet sequenced: (sequence time, event time, key, record).
    pub pending: Vec<(EventTime, EventTime, K, D)>,
    /// Per key: the last records of its open windows and the records since its last firing.
    pub keys: Vec<KeyRecords<K, D>>,
}

impl<K: Hash + Eq + Clone, D: Clone, A: Aggregate<D>> CountWindowState<K, D, A> {
    /// The state of the groups for which `include` holds (`group` gives a key's group, below
    /// `groups`), empty ones included, for a checkpoint.
    pub fn snapshot(
        &self,
        groups: usize,
        group: impl Fn(&K) -> u32,
        include: impl Fn(u32) -> bool,
    ) -> std::collections::BTreeMap<u32, CountPart<K, D>> {
        let mut out: std::collections::BTreeMap<u32, CountPart<K, D>> = (0..groups as u32)
            .filter(|g| include(*g))
            .map(|g| {
                (
                    g,
                    CountPart {
                        pending: Vec::new(),
                        keys: Vec::new(),
                    },
                )
            })
            .collect();
        for (seq, ts, k, d) in &self.pending {
            if let Some(part) = out.get_mut(&group(k)) {
                part.pending.push((*seq, *ts, k.clone(), d.clone()));
            }
        }
        for (k, s) in &self.keys {
            if let Some(part) = out.get_mut(&group(k)) {
                part.keys
                    .push((k.clone(), s.recent.iter().cloned().collect(), s.since_fire));
            }
        }
        out
    }

    /// Adds a restored part (of key groups this state does not hold).
    pub fn restore(&mut self, part: CountPart<K, D>) {
        self.pending.extend(part.pending);
        for (k, recent, since_fire) in part.keys {
            self.keys.insert(
                k,
                KeySequence {
                    recent: recent.into_iter().collect(),
                    since_fire,
                },
            );
        }
    }

    /// Empty state.
    pub fn new(shape: CountWindows, agg: A) -> Self {
        CountWindowState {
            shape,
            agg,
            pending: Vec::new(),
            keys: HashMap::new(),
        }
    }

    /// Adds a record at `ts` that arrived with watermark `wm`.
    pub fn add(&mut self, key: K, ts: EventTime, wm: Watermark, record: D) {
        self.pending.push((ts.max(wm), ts, key, record));
    }

    /// Records held (pending and in open windows).
    pub fn len(&self) -> usize {
        self.pending.len() + self.keys.values().map(|k| k.recent.len()).sum::<usize>()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequences every pending record whose sequence time is below `wm` and fires the
    /// windows they complete.
    pub fn advance(&mut self, wm: Watermark, emit: &mut dyn FnMut(Window, &K, A::Output)) {
        if self.pending.is_empty() {
            return;
        }
        // At the end of the input (`WATERMARK_MAX`) every record is sequenced, also one whose
        // sequence time is `i64::MAX` itself and so never below a watermark.
        let end = wm == crate::time::WATERMARK_MAX;
        let (mut ready, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|r| end || r.0 < wm);
        self.pending = rest;
        // Stable: equal (sequence, ts) keep their arrival order.
        ready.sort_by_key(|r| (r.0, r.1));
        let shape = self.shape;
        for (_, ts, key, record) in ready {
            let seq = self.keys.entry(key.clone()).or_insert_with(|| KeySequence {
                recent: VecDeque::new(),
                since_fire: 0,
            });
            seq.recent.push_back((ts, record));
            if seq.recent.len() as u64 > shape.size {
                seq.recent.pop_front();
            }
            seq.since_fire += 1;
            if seq.since_fire == shape.slide {
                seq.since_fire = 0;
                let mut acc = self.agg.create();
                let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                for (t, r) in &seq.recent {
                    lo = lo.min(*t);
                    hi = hi.max(*t);
                    self.agg.add(&mut acc, r.clone());
                }
                if shape.slide == shape.size {
                    seq.recent.clear();
                }
                emit(
                    Window {
                        start: lo,
                        end: hi.saturating_add(1),
                    },
                    &key,
                    self.agg.result(&acc),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Sum;

    #[test]
    fn sliding_count_fires_every_slide_with_last_size() {
        let mut st = CountWindowState::<u8, i64, _>::new(CountWindows::sliding(3, 2).unwrap(), Sum::new(|x: &i64| *x));
        for i in 1..=7 {
            st.add(0, i, i64::MIN, i);
        }
        let mut out = vec![];
        st.advance(i64::MAX, &mut |_, _, n| out.push(n));
        // fires after records 2, 4, 6 with the last three (or fewer).
        assert_eq!(out, vec![1 + 2, 2 + 3 + 4, 4 + 5 + 6]);
    }

    #[test]
    fn records_at_the_end_of_time_fire_when_the_input_ends() {
        let mut st = CountWindowState::<u8, i64, _>::new(CountWindows::tumbling(1).unwrap(), Sum::new(|x: &i64| *x));
        st.add(0, i64::MAX, i64::MIN, 7);
        st.add(0, i64::MIN, i64::MIN, 1);
        let mut out = vec![];
        st.advance(i64::MAX, &mut |w, _, n| out.push((w.start, n)));
        assert_eq!(out, vec![(i64::MIN, 1), (i64::MAX, 7)]);
    }

    #[test]
    fn late_records_are_sequenced_at_their_watermark() {
        let mut st = CountWindowState::<u8, i64, _>::new(CountWindows::tumbling(2).unwrap(), Sum::new(|x: &i64| *x));
        st.add(0, 10, 0, 1);
        st.add(0, 1, 20, 100); // arrived behind watermark 20: sequenced at 20, after ts 10 and 15
        st.add(0, 15, 0, 10);
        let mut out = vec![];
        st.advance(i64::MAX, &mut |w, _, n| out.push((w, n)));
        assert_eq!(out, vec![(Window { start: 10, end: 16 }, 11)]);
    }
}
