//! Top-k heavy hitters per window.
//!
//! Built on Apache DataSketches' frequent-items sketch (crate `datasketches`): a map of at most
//! `0.75 · map_size` counters with Misra–Gries style purging, whose estimates carry guaranteed
//! bounds (`lower ≤ true ≤ upper`, `upper − lower ≤ 3.5·N / map_size`), which merges and
//! serialises. It is exact while a window holds fewer distinct items than the map's capacity.
//!
//! [`TopKSketch::top`] reads the `k` largest estimates (ties broken by item, so the answer is
//! deterministic). Beyond the map's capacity, purges make the estimates depend on the order in
//! which pane sketches merge, so they can differ between runs on different numbers of workers,
//! always within the bounds; size the map (`map_size`) for the distinct items you expect when
//! exact answers matter.
//!
//! ```
//! use riffle_sketch::TopKSketch;
//! let mut t = TopKSketch::new(2, 64).unwrap();
//! for w in ["a", "b", "a", "c", "a", "b"] { t.insert(w); }
//! assert_eq!(t.top(), vec![("a".to_string(), 3), ("b".to_string(), 2)]);
//! ```

use datasketches::frequencies::{ErrorType, FrequentItemsSketch};

use crate::codec::{open, seal, DecodeError, Reader, SketchKind};

const VERSION: u8 = 1;

/// The `k` most frequent items of a stream, with a frequent-items sketch of `map_size` slots.
#[derive(Clone, Debug)]
pub struct TopKSketch {
    k: u32,
    sketch: FrequentItemsSketch<String>,
}

/// Sizing inputs outside their domain.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("top-k: {0}")]
pub struct TopKConfigError(String);

impl TopKSketch {
    /// Keeps the top `k` with a map of `map_size` slots (a power of two ≥ 8).
    pub fn new(k: u32, map_size: usize) -> Result<Self, TopKConfigError> {
        if k == 0 {
            return Err(TopKConfigError("k must be at least 1".into()));
        }
        let sketch = FrequentItemsSketch::new(map_size).map_err(|e| TopKConfigError(e.to_string()))?;
        Ok(TopKSketch { k, sketch })
    }

    /// A map size that keeps a window exact up to `distinct` items and gives at least 32
    /// slots per reported item.
    pub fn map_size_for(k: u32, distinct: usize) -> usize {
        let need = (distinct * 4 / 3 + 1).max(k as usize * 32).max(8);
        need.checked_next_power_of_two().unwrap_or(1 << 30).min(1 << 26)
    }

    /// `k`.
    pub fn k(&self) -> u32 {
        self.k
    }

    /// Counts one occurrence of `item`.
    #[inline]
    pub fn insert(&mut self, item: &str) {
        self.sketch.update_ref(item);
    }

    /// Counts `count` occurrences of `item`.
    pub fn insert_count(&mut self, item: &str, count: u64) {
        self.sketch.update_with_count_ref(item, count);
    }

    /// Total count added (`N`).
    pub fn total(&self) -> u64 {
        self.sketch.total_weight()
    }

    /// The largest possible error of any estimate (0 while exact).
    pub fn maximum_error(&self) -> u64 {
        self.sketch.maximum_error()
    }

    /// The `k` items with the largest estimated counts, largest first, ties by item.
    pub fn top(&self) -> Vec<(String, u64)> {
        let mut rows: Vec<(String, u64)> = self
            .sketch
            .frequent_items_with_threshold(ErrorType::NoFalseNegatives, 0)
            .into_iter()
            .map(|r| (r.item().clone(), r.estimate()))
            .collect();
        rows.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(self.k as usize);
        rows
    }

    /// Merges `other` (same `k`; the map size of `self` is kept).
    pub fn merge(&mut self, other: &TopKSketch) {
        self.sketch.merge(&other.sketch);
    }

    /// The sketch's bytes in the [`crate::codec`] envelope (DataSketches' format inside).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut p = self.k.to_le_bytes().to_vec();
        p.extend_from_slice(&self.sketch.serialize());
        seal(SketchKind::TopK, VERSION, &p)
    }

    /// Decodes [`to_bytes`](Self::to_bytes); rejects truncated, corrupted or foreign buffers.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(SketchKind::TopK, open(SketchKind::TopK, VERSION, bytes)?);
        let k = r.u32()?;
        if k == 0 {
            return Err(r.invalid("k is 0"));
        }
        let sketch = FrequentItemsSketch::<String>::deserialize(r.rest()).map_err(|e| r.invalid(e.to_string()))?;
        Ok(TopKSketch { k, sketch })
    }
}

