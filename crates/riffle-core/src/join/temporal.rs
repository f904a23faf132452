//! Stream-table joins: a changelog stream kept as a versioned keyed table, joined by a stream.
//!
//! The table side is a changelog: upserts and deletes by key, each at an event time.
//! [`VersionedTable`] keeps, per key, the versions still needed. Two joins read it:
//!
//! * **temporal join** (event time, Flink's `FOR SYSTEM_TIME AS OF`): a stream record at `ts`
//!   joins the version of its key that was current at `ts`. It waits until the table's
//!   watermark has passed `ts` (no change at or before `ts` can still arrive), so the answer is
//!   deterministic. Versions older than the one current at the stream's watermark are freed.
//! * **lookup join** (processing time): a stream record joins the latest version when it
//!   arrives, with no waiting; the answer depends on arrival order, as in Flink's lookup join.
//!
//! Both are inner (stream records without a row are dropped) or left (they are emitted with
//! the table side missing).
//!
//! ```
//! use riffle_core::join::{Change, TemporalJoinState};
//! let mut j = TemporalJoinState::<&str, u32, f64>::new(false);
//! j.apply("EUR", 0, Change::Upsert(1.10));
//! j.apply("EUR", 100, Change::Upsert(1.20));
//! j.insert_stream("EUR", 50, 7); // an order at 50 sees the rate of 0
//! j.insert_stream("EUR", 150, 8); // at 150, the rate of 100
//! let mut out = vec![];
//! j.advance(i64::MAX, i64::MAX, &mut |_, ts, order, rate| out.push((ts, *order, rate.copied())));
//! assert_eq!(out, vec![(50, 7, Some(1.10)), (150, 8, Some(1.20))]);
//! ```

use std::collections::BTreeMap;
use std::hash::Hash;

use hashbrown::HashMap;

use crate::key_group::{filled_slots, group_slots, slot_of, GroupedState, KeyGroup};
use crate::time::{EventTime, Watermark};

/// One change of a keyed table.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Change<V> {
    /// Insert or replace the key's row.
    Upsert(V),
    /// Delete the key's row.
    Delete,
}

/// A keyed table with the versions of each key by event time.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "K: serde::Serialize + Hash + Eq, V: serde::Serialize",
    deserialize = "K: serde::Deserialize<'de> + Hash + Eq, V: serde::Deserialize<'de>"
))]
pub struct VersionedTable<K, V> {
    versions: HashMap<K, BTreeMap<EventTime, Option<V>>>,
    /// Keys by the time of a version that compaction should look at.
    touched: BTreeMap<EventTime, Vec<K>>,
    len: usize,
}

impl<K: Hash + Eq + Clone, V> Default for VersionedTable<K, V> {
    fn default() -> Self {
        VersionedTable {
            versions: HashMap::new(),
            touched: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V> VersionedTable<K, V> {
    /// Applies a change at `ts`. Two changes of a key at the same time: the later applied wins.
    pub fn apply(&mut self, key: K, ts: EventTime, change: Change<V>) {
        let value = match change {
            Change::Upsert(v) => Some(v),
            Change::Delete => None,
        };
        if self
            .versions
            .entry(key.clone())
            .or_default()
            .insert(ts, value)
            .is_none()
        {
            self.len += 1;
        }
        self.touched.entry(ts).or_default().push(key);
    }

    /// The row of `key` as of `ts` (the latest version at or before `ts`).
    pub fn as_of(&self, key: &K, ts: EventTime) -> Option<&V> {
        self.versions
            .get(key)?
            .range(..=ts)
            .next_back()
            .and_then(|(_, v)| v.as_ref())
    }

    /// The latest row of `key`.
    pub fn latest(&self, key: &K) -> Option<&V> {
        self.versions.get(key)?.values().next_back().and_then(|v| v.as_ref())
    }

    /// Frees versions that no read at or after `before` can see: of the versions at or before
    /// `before`, only the latest is kept (and not even that if it is a delete).
    pub fn compact(&mut self, before: EventTime) {
        while let Some(entry) = self.touched.first_entry() {
            if *entry.key() > before {
                break;
            }
            for key in entry.remove() {
                let Some(versions) = self.versions.get_mut(&key) else {
                    continue;
                };
                let mut newer = versions.split_off(&before.saturating_add(1));
                // `versions` now holds the versions at or before `before`: keep the latest.
                let current = versions.pop_last();
                self.len -= versions.len();
                match current {
                    Some((t, Some(v))) => {
                        newer.insert(t, Some(v));
                    }
                    Some((_, None)) => self.len -= 1,
                    None => {}
                }
                if newer.is_empty() {
                    self.versions.remove(&key);
                } else {
                    *versions = newer;
                }
            }
        }
    }

    /// Versions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Takes in a key's versions from a checkpoint part; every version is looked at by the
    /// next compaction that passes it (compacting a key twice is harmless).
    fn absorb_key(&mut self, key: K, versions: BTreeMap<EventTime, Option<V>>) {
        for &ts in versions.keys() {
            self.touched.entry(ts).or_default().push(key.clone());
        }
        let mine = self.versions.entry(key).or_default();
        let before = mine.len();
        mine.extend(versions);
        self.len += mine.len() - before;
    }

    /// Whether no versions are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Receives temporal join rows: key, the stream record's event time, the stream record and
/// the table row (missing in a left join when the key had no row).
pub type TemporalEmit<'a, K, S, V> = dyn FnMut(&K, EventTime, &S, Option<&V>) + 'a;

/// The state of an event-time temporal join of a stream `S` with a changelog of `V`. It
/// serialises whole, for checkpoints.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "K: serde::Serialize + Hash + Eq, S: serde::Serialize, V: serde::Serialize",
    deserialize = "K: serde::Deserialize<'de> + Hash + Eq, S: serde::Deserialize<'de>, V: serde::Deserialize<'de>"
))]
pub struct TemporalJoinState<K, S, V> {
    left_outer: bool,
    table: VersionedTable<K, V>,
    pending: BTreeMap<EventTime, Vec<(K, S)>>,
    pending_len: usize,
}

impl<K: Hash + Eq + Clone, S, V> TemporalJoinState<K, S, V> {
    /// Empty state; `left_outer` keeps stream records whose key has no row.
    pub fn new(left_outer: bool) -> Self {
        TemporalJoinState {
            left_outer,
            table: VersionedTable::default(),
            pending: BTreeMap::new(),
            pending_len: 0,
        }
    }

