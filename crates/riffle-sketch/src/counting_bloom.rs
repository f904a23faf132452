//! A counting Bloom filter: set membership that can forget.
//!
//! A Bloom filter answers "was this item inserted?" with no false negatives and a tunable rate of
//! false positives. A *counting* Bloom filter keeps a small counter instead of a bit per slot, so
//! an item can also be removed: as records leave a sliding window, they leave the filter. Riffle
//! uses it for deduplication within a time window and as a cheap distinct estimator.
//!
//! # Sizing
//!
//! For `n` expected items and a target false-positive rate `p`, the optimal number of counters
//! is `m = −n·ln p / (ln 2)²` and of hash functions `k = (m/n)·ln 2`
//! ([`CountingBloomFilter::with_rate`]). With `n` items in the filter the false-positive rate is
//!
//! ```text
//! p = (1 − e^(−k·n/m))^k
//! ```
//!
//! ([`CountingBloomFilter::false_positive_rate`]). The project's seed document wrote the exponent
//! as `−k·n` without dividing by `m`, which would make the rate independent of the filter's size;
//! the formula above is the correct one (Broder & Mitzenmacher, "Network Applications of Bloom
//! Filters", 2004) and the tests measure it.
//!
//! # Counters and saturation
//!
//! Counters are 4 bits by default (2, 8 or 16 on request), packed into `u64` words. A counter
//! that reaches its maximum (15 for 4 bits) *saturates*: it stays at the maximum forever, is
//! never incremented nor decremented again. Its true count is unknown from then on, and
//! decrementing it could create a false negative; keeping it pinned keeps the filter free of
//! false negatives at the cost of a slot that never forgets. With 4-bit counters and optimal
//! sizing this needs 15 items hashing to one slot, which happens with probability below 10⁻¹¹
//! per slot ([`CountingBloomFilter::saturated_counters`] reports it).
//!
//! # Hashing
//!
//! One 64-bit [`stable_hash`] per item; the `k` slots come from double hashing
//! (Kirsch & Mitzenmacher, "Less Hashing, Same Performance", 2006): slot `i` is
//! `h₁ + i·h₂` reduced to `[0, m)` by a multiply-shift, with `h₂` a remix of the hash.
//!
//! # Why our own
//!
//! The crates measured (`fastbloom-rs` has a counting filter at 20 M inserts/s) offer neither a
//! configurable counter width with documented saturation, nor merge, nor a serialisation fit
//! for checkpoints; the structure is small enough to own.
//!
//! ```
//! use riffle_sketch::CountingBloomFilter;
//! let mut seen = CountingBloomFilter::with_rate(1_000, 0.01).unwrap();
//! seen.insert("alice");
//! assert!(seen.contains("alice"));
//! assert!(seen.remove("alice"));
//! assert!(!seen.contains("alice"));
//! ```

use std::hash::Hash;

use riffle_core::key_group::stable_hash;

use crate::codec::{open, seal, DecodeError, Reader, SketchKind};

const VERSION: u8 = 1;

/// A counting Bloom filter with `m` counters of 2, 4, 8 or 16 bits and `k` hash functions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountingBloomFilter {
    words: Vec<u64>,
    counters: u64,
    hashes: u32,
    bits: u32,
    saturated: u64,
}

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BloomConfigError {
    /// Sizing inputs outside their domain.
    #[error("counting Bloom filter: {0}")]
    Invalid(String),
}

impl CountingBloomFilter {
    /// A filter sized for `expected_items` at false-positive rate `fp_rate`, 4-bit counters.
    pub fn with_rate(expected_items: u64, fp_rate: f64) -> Result<Self, BloomConfigError> {
        let (m, k) = Self::optimal_shape(expected_items, fp_rate)?;
        Self::new(m, k, 4)
    }

