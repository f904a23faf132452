//! Distinct counting and frequency sketches, usable as aggregates in any window.
//!
//! Riffle counts distinct elements and heavy hitters per key and window with:
//!
//! | structure | module | memory | answers | forgets? |
//! |---|---|---|---|---|
//! | exact hash set | [`exact`] | one entry per distinct item | exact distinct count | by rebuilding |
//! | counting Bloom filter | [`counting_bloom`] | `m` small counters | membership (false positives) | yes: `remove` |
//! | HyperLogLog | [`hll`] | `2^p` registers | distinct count, ±1.04/√2^p | no (merge panes) |
//! | Count-Min | [`count_min`] | `d × w` counters | frequency, overestimates ≤ εN | no |
//! | frequent items | [`top_k`] | `k`-sized map | top-k with error bounds | no |
//!
//! Each structure merges (so sliding windows merge pane sketches instead of adding each record
//! to every window) and serialises to a compact, versioned, checksummed byte string (see
//! [`codec`]) that checkpoints will store.
//!
//! All sketches hash items with [`riffle_core::key_group::stable_hash`] (XXH3 over the item's
//! `Hash` encoding): stable across processes and runs, so sketches built on different workers
//! merge.

// A library does not panic on a value it could not get: it returns an error that says which.
#![warn(clippy::expect_used)]

pub mod codec;
pub mod count_min;
pub mod counting_bloom;
pub mod dedup;
pub mod exact;
pub mod hll;
pub mod top_k;

pub use codec::DecodeError;
pub use count_min::CountMinSketch;
pub use counting_bloom::CountingBloomFilter;
pub use exact::ExactDistinct;
pub use hll::{ApproxDistinct, HyperLogLog};
pub use top_k::{TopK, TopKSketch};

/// Sizing errors of the sketches are configuration errors of the job.
macro_rules! config_error {
    ($($t:ty),*) => {$(
        impl From<$t> for riffle_core::Error {
            fn from(e: $t) -> Self {
                riffle_core::Error::Config(e.to_string())
            }
        }
    )*};
}
config_error!(
    hll::PrecisionError,
    counting_bloom::BloomConfigError,
    count_min::CountMinConfigError,
    top_k::TopKConfigError
);
