//! Deduplication within a time window, with counting Bloom filters that forget.
//!
//! [`Deduplicator::offer`] answers, for each record in sequence order, whether its key was seen
//! within the previous `within` milliseconds; every record enters the filter and leaves it
//! `within` ms of sequence time later, so the filter holds exactly the keys of the sliding
//! interval (plus false positives at the configured rate, which drop a first occurrence; never
//! a false negative, which would let a duplicate through).
//!
//! The runtime sequences records as count windows do: by `max(event time, watermark on
//! arrival)`, once the watermark has passed, so the decisions do not depend on arrival order
//! or on the number of workers. There is one filter per key group (see
//! [`riffle_core::key_group`]): which keys share a filter, and so which false positives
//! happen, depends only on the keys, not on how key groups are spread over workers; and a
//! checkpoint can store and move filters by key group.
//!
//! ```
//! use riffle_sketch::dedup::Deduplicator;
//! use riffle_core::key_group::stable_hash;
//! let mut d = Deduplicator::new(1_000, 10_000, 0.001).unwrap();
//! let k = stable_hash("order-17");
//! assert!(d.offer(0, k)); // first: keep
//! assert!(!d.offer(500, k)); // seen 500 ms ago: drop
//! assert!(!d.offer(1_400, k)); // seen 900 ms ago (the duplicate counts as seen)
//! assert!(d.offer(2_500, k)); // nothing within the last second: keep
//! ```

use std::collections::BTreeMap;

use riffle_core::key_group::{KeyGroup, KEY_GROUPS};
use riffle_core::EventTime;

use crate::counting_bloom::{BloomConfigError, CountingBloomFilter};

/// Drops records whose key was seen within the last `within` ms of sequence time.
pub struct Deduplicator {
    within: i64,
    empty: CountingBloomFilter,
    filters: Vec<Option<CountingBloomFilter>>,
    /// (sequence time, key hash) of every record in the filters, oldest first.
    /// (sequence time, insertion number) → key hash, in sequence order even when key groups
    /// restored from different workers interleave.
    recent: BTreeMap<(EventTime, u64), u64>,
    inserted: u64,
}

impl Deduplicator {
    /// Deduplicates within `within` ms, sized for `expected_keys` keys per interval over all key
    /// groups at false-positive rate `fp_rate`.
    pub fn new(within: i64, expected_keys: u64, fp_rate: f64) -> Result<Self, BloomConfigError> {
        if within <= 0 {
            return Err(BloomConfigError::Invalid(format!(
                "deduplication interval must be positive, got {within} ms"
            )));
        }
        let per_group = expected_keys.div_ceil(u64::from(KEY_GROUPS)).max(16);
        Ok(Deduplicator {
            within,
            empty: CountingBloomFilter::with_rate(per_group, fp_rate)?,
            filters: (0..KEY_GROUPS).map(|_| None).collect(),
            recent: BTreeMap::new(),
            inserted: 0,
        })
    }

    /// Records, at sequence time `seq` (non-decreasing over the calls for one key group), a
    /// record with key hash `hash`; returns whether to keep it (its key was not seen in
    /// `(seq − within, seq]`).
    pub fn offer(&mut self, seq: EventTime, hash: u64) -> bool {
        self.expire(seq);
        // Remix so the filter's probes do not share the bits that chose the key group.
        let h = hash.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
        let filter = self.filters[usize::from(KeyGroup::of_hash(hash).0)].get_or_insert_with(|| self.empty.clone());
        let seen = filter.contains_hash(h);
        filter.insert_hash(h);
        self.recent.insert((seq, self.inserted), hash);
        self.inserted += 1;
        !seen
    }

    fn expire(&mut self, now: EventTime) {
        while let Some(entry) = self.recent.first_entry() {
            if entry.key().0 > now.saturating_sub(self.within) {
                break;
            }
            let hash = entry.remove();
            let h = hash.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
            if let Some(f) = self.filters[usize::from(KeyGroup::of_hash(hash).0)].as_mut() {
                f.remove_hash(h);
            }
        }
    }

    /// The state of key group `group`, for a checkpoint: its filter (if it has one) and the
    /// (sequence time, key hash) of its records still in the interval, oldest first.
    pub fn snapshot_group(&self, group: u16) -> (Option<&CountingBloomFilter>, Vec<(EventTime, u64)>) {
        let recent = self
            .recent
            .iter()
            .filter(|(_, h)| KeyGroup::of_hash(**h).0 == group)
            .map(|((t, _), h)| (*t, *h))
            .collect();
        (self.filters[usize::from(group)].as_ref(), recent)
    }

    /// Restores key group `group` (a group this deduplicator does not hold). Groups restored
    /// from different workers may have been sequenced to different times; each resumes where it
    /// was, as decisions depend only on the records of their own keys.
    pub fn restore_group(&mut self, group: u16, filter: Option<CountingBloomFilter>, recent: Vec<(EventTime, u64)>) {
        self.filters[usize::from(group)] = filter;
        for (t, h) in recent {
            self.recent.insert((t, self.inserted), h);
            self.inserted += 1;
        }
    }

    /// Records held (the state size).
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against the exact rule (with a filter large enough that false positives do not
        /// occur for these few keys).
        #[test]
        fn equals_the_exact_rule(mut records in proptest::collection::vec((0i64..2_000, 0u32..30), 0..300), within in 1i64..500) {
            records.sort_by_key(|r| r.0);
            let mut d = Deduplicator::new(within, 100_000, 1e-9).unwrap();
            let mut last_seen: hashbrown::HashMap<u32, i64> = Default::default();
            for (ts, key) in records {
                let exact_keep = last_seen.get(&key).is_none_or(|&t| t <= ts - within);
                last_seen.insert(key, ts);
                prop_assert_eq!(d.offer(ts, riffle_core::key_group::stable_hash(&key)), exact_keep, "ts {} key {}", ts, key);
            }
        }
    }

    #[test]
    fn state_is_bounded_by_the_interval() {
        let mut d = Deduplicator::new(100, 1_000, 0.01).unwrap();
        for t in 0..100_000i64 {
            d.offer(t, riffle_core::key_group::stable_hash(&(t % 37)));
            assert!(d.len() <= 100);
        }
    }
}