    /// The optimal `(counters, hashes)` for `expected_items` at `fp_rate`.
    ///
    /// ```
    /// use riffle_sketch::CountingBloomFilter;
    /// let (m, k) = CountingBloomFilter::optimal_shape(1_000_000, 0.01).unwrap();
    /// assert_eq!((m, k), (9_585_059, 7)); // 9.6 counters per item, 7 hashes
    /// ```
    pub fn optimal_shape(expected_items: u64, fp_rate: f64) -> Result<(u64, u32), BloomConfigError> {
        if !(fp_rate > 0.0 && fp_rate < 1.0) {
            return Err(BloomConfigError::Invalid(format!(
                "false-positive rate must be in (0, 1), got {fp_rate}"
            )));
        }
        let n = expected_items.max(1) as f64;
        let ln2 = std::f64::consts::LN_2;
        let m = (-n * fp_rate.ln() / (ln2 * ln2)).ceil().max(1.0);
        let k = ((m / n) * ln2).round().clamp(1.0, 32.0);
        Ok((m as u64, k as u32))
    }

    /// A filter of `counters` counters of `bits` bits (2, 4, 8 or 16) and `hashes` hash functions.
    pub fn new(counters: u64, hashes: u32, bits: u32) -> Result<Self, BloomConfigError> {
        if ![2, 4, 8, 16].contains(&bits) {
            return Err(BloomConfigError::Invalid(format!(
                "counter width must be 2, 4, 8 or 16 bits, got {bits}"
            )));
        }
        if counters == 0 || !(1..=32).contains(&hashes) {
            return Err(BloomConfigError::Invalid(format!(
                "need at least one counter and 1 to 32 hashes, got {counters} counters and {hashes} hashes"
            )));
        }
        let per_word = u64::from(64 / bits);
        let words = usize::try_from(counters.div_ceil(per_word))
            .map_err(|_| BloomConfigError::Invalid(format!("{counters} counters do not fit in memory")))?;
        Ok(CountingBloomFilter {
            words: vec![0; words],
            counters,
            hashes,
            bits,
            saturated: 0,
        })
    }

    /// Number of counters (`m`).
    pub fn counters(&self) -> u64 {
        self.counters
    }

    /// Number of hash functions (`k`).
    pub fn hashes(&self) -> u32 {
        self.hashes
    }

    /// Bits per counter.
    pub fn counter_bits(&self) -> u32 {
        self.bits
    }

    /// Counters that reached their maximum and stay pinned there (see the module docs).
    pub fn saturated_counters(&self) -> u64 {
        self.saturated
    }

    /// The theoretical false-positive rate with `items` items inserted: `(1 − e^(−kn/m))^k`.
    pub fn false_positive_rate(&self, items: u64) -> f64 {
        let k = f64::from(self.hashes);
        (1.0 - (-k * items as f64 / self.counters as f64).exp()).powf(k)
    }

    #[inline]
    fn max(&self) -> u64 {
        (1u64 << self.bits) - 1
    }

    #[inline]
    fn slots(&self, hash: u64) -> impl Iterator<Item = u64> {
        let h1 = hash;
        // A second, independent-looking hash from the first (splitmix64 finaliser), odd so that
        // the probe sequence never collapses.
        let mut h2 = hash ^ (hash >> 31);
        h2 = h2.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h2 ^= h2 >> 27;
        h2 = h2.wrapping_mul(0x94d0_49bb_1331_11eb);
        h2 ^= h2 >> 31;
        h2 |= 1;
        let m = self.counters;
        (0..u64::from(self.hashes)).map(move |i| {
            let g = h1.wrapping_add(i.wrapping_mul(h2));
            ((u128::from(g) * u128::from(m)) >> 64) as u64
        })
    }

    #[inline]
    fn get(&self, slot: u64) -> u64 {
        let per_word = u64::from(64 / self.bits);
        let word = self.words[(slot / per_word) as usize];
        (word >> ((slot % per_word) * u64::from(self.bits))) & self.max()
    }

    #[inline]
    fn set(&mut self, slot: u64, value: u64) {
        let per_word = u64::from(64 / self.bits);
        let shift = (slot % per_word) * u64::from(self.bits);
        let w = &mut self.words[(slot / per_word) as usize];
        *w = (*w & !(((1u64 << self.bits) - 1) << shift)) | (value << shift);
    }

    /// Inserts an item.
    pub fn insert<T: Hash + ?Sized>(&mut self, item: &T) {
        self.insert_hash(stable_hash(item));
    }