    /// An on-time change of the table.
    pub fn apply(&mut self, key: K, ts: EventTime, change: Change<V>) {
        self.table.apply(key, ts, change);
    }

    /// An on-time stream record; it waits for the table's watermark to pass `ts`.
    pub fn insert_stream(&mut self, key: K, ts: EventTime, value: S) {
        self.pending.entry(ts).or_default().push((key, value));
        self.pending_len += 1;
    }

    /// Joins the stream records the table watermark has passed, in event-time order, then frees
    /// table versions older than any future read (stream watermark and pending records).
    pub fn advance(&mut self, stream_wm: Watermark, table_wm: Watermark, emit: &mut TemporalEmit<'_, K, S, V>) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() >= table_wm {
                break;
            }
            let (ts, records) = entry.remove_entry();
            self.pending_len -= records.len();
            for (key, value) in records {
                let row = self.table.as_of(&key, ts);
                if row.is_some() || self.left_outer {
                    emit(&key, ts, &value, row);
                }
            }
        }
        let oldest_read = self
            .pending
            .keys()
            .next()
            .copied()
            .unwrap_or(Watermark::MAX)
            .min(stream_wm);
        self.table.compact(oldest_read);
    }

    /// The table, for lookup joins (latest version).
    pub fn table(&self) -> &VersionedTable<K, V> {
        &self.table
    }

    /// Rows held: table versions and waiting stream records.
    pub fn len(&self) -> usize {
        self.table.len() + self.pending_len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone, S: Clone, V: Clone> GroupedState for TemporalJoinState<K, S, V> {
    fn split_groups(&self, include: &dyn Fn(KeyGroup) -> bool) -> Vec<(KeyGroup, Self)> {
        let mut slots = group_slots(include, || Self::new(self.left_outer));
        for (key, versions) in &self.table.versions {
            if let Some(part) = slot_of(&mut slots, key) {
                part.table.len += versions.len();
                part.table.versions.insert(key.clone(), versions.clone());
            }
        }
        for (&ts, records) in &self.pending {
            for (key, value) in records {
                if let Some(part) = slot_of(&mut slots, key) {
                    part.pending_len += 1;
                    part.pending.entry(ts).or_default().push((key.clone(), value.clone()));
                }
            }
        }
        filled_slots(slots)
    }

    fn absorb(&mut self, part: Self) {
        for (key, versions) in part.table.versions {
            self.table.absorb_key(key, versions);
        }
        for (ts, records) in part.pending {
            self.pending.entry(ts).or_default().extend(records);
        }
        self.pending_len += part.pending_len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a scan of the whole changelog for each stream record; compaction under a
        /// watermark that follows both sides never changes an answer.
        #[test]
        fn equals_a_scan_of_the_changelog(mut changes in proptest::collection::vec((0i64..200, 0u8..3, proptest::option::of(any::<u16>())), 0..40),
                                          mut stream in proptest::collection::vec((0i64..200, 0u8..3, any::<u16>()), 0..40),
                                          left_outer in any::<bool>(), bits in any::<u64>(), cut in 0usize..90) {
            // Distinct change times per key so "the version at ts" is unambiguous.
            changes.sort_by_key(|c| (c.0, c.1));
            changes.dedup_by_key(|c| (c.0, c.1));
            stream.sort_by_key(|s| s.0);
            let mut expected = vec![];
            for &(ts, k, v) in &stream {
                let row = changes.iter().filter(|c| c.1 == k && c.0 <= ts).max_by_key(|c| c.0).and_then(|c| c.2);
                if row.is_some() || left_outer {
                    expected.push((ts, k, v, row));
                }
            }
            let mut j = TemporalJoinState::new(left_outer);
            let mut got = vec![];
            let mut emit = |k: &u8, ts: i64, v: &u16, row: Option<&u16>| got.push((ts, *k, *v, row.copied()));
            let (mut i, mut s, mut b) = (0, 0, bits);
            let (mut tw, mut sw) = (i64::MIN, i64::MIN);
            while i < changes.len() || s < stream.len() {
                if s == stream.len() || (i < changes.len() && b & 1 == 0) {
                    let (ts, k, v) = changes[i];
                    j.apply(k, ts, v.map_or(Change::Delete, Change::Upsert));
                    tw = ts - 1;
                    i += 1;
                } else {
                    let (ts, k, v) = stream[s];
                    j.insert_stream(k, ts, v);
                    sw = ts;
                    s += 1;
                }
                b = b.rotate_right(1);
                let tw_eff = if i == changes.len() { i64::MAX } else { tw };
                j.advance(sw, tw_eff, &mut emit);
                // Split by key group and put back together: nothing changes.
                if i + s == cut {
                    j = crate::key_group::regroup(&j, TemporalJoinState::new(left_outer));
                }
            }
            j.advance(i64::MAX, i64::MAX, &mut emit);
            got.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(got, expected);
            prop_assert!(j.table().len() <= 3, "compacted to at most one version per key");
        }
    }
}
