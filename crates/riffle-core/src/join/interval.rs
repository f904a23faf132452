//! Interval join: `left.ts + lower ≤ right.ts ≤ left.ts + upper`, as a symmetric hash join.
//!
//! Each record probes the other side's state for its key and is then stored in its own side's
//! state, so the order in which the two sides arrive does not matter. A stored left record
//! can only match right records up to `ts + upper`; once the right input's watermark passes
//! that, no on-time right record can match it and it is evicted (emitted unmatched first in a
//! left or full join). Symmetrically a right record is evicted once the left watermark passes
//! `ts − lower`. State therefore holds about `rate × (upper − lower + out-of-orderness)` rows.
//!
//! Each side's records of a key are kept sorted by event time, so a probe is a binary search
//! and a range scan, and eviction drains a prefix.
//!
//! ```
//! use riffle_core::join::{IntervalBounds, IntervalJoinState, JoinKind};
//! let mut j = IntervalJoinState::<&str, &str, &str>::new(IntervalBounds::new(-5, 10).unwrap(), JoinKind::Left);
//! let mut out = vec![];
//! j.insert_left("k", 100, "a", &mut |_, ts, l, r| out.push((ts, l.copied(), r.copied())));
//! j.insert_right("k", 108, "b", &mut |_, ts, l, r| out.push((ts, l.copied(), r.copied())));
//! j.insert_left("k", 200, "c", &mut |_, ts, l, r| out.push((ts, l.copied(), r.copied())));
//! j.advance(i64::MAX, i64::MAX, &mut |_, ts, l, r| out.push((ts, l.copied(), r.copied())));
//! assert_eq!(out, vec![(108, Some("a"), Some("b")), (200, Some("c"), None)]);
//! ```

use std::collections::BTreeMap;
use std::hash::Hash;

use hashbrown::HashMap;

use super::JoinKind;
use crate::key_group::{filled_slots, group_slots, slot_of, GroupedState, KeyGroup};
use crate::time::{EventTime, Watermark};

/// The bounds of an interval join: `left.ts + lower ≤ right.ts ≤ left.ts + upper`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IntervalBounds {
    /// Lower bound (ms, may be negative).
    pub lower: i64,
    /// Upper bound (ms, ≥ lower).
    pub upper: i64,
}

impl IntervalBounds {
    /// Bounds `lower ≤ upper`.
    pub fn new(lower: i64, upper: i64) -> crate::Result<Self> {
        if lower > upper {
            return Err(crate::Error::Config(format!(
                "interval join needs lower <= upper, got {lower} and {upper}"
            )));
        }
        Ok(IntervalBounds { lower, upper })
    }

    /// Whether a left record at `l` and a right record at `r` join.
    #[inline]
    pub fn matches(&self, l: EventTime, r: EventTime) -> bool {
        l.saturating_add(self.lower) <= r && r <= l.saturating_add(self.upper)
    }
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Stored<T> {
    ts: EventTime,
    value: T,
    matched: bool,
}

/// Expiry times are indexed in buckets of this many milliseconds: records leave up to this
/// much later than they could, in exchange for one index entry per bucket instead of one per
/// millisecond.
const EXPIRY_BUCKET: i64 = 16;

/// One side's state: per key, records sorted by event time; an index of when keys expire.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "K: serde::Serialize + Hash + Eq, T: serde::Serialize",
    deserialize = "K: serde::Deserialize<'de> + Hash + Eq, T: serde::Deserialize<'de>"
))]
struct Side<K, T> {
    rows: HashMap<K, Vec<Stored<T>>>,
    /// Keys with records expiring in each bucket (a key may be listed more than once).
    expiry: BTreeMap<EventTime, Vec<K>>,
    len: usize,
    /// Keys whose lists are empty but kept (with their capacity) for reuse.
    empty: usize,
}

impl<K: Hash + Eq + Clone, T> Side<K, T> {
    fn new() -> Self {
        Side {
            rows: HashMap::new(),
            expiry: BTreeMap::new(),
            len: 0,
            empty: 0,
        }
    }