    /// Inserts an item by its [`stable_hash`].
    pub fn insert_hash(&mut self, hash: u64) {
        let max = self.max();
        for slot in self.slots(hash) {
            let c = self.get(slot);
            if c < max {
                self.set(slot, c + 1);
                if c + 1 == max {
                    self.saturated += 1;
                }
            }
        }
    }

    /// Whether the item may have been inserted (and not removed). Never false for an item that
    /// is in the filter; true for an absent one with the false-positive rate.
    pub fn contains<T: Hash + ?Sized>(&self, item: &T) -> bool {
        self.contains_hash(stable_hash(item))
    }

    /// [`contains`](Self::contains) by hash.
    pub fn contains_hash(&self, hash: u64) -> bool {
        self.slots(hash).all(|s| self.get(s) > 0)
    }

    /// Removes one insertion of the item. Returns false, changing nothing, if the item is
    /// certainly absent (some counter is zero): removing what was never inserted would create
    /// false negatives. Saturated counters are left pinned.
    pub fn remove<T: Hash + ?Sized>(&mut self, item: &T) -> bool {
        self.remove_hash(stable_hash(item))
    }

    /// [`remove`](Self::remove) by hash.
    pub fn remove_hash(&mut self, hash: u64) -> bool {
        if !self.contains_hash(hash) {
            return false;
        }
        let max = self.max();
        for slot in self.slots(hash) {
            let c = self.get(slot);
            // A slot probed twice by one item was incremented twice; it is decremented twice.
            if c < max && c > 0 {
                self.set(slot, c - 1);
            }
        }
        true
    }

    /// Number of non-zero counters.
    pub fn occupied(&self) -> u64 {
        let per_word = 64 / self.bits;
        let max = self.max();
        self.words
            .iter()
            .map(|&w| (0..per_word).filter(|i| (w >> (i * self.bits)) & max != 0).count() as u64)
            .sum()
    }

    /// Estimated number of distinct items in the filter from the share of occupied counters:
    /// `n̂ = −(m/k)·ln(1 − X/m)` (Swamidass & Baldi, 2007). Infinite-free: a full filter answers
    /// `m`, the most it can tell apart.
    pub fn estimate_distinct(&self) -> f64 {
        let m = self.counters as f64;
        let x = self.occupied() as f64;
        if x >= m {
            return m;
        }
        -(m / f64::from(self.hashes)) * (1.0 - x / m).ln()
    }

    /// Adds `other`'s counters into this filter (saturating): the filter of both multisets.
    pub fn merge(&mut self, other: &CountingBloomFilter) -> Result<(), BloomConfigError> {
        if (self.counters, self.hashes, self.bits) != (other.counters, other.hashes, other.bits) {
            return Err(BloomConfigError::Invalid(format!(
                "cannot merge filters of different shapes: ({} counters, {} hashes, {} bits) and ({}, {}, {})",
                self.counters, self.hashes, self.bits, other.counters, other.hashes, other.bits
            )));
        }
        let max = self.max();
        let per_word = 64 / self.bits;
        for (a, &b) in self.words.iter_mut().zip(&other.words) {
            if b == 0 {
                continue;
            }
            let mut out = 0u64;
            for i in 0..per_word {
                let shift = i * self.bits;
                let (x, y) = ((*a >> shift) & max, (b >> shift) & max);
                let s = x + y;
                let v = if s >= max {
                    if x < max {
                        self.saturated += 1;
                    }
                    max
                } else {
                    s
                };
                out |= v << shift;
            }
            *a = out;
        }
        Ok(())
    }

