//! Exact distinct counting: a hash set per key and window.
//!
//! Memory grows with the number of distinct items, which is what the sketches avoid; it is the
//! reference the sketches are tested against, and the right choice when windows are small.
//!
//! ```
//! use riffle_core::aggregate::Aggregate;
//! use riffle_sketch::ExactDistinct;
//! let agg = ExactDistinct::new(|w: String| w);
//! let mut a = agg.create();
//! agg.add(&mut a, "x".to_string());
//! agg.add(&mut a, "x".to_string());
//! let mut b = agg.create();
//! agg.add(&mut b, "y".to_string());
//! agg.merge(&mut a, b);
//! assert_eq!(agg.result(&a), 2);
//! ```

use std::hash::Hash;

use hashbrown::HashSet;
use riffle_core::aggregate::{AccData, Aggregate};

/// Number of distinct `field` values per window, exactly.
#[derive(Clone)]
pub struct ExactDistinct<F> {
    field: F,
}

impl<F> ExactDistinct<F> {
    /// Counts the distinct values `field` takes out of each record.
    pub fn new(field: F) -> Self {
        ExactDistinct { field }
    }
}

impl<In, T, F> Aggregate<In> for ExactDistinct<F>
where
    T: Hash + Eq + AccData,
    F: Fn(In) -> T + Clone + Send + Sync + 'static,
{
    type Acc = HashSet<T>;
    type Output = u64;

    fn create(&self) -> HashSet<T> {
        HashSet::new()
    }

    #[inline]
    fn add(&self, acc: &mut HashSet<T>, value: In) {
        acc.insert((self.field)(value));
    }

    fn merge(&self, acc: &mut HashSet<T>, other: HashSet<T>) {
        if acc.len() < other.len() {
            let small = std::mem::replace(acc, other);
            acc.extend(small);
        } else {
            acc.extend(other);
        }
    }

    fn result(&self, acc: &HashSet<T>) -> u64 {
        acc.len() as u64
    }
}