    fn insert(&mut self, key: K, ts: EventTime, value: T, matched: bool, expires: EventTime) {
        let bucket = expires.div_euclid(EXPIRY_BUCKET);
        let list = match self.rows.get_mut(&key) {
            Some(list) => {
                if list.is_empty() {
                    self.empty -= 1;
                }
                list
            }
            None => self.rows.entry(key.clone()).or_default(),
        };
        let at = list.partition_point(|s| s.ts <= ts);
        list.insert(at, Stored { ts, value, matched });
        let keys = self.expiry.entry(bucket).or_default();
        // Consecutive records of a key in one bucket need one entry.
        if keys.last() != Some(&key) {
            keys.push(key);
        }
        self.len += 1;
    }

    /// Takes in a key's records (sorted by time) from a checkpoint part, indexing them to
    /// expire at `ts + offset`.
    fn absorb(&mut self, key: K, list: Vec<Stored<T>>, offset: i64) {
        if list.is_empty() {
            return;
        }
        for s in &list {
            let keys = self
                .expiry
                .entry(s.ts.saturating_add(offset).div_euclid(EXPIRY_BUCKET))
                .or_default();
            if keys.last() != Some(&key) {
                keys.push(key.clone());
            }
        }
        self.len += list.len();
        match self.rows.get_mut(&key) {
            Some(mine) => {
                if mine.is_empty() {
                    self.empty -= 1;
                }
                mine.extend(list);
                mine.sort_by_key(|s| s.ts);
            }
            None => {
                self.rows.insert(key, list);
            }
        }
    }

    /// Removes every record whose `ts + offset < frontier`, calling `gone` on each.
    fn evict(&mut self, frontier: Watermark, offset: i64, gone: &mut dyn FnMut(&K, Stored<T>)) {
        while let Some(entry) = self.expiry.first_entry() {
            // Every expiry time in the bucket must be below the frontier.
            let last_in_bucket = entry
                .key()
                .saturating_mul(EXPIRY_BUCKET)
                .saturating_add(EXPIRY_BUCKET - 1);
            if last_in_bucket >= frontier {
                break;
            }
            for key in entry.remove() {
                if let Some(list) = self.rows.get_mut(&key) {
                    let n = list.partition_point(|s| s.ts.saturating_add(offset) < frontier);
                    if n == 0 {
                        continue;
                    }
                    self.len -= n;
                    for s in list.drain(..n) {
                        gone(&key, s);
                    }
                    if list.is_empty() {
                        self.empty += 1;
                    }
                }
            }
        }
        // Drop emptied keys once they are the majority, so that a stream of ever new keys
        // does not keep one empty list per key forever.
        if self.empty > 1024 && self.empty * 2 > self.rows.len() {
            self.rows.retain(|_, list| !list.is_empty());
            self.empty = 0;
        }
    }
}

/// The state of an interval join between left records `L` and right records `R` by key `K`.
/// It serialises whole, for checkpoints.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "K: serde::Serialize + Hash + Eq, L: serde::Serialize, R: serde::Serialize",
    deserialize = "K: serde::Deserialize<'de> + Hash + Eq, L: serde::Deserialize<'de>, R: serde::Deserialize<'de>"
))]
pub struct IntervalJoinState<K, L, R> {
    bounds: IntervalBounds,
    kind: JoinKind,
    left: Side<K, L>,
    right: Side<K, R>,
}

/// Receives joined rows: key, event time (the later of the two, or the unmatched row's),
/// left and right (one of them missing for unmatched rows of outer joins).
pub type JoinEmit<'a, K, L, R> = dyn FnMut(&K, EventTime, Option<&L>, Option<&R>) + 'a;

impl<K: Hash + Eq + Clone, L, R> IntervalJoinState<K, L, R> {
    /// Empty state.
    pub fn new(bounds: IntervalBounds, kind: JoinKind) -> Self {
        IntervalJoinState {
            bounds,
            kind,
            left: Side::new(),
            right: Side::new(),
        }
    }

    /// Rows held (both sides): the state size.
    pub fn len(&self) -> usize {
        self.left.len + self.right.len
    }