crate::codec::serde_via_bytes!(TopKSketch);

/// The `top_k` aggregate: the `k` most frequent `field` values per window, with counts.
///
/// ```
/// use riffle_core::aggregate::Aggregate;
/// use riffle_sketch::TopK;
/// let agg = TopK::new(1, 64, |w: &String| w.as_str()).unwrap();
/// let mut acc = agg.create();
/// for w in ["x", "y", "x"] { agg.add(&mut acc, w.to_string()); }
/// assert_eq!(agg.result(&acc), vec![("x".to_string(), 2)]);
/// ```
#[derive(Clone)]
pub struct TopK<F> {
    empty: TopKSketch,
    field: F,
}

impl<F> TopK<F> {
    /// The top `k` of `field` with sketches of `map_size` slots.
    pub fn new<In>(k: u32, map_size: usize, field: F) -> Result<Self, TopKConfigError>
    where
        F: for<'a> Fn(&'a In) -> &'a str,
    {
        Ok(TopK {
            empty: TopKSketch::new(k, map_size)?,
            field,
        })
    }
}

impl<In, F> riffle_core::aggregate::Aggregate<In> for TopK<F>
where
    F: for<'a> Fn(&'a In) -> &'a str + Clone + Send + Sync + 'static,
{
    type Acc = TopKSketch;
    type Output = Vec<(String, u64)>;

    fn create(&self) -> TopKSketch {
        self.empty.clone()
    }

    #[inline]
    fn add(&self, acc: &mut TopKSketch, value: In) {
        acc.insert((self.field)(&value));
    }

    fn merge(&self, acc: &mut TopKSketch, other: TopKSketch) {
        acc.merge(&other);
    }

    fn result(&self, acc: &TopKSketch) -> Vec<(String, u64)> {
        acc.top()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact_top(data: &[String], k: usize) -> Vec<(String, u64)> {
        let mut counts = hashbrown::HashMap::<&str, u64>::new();
        for w in data {
            *counts.entry(w).or_default() += 1;
        }
        let mut rows: Vec<(String, u64)> = counts.into_iter().map(|(w, n)| (w.to_string(), n)).collect();
        rows.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(k);
        rows
    }

    /// Skewed words: word `i` with probability ∝ 1/(i+1)^1.2, deterministic.
    fn skewed(len: usize, vocabulary: u64, seed: u64) -> Vec<String> {
        let weights: Vec<f64> = (1..=vocabulary).map(|i| 1.0 / (i as f64).powf(1.2)).collect();
        let total: f64 = weights.iter().sum();
        let mut cdf = Vec::new();
        let mut acc = 0.0;
        for w in weights {
            acc += w / total;
            cdf.push(acc);
        }
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                format!("w{}", cdf.partition_point(|&c| c < u))
            })
            .collect()
    }

    #[test]
    fn top_k_matches_the_exact_top_k_on_skewed_data_even_past_capacity() {
        // 20 000 distinct words, a 1024-slot map: purging happens, the heavy hitters survive.
        let data = skewed(300_000, 20_000, 7);
        let mut t = TopKSketch::new(10, 1024).unwrap();
        for w in &data {
            t.insert(w);
        }
        assert!(t.maximum_error() > 0, "the map purged");
        let exact = exact_top(&data, 10);
        let got = t.top();
        let names = |v: &[(String, u64)]| v.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&exact));
        for ((_, e), (_, n)) in got.iter().zip(&exact) {
            assert!(e >= n && e - n <= t.maximum_error(), "estimate {e} true {n}");
        }
    }

    proptest! {
        /// Under capacity the sketch is exact, and merging pieces equals one sketch.
        #[test]
        fn exact_under_capacity_and_merge_equals_whole(words in proptest::collection::vec(0u8..40, 0..400),
                                                       split in any::<usize>(), k in 1u32..6) {
            let data: Vec<String> = words.iter().map(|w| format!("w{w}")).collect();
            let cut = split % (data.len() + 1);
            let mut a = TopKSketch::new(k, 64).unwrap();
            let mut b = a.clone();
            for w in &data[..cut] { a.insert(w); }
            for w in &data[cut..] { b.insert(w); }
            a.merge(&b);
            prop_assert_eq!(a.top(), exact_top(&data, k as usize));
            let back = TopKSketch::from_bytes(&a.to_bytes()).unwrap();
            prop_assert_eq!(back.top(), a.top());
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = TopKSketch::from_bytes(&bytes);
        }
    }
}