    /// The filter's bytes in the [`crate::codec`] envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(32 + self.words.len() * 8);
        p.push(self.bits as u8);
        p.extend_from_slice(&self.hashes.to_le_bytes());
        p.extend_from_slice(&self.counters.to_le_bytes());
        p.extend_from_slice(&self.saturated.to_le_bytes());
        for w in &self.words {
            p.extend_from_slice(&w.to_le_bytes());
        }
        seal(SketchKind::CountingBloom, VERSION, &p)
    }

    /// Decodes [`to_bytes`](Self::to_bytes); rejects truncated, corrupted or inconsistent buffers.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(
            SketchKind::CountingBloom,
            open(SketchKind::CountingBloom, VERSION, bytes)?,
        );
        let bits = u32::from(r.u8()?);
        let hashes = r.u32()?;
        let counters = r.u64()?;
        let saturated = r.u64()?;
        // Check the size before allocating: a bad count must not allocate gigabytes.
        if ![2, 4, 8, 16].contains(&bits) || (r.rest_len() / 8) as u64 != counters.div_ceil(u64::from(64 / bits.max(1)))
        {
            return Err(r.invalid(format!(
                "{} counter bytes for {counters} counters of {bits} bits",
                r.rest_len()
            )));
        }
        let mut f = Self::new(counters, hashes, bits).map_err(|e| r.invalid(e.to_string()))?;
        let n = f.words.len();
        if r.rest_len() != n * 8 {
            return Err(r.invalid(format!("{} counter bytes for {counters} counters", r.rest_len())));
        }
        for w in f.words.iter_mut() {
            *w = r.u64()?;
        }
        r.finish()?;
        let per_word = u64::from(64 / bits);
        let used_in_last = counters - (n as u64 - 1) * per_word;
        if used_in_last < per_word && f.words[n - 1] >> (used_in_last * u64::from(bits)) != 0 {
            return Err(DecodeError::Invalid {
                kind: SketchKind::CountingBloom,
                message: "counters set beyond the filter's size".into(),
            });
        }
        f.saturated = saturated;
        Ok(f)
    }
}

crate::codec::serde_via_bytes!(CountingBloomFilter);

/// Estimated distinct count per window with a counting Bloom filter (fill-ratio estimate).
///
/// Cheaper to merge than an exact set and bounded in memory; less accurate than HyperLogLog
/// for the same memory, but the same structure also answers membership.
#[derive(Clone)]
pub struct BloomDistinct<F> {
    empty: CountingBloomFilter,
    field: F,
}

impl<F> BloomDistinct<F> {
    /// Counts distinct `field` values with a filter sized for `expected_items` at `fp_rate`.
    pub fn new<In, T: Hash + ?Sized>(expected_items: u64, fp_rate: f64, field: F) -> Result<Self, BloomConfigError>
    where
        F: for<'a> Fn(&'a In) -> &'a T,
    {
        Ok(BloomDistinct {
            empty: CountingBloomFilter::with_rate(expected_items, fp_rate)?,
            field,
        })
    }
}