    /// Whether no rows are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An on-time left record: joins the right records of its key in its interval, then is
    /// stored.
    pub fn insert_left(&mut self, key: K, ts: EventTime, value: L, emit: &mut JoinEmit<'_, K, L, R>) {
        let (lo, hi) = (
            ts.saturating_add(self.bounds.lower),
            ts.saturating_add(self.bounds.upper),
        );
        let mut matched = false;
        if let Some(list) = self.right.rows.get_mut(&key) {
            let from = list.partition_point(|s| s.ts < lo);
            for s in list[from..].iter_mut().take_while(|s| s.ts <= hi) {
                emit(&key, ts.max(s.ts), Some(&value), Some(&s.value));
                s.matched = true;
                matched = true;
            }
        }
        self.left.insert(key, ts, value, matched, hi);
    }

    /// An on-time right record: joins the left records of its key whose interval holds it,
    /// then is stored.
    pub fn insert_right(&mut self, key: K, ts: EventTime, value: R, emit: &mut JoinEmit<'_, K, L, R>) {
        // left.ts in [ts − upper, ts − lower]
        let (lo, hi) = (
            ts.saturating_sub(self.bounds.upper),
            ts.saturating_sub(self.bounds.lower),
        );
        let mut matched = false;
        if let Some(list) = self.left.rows.get_mut(&key) {
            let from = list.partition_point(|s| s.ts < lo);
            for s in list[from..].iter_mut().take_while(|s| s.ts <= hi) {
                emit(&key, ts.max(s.ts), Some(&s.value), Some(&value));
                s.matched = true;
                matched = true;
            }
        }
        self.right.insert(key, ts, value, matched, hi);
    }

    /// Evicts what can no longer match: left records once the right input's watermark
    /// `right_wm` passes `ts + upper`, right records once the left watermark passes
    /// `ts − lower`. Unmatched evicted rows are emitted for outer joins.
    pub fn advance(&mut self, left_wm: Watermark, right_wm: Watermark, emit: &mut JoinEmit<'_, K, L, R>) {
        let (keep_left, keep_right) = (self.kind.keeps_left(), self.kind.keeps_right());
        self.left.evict(right_wm, self.bounds.upper, &mut |k, s| {
            if keep_left && !s.matched {
                emit(k, s.ts, Some(&s.value), None);
            }
        });
        self.right
            .evict(left_wm, self.bounds.lower.saturating_neg(), &mut |k, s| {
                if keep_right && !s.matched {
                    emit(k, s.ts, None, Some(&s.value));
                }
            });
    }
}

impl<K: Hash + Eq + Clone, L: Clone, R: Clone> GroupedState for IntervalJoinState<K, L, R> {
    fn split_groups(&self, include: &dyn Fn(KeyGroup) -> bool) -> Vec<(KeyGroup, Self)> {
        let mut slots = group_slots(include, || Self::new(self.bounds, self.kind));
        for (key, list) in self.left.rows.iter().filter(|(_, l)| !l.is_empty()) {
            if let Some(part) = slot_of(&mut slots, key) {
                part.left.len += list.len();
                part.left.rows.insert(key.clone(), list.clone());
            }
        }
        for (key, list) in self.right.rows.iter().filter(|(_, l)| !l.is_empty()) {
            if let Some(part) = slot_of(&mut slots, key) {
                part.right.len += list.len();
                part.right.rows.insert(key.clone(), list.clone());
            }
        }
        filled_slots(slots)
    }

