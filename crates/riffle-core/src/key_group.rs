//! Key groups: the unit in which keyed state is partitioned and assigned to workers.
//!
//! As in Flink, every key hashes to one of a fixed number of key groups
//! ([`KEY_GROUPS`], the job's maximum parallelism) and every key group belongs to exactly one
//! worker: worker `i` of `n` owns the contiguous range of groups `g` with
//! `g * n / KEY_GROUPS == i`. Because the group of a key never depends on the number of
//! workers, a checkpoint taken with `n` workers can be restored on `m` workers by moving whole
//! key groups.
//!
//! The hash is XXH3 (64 bit) over the key's `std::hash::Hash` encoding, a specified
//! algorithm that gives the same answer in every process and every run; `std`'s default
//! hasher is randomly seeded and would not.

use std::hash::{Hash, Hasher};

/// The number of key groups (the maximum parallelism of a job).
pub const KEY_GROUPS: u32 = 128;

/// A key group: `0..KEY_GROUPS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyGroup(pub u16);

/// A `Hasher` that collects the key's `Hash` encoding and digests it with one-shot XXH3.
///
/// Keys are short (words, ids): copying their bytes into a stack buffer and hashing once is
/// several times faster than XXH3's streaming state. Longer keys spill to the streaming
/// state; both paths give the same digest.
struct StableHasher {
    buf: [u8; 64],
    len: usize,
    spill: Option<Box<xxhash_rust::xxh3::Xxh3>>,
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        match &self.spill {
            Some(state) => state.digest(),
            None => xxhash_rust::xxh3::xxh3_64(&self.buf[..self.len]),
        }
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if let Some(state) = self.spill.as_mut() {
            state.update(bytes);
        } else if self.len + bytes.len() <= self.buf.len() {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            let mut state = Box::new(xxhash_rust::xxh3::Xxh3::new());
            state.update(&self.buf[..self.len]);
            state.update(bytes);
            self.spill = Some(state);
        }
    }
}

/// The stable 64-bit hash of a key: XXH3 of its `Hash` encoding.
///
/// ```
/// use riffle_core::key_group::stable_hash;
/// let long = "x".repeat(1000);
/// assert_eq!(stable_hash(&long), stable_hash(&long.clone()));
/// assert_ne!(stable_hash("a"), stable_hash("b"));
/// ```
#[inline]
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = StableHasher {
        buf: [0; 64],
        len: 0,
        spill: None,
    };
    key.hash(&mut h);
    h.finish()
}

impl KeyGroup {
    /// The key group of a key.
    ///
    /// ```
    /// use riffle_core::key_group::{KeyGroup, KEY_GROUPS};
    /// let g = KeyGroup::of("hello");
    /// assert_eq!(g, KeyGroup::of("hello"));
    /// assert!(u32::from(g.0) < KEY_GROUPS);
    /// ```
    pub fn of<K: Hash + ?Sized>(key: &K) -> KeyGroup {
        Self::of_hash(stable_hash(key))
    }

    /// The key group of a key by its [`stable_hash`].
    #[inline]
    pub fn of_hash(hash: u64) -> KeyGroup {
        // Fibonacci-free reduction: the low bits of XXH3 are well mixed.
        KeyGroup((hash % u64::from(KEY_GROUPS)) as u16)
    }

    /// The worker (of `workers`) that owns this key group.
    ///
    /// ```
    /// use riffle_core::key_group::KeyGroup;
    /// assert_eq!(KeyGroup(0).worker(4), 0);
    /// assert_eq!(KeyGroup(127).worker(4), 3);
    /// assert_eq!(KeyGroup(64).worker(2), 1);
    /// ```
    pub fn worker(self, workers: usize) -> usize {
        (usize::from(self.0) * workers) / KEY_GROUPS as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_owns_a_contiguous_range() {
        for n in 1..=KEY_GROUPS as usize {
            let owners: Vec<usize> = (0..KEY_GROUPS as u16).map(|g| KeyGroup(g).worker(n)).collect();
            assert!(owners.windows(2).all(|w| w[0] <= w[1]));
            assert_eq!(owners[0], 0);
            assert_eq!(*owners.last().unwrap(), n - 1);
        }
    }

    #[test]
    fn keys_spread_over_groups() {
        let mut seen = [0u32; KEY_GROUPS as usize];
        for i in 0..10_000 {
            seen[KeyGroup::of(&format!("key{i}")).0 as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 40 && c < 130), "{seen:?}");
    }

    #[test]
    fn buffered_and_streaming_hashes_agree() {
        for len in [0usize, 1, 10, 63, 64, 65, 200] {
            let key = "k".repeat(len);
            let mut streaming = xxhash_rust::xxh3::Xxh3::new();
            key.hash(&mut XxhRef(&mut streaming));
            assert_eq!(stable_hash(&key), streaming.digest(), "len {len}");
        }
    }

    struct XxhRef<'a>(&'a mut xxhash_rust::xxh3::Xxh3);
    impl Hasher for XxhRef<'_> {
        fn finish(&self) -> u64 {
            self.0.digest()
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes)
        }
    }
}