impl<In, T, F> riffle_core::aggregate::Aggregate<In> for BloomDistinct<F>
where
    T: Hash + ?Sized,
    F: for<'a> Fn(&'a In) -> &'a T + Clone + Send + Sync + 'static,
{
    type Acc = CountingBloomFilter;
    type Output = u64;

    fn create(&self) -> CountingBloomFilter {
        self.empty.clone()
    }

    fn add(&self, acc: &mut CountingBloomFilter, value: In) {
        acc.insert_hash(stable_hash((self.field)(&value)));
    }

    fn merge(&self, acc: &mut CountingBloomFilter, other: CountingBloomFilter) {
        // Both come from `create`: same shape.
        let _ = acc.merge(&other);
    }

    fn result(&self, acc: &CountingBloomFilter) -> u64 {
        acc.estimate_distinct().round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn no_false_negatives_and_the_measured_rate_matches_the_formula() {
        // Several shapes, each with 1 M absent keys probed.
        for (m, k, n) in [
            (100_000u64, 4u32, 10_000u64),
            (200_000, 7, 20_000),
            (50_000, 3, 20_000),
            (1 << 20, 10, 70_000),
        ] {
            let mut f = CountingBloomFilter::new(m, k, 4).unwrap();
            for i in 0..n {
                f.insert(&i);
            }
            for i in 0..n {
                assert!(f.contains(&i), "false negative for {i}");
            }
            let probes = 1_000_000u64;
            let fp = (n..n + probes).filter(|i| f.contains(i)).count() as f64 / probes as f64;
            let p = f.false_positive_rate(n);
            // 5 binomial standard deviations, plus 5 % for the formula's approximation.
            let tolerance = 5.0 * (p * (1.0 - p) / probes as f64).sqrt() + 0.05 * p;
            assert!(
                (fp - p).abs() <= tolerance,
                "m {m} k {k} n {n}: measured {fp}, formula {p}"
            );
        }
    }

    #[test]
    fn sized_filters_meet_their_target_rate() {
        for target in [0.1, 0.01, 0.001] {
            let n = 50_000u64;
            let mut f = CountingBloomFilter::with_rate(n, target).unwrap();
            for i in 0..n {
                f.insert(&i);
            }
            let probes = 1_000_000u64;
            let fp = (n..n + probes).filter(|i| f.contains(i)).count() as f64 / probes as f64;
            assert!(fp < target * 1.15, "target {target}: measured {fp}");
        }
    }

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        let mut f = CountingBloomFilter::new(64, 1, 2).unwrap();
        for _ in 0..10 {
            f.insert("x");
        }
        assert_eq!(f.saturated_counters(), 1);
        for _ in 0..10 {
            f.remove("x");
        }
        // Pinned: still present, never a false negative.
        assert!(f.contains("x"));
    }

    #[test]
    fn decoding_rejects_inconsistent_payloads_that_pass_the_checksum() {
        let f = CountingBloomFilter::new(10, 2, 4).unwrap();
        let mut p = vec![4u8];
        p.extend_from_slice(&2u32.to_le_bytes());
        p.extend_from_slice(&10u64.to_le_bytes());
        p.extend_from_slice(&0u64.to_le_bytes());
        p.extend_from_slice(&(1u64 << 60).to_le_bytes()); // counter 15 of a 10-counter filter
        assert!(CountingBloomFilter::from_bytes(&seal(SketchKind::CountingBloom, VERSION, &p)).is_err());
        assert_eq!(CountingBloomFilter::from_bytes(&f.to_bytes()).unwrap(), f);
    }

    proptest! {
        /// Removing what was inserted restores the filter exactly (no saturation at 8 bits).
        #[test]
        fn remove_restores_the_state(base in proptest::collection::vec(any::<u32>(), 0..200),
                                     extra in proptest::collection::vec(any::<u32>(), 0..200)) {
            let mut f = CountingBloomFilter::new(4096, 5, 8).unwrap();
            for x in &base { f.insert(x); }
            let before = f.clone();
            for x in &extra { f.insert(x); }
            for x in &extra { prop_assert!(f.remove(x)); }
            prop_assert_eq!(f, before);
        }

        /// Merge is the filter of the union multiset, in any order; bytes round-trip.
        #[test]
        fn merge_equals_inserting_both(a in proptest::collection::vec(any::<u16>(), 0..300),
                                       b in proptest::collection::vec(any::<u16>(), 0..300)) {
            let mut fa = CountingBloomFilter::new(2000, 4, 4).unwrap();
            let mut fb = fa.clone();
            let mut both = fa.clone();
            for x in &a { fa.insert(x); both.insert(x); }
            for x in &b { fb.insert(x); both.insert(x); }
            let mut ab = fa.clone();
            ab.merge(&fb).unwrap();
            let mut ba = fb.clone();
            ba.merge(&fa).unwrap();
            prop_assert_eq!(&ab.words, &both.words);
            prop_assert_eq!(&ab.words, &ba.words);
            prop_assert_eq!(CountingBloomFilter::from_bytes(&ab.to_bytes()).unwrap(), ab);
        }

        /// The decoder never panics, whatever the bytes.
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = CountingBloomFilter::from_bytes(&bytes);
        }
    }

    #[test]
    fn estimate_distinct_is_close() {
        let mut f = CountingBloomFilter::with_rate(100_000, 0.01).unwrap();
        for i in 0..50_000u64 {
            f.insert(&i);
            f.insert(&i); // duplicates do not count
        }
        let e = f.estimate_distinct();
        assert!((e - 50_000.0).abs() < 50_000.0 * 0.02, "estimate {e}");
    }
}