    /// The part's records are indexed for expiry as [`insert_left`](Self::insert_left) and
    /// [`insert_right`](Self::insert_right) index them.
    fn absorb(&mut self, part: Self) {
        for (key, list) in part.left.rows {
            self.left.absorb(key, list, self.bounds.upper);
        }
        for (key, list) in part.right.rows {
            self.right.absorb(key, list, self.bounds.lower.saturating_neg());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Row = (u8, i64, Option<u32>, Option<u32>);

    #[test]
    fn an_interval_of_all_time_is_a_regular_join_that_keeps_both_sides() {
        let all = IntervalBounds::new(i64::MIN, i64::MAX).unwrap();
        let mut j = IntervalJoinState::new(all, JoinKind::Inner);
        let mut out = Vec::new();
        j.insert_left(1u8, 100, 'a', &mut |_, ts, l, r| out.push((ts, l.copied(), r.copied())));
        // Watermarks far past both sides evict nothing (and do not overflow).
        j.advance(1_000_000, 1_000_000, &mut |_, ts, l, r| {
            out.push((ts, l.copied(), r.copied()))
        });
        j.insert_right(1u8, 5, 'x', &mut |_, ts, l, r| out.push((ts, l.copied(), r.copied())));
        j.insert_left(1u8, 2_000_000, 'b', &mut |_, ts, l, r| {
            out.push((ts, l.copied(), r.copied()))
        });
        j.advance(i64::MAX, i64::MAX, &mut |_, ts, l, r| {
            out.push((ts, l.copied(), r.copied()))
        });
        assert_eq!(
            out,
            vec![(100, Some('a'), Some('x')), (2_000_000, Some('b'), Some('x'))]
        );
    }

    /// Nested loops over both sides.
    fn oracle(left: &[(i64, u8, u32)], right: &[(i64, u8, u32)], b: IntervalBounds, kind: JoinKind) -> Vec<Row> {
        let mut out = Vec::new();
        for &(lt, lk, lv) in left {
            let mut m = false;
            for &(rt, rk, rv) in right {
                if lk == rk && b.matches(lt, rt) {
                    out.push((lk, lt.max(rt), Some(lv), Some(rv)));
                    m = true;
                }
            }
            if !m && kind.keeps_left() {
                out.push((lk, lt, Some(lv), None));
            }
        }
        if kind.keeps_right() {
            for &(rt, rk, rv) in right {
                if !left.iter().any(|&(lt, lk, _)| lk == rk && b.matches(lt, rt)) {
                    out.push((rk, rt, None, Some(rv)));
                }
            }
        }
        out.sort_unstable();
        out
    }

    proptest! {
        /// Records in event-time order with the watermark following them, sides interleaved
        /// arbitrarily: the result equals the nested-loop join, and all state is freed.
        #[test]
        fn equals_nested_loops(mut left in proptest::collection::vec((0i64..300, 0u8..4, any::<u32>()), 0..60),
                               mut right in proptest::collection::vec((0i64..300, 0u8..4, any::<u32>()), 0..60),
                               lower in -30i64..30, width in 0i64..40, kind in 0usize..4, interleave in any::<u64>(),
                               cut in 0usize..130) {
            let b = IntervalBounds::new(lower, lower + width).unwrap();
            let kind = [JoinKind::Inner, JoinKind::Left, JoinKind::Right, JoinKind::Full][kind];
            left.sort_by_key(|r| r.0);
            right.sort_by_key(|r| r.0);
            let mut j = IntervalJoinState::new(b, kind);
            let mut out: Vec<Row> = Vec::new();
            let mut emit = |k: &u8, ts: i64, l: Option<&u32>, r: Option<&u32>| out.push((*k, ts, l.copied(), r.copied()));
            let (mut i, mut k, mut bits) = (0, 0, interleave);
            let (mut lw, mut rw) = (i64::MIN, i64::MIN);
            while i < left.len() || k < right.len() {
                let take_left = k == right.len() || (i < left.len() && bits & 1 == 0);
                bits = bits.rotate_right(1);
                if take_left {
                    let (t, key, v) = left[i];
                    j.insert_left(key, t, v, &mut emit);
                    lw = t;
                    i += 1;
                } else {
                    let (t, key, v) = right[k];
                    j.insert_right(key, t, v, &mut emit);
                    rw = t;
                    k += 1;
                }
                // Each side's watermark trails its own latest record (monotone input).
                j.advance(lw, rw, &mut emit);
                // Split by key group and put back together (a checkpoint restored elsewhere):
                // nothing changes.
                if i + k == cut {
                    j = crate::key_group::regroup(&j, IntervalJoinState::new(b, kind));
                }
            }
            j.advance(i64::MAX, i64::MAX, &mut emit);
            prop_assert!(j.is_empty());
            out.sort_unstable();
            prop_assert_eq!(out, oracle(&left, &right, b, kind));
        }
    }
}
