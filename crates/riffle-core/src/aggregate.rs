//! Incremental aggregates: create an accumulator, add records, merge accumulators, read
//! the result.
//!
//! Because accumulators [`merge`](Aggregate::merge), the runtime pre-aggregates records on the
//! worker that reads them (per pane and key) and ships one accumulator per pane and key
//! through the keyed exchange instead of every record. Sliding windows merge the
//! accumulators of their panes when they fire.
//!
//! ```
//! use riffle_core::aggregate::{Aggregate, Sum};
//! let sum = Sum::new(|x: &u64| *x);
//! let mut a = sum.create();
//! sum.add(&mut a, 3);
//! let mut b = sum.create();
//! sum.add(&mut b, 4);
//! sum.merge(&mut a, b);
//! assert_eq!(sum.result(&a), 7);
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Data that can be an accumulator: moved between threads and processes.
pub trait AccData: Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> AccData for T {}

/// An incremental aggregate over records of type `In`.
///
/// Laws (checked by property tests): `merge` is associative and commutative with `create()`
/// as identity, and adding records to one accumulator equals adding them to several and
/// merging.
pub trait Aggregate<In>: Clone + Send + Sync + 'static {
    /// The partial state.
    type Acc: AccData;
    /// The value a window emits.
    type Output;
    /// An empty accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds one record.
    fn add(&self, acc: &mut Self::Acc, value: In);
    /// Merges `other` into `acc`.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result of the accumulated records.
    fn result(&self, acc: &Self::Acc) -> Self::Output;
}

/// Numbers that [`Sum`] and [`Avg`] can add.
pub trait Summable: Copy + Default + std::ops::AddAssign + AccData + PartialOrd {
    /// As a float, for averages.
    fn as_f64(self) -> f64;
}
macro_rules! summable {
    ($($t:ty),*) => {$(impl Summable for $t { #[inline] fn as_f64(self) -> f64 { self as f64 } })*};
}
summable!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize, f32, f64);

/// Sum of a numeric field.
#[derive(Clone)]
pub struct Sum<F> {
    field: F,
}
impl<F> Sum<F> {
    /// Sums `field(record)`.
    pub fn new(field: F) -> Self {
        Sum { field }
    }
}
impl<In, N: Summable, F: Fn(&In) -> N + Clone + Send + Sync + 'static> Aggregate<In> for Sum<F> {
    type Acc = N;
    type Output = N;
    fn create(&self) -> N {
        N::default()
    }
    #[inline]
    fn add(&self, acc: &mut N, value: In) {
        *acc += (self.field)(&value);
    }
    fn merge(&self, acc: &mut N, other: N) {
        *acc += other;
    }
    fn result(&self, acc: &N) -> N {
        *acc
    }
}

/// Number of records.
#[derive(Clone, Copy, Debug, Default)]
pub struct Count;
impl<In> Aggregate<In> for Count {
    type Acc = u64;
    type Output = u64;
    fn create(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _value: In) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Smallest value of a field (`None` for an empty window, which never fires).
#[derive(Clone)]
pub struct Min<F> {
    field: F,
}
impl<F> Min<F> {
    /// Minimum of `field(record)`.
    pub fn new(field: F) -> Self {
        Min { field }
    }
}
impl<In, V: PartialOrd + AccData, F: Fn(&In) -> V + Clone + Send + Sync + 'static> Aggregate<In> for Min<F> {
    type Acc = Option<V>;
    type Output = Option<V>;
    fn create(&self) -> Option<V> {
        None
    }
    fn add(&self, acc: &mut Option<V>, value: In) {
        let v = (self.field)(&value);
        if acc.as_ref().is_none_or(|a| v < *a) {
            *acc = Some(v);
        }
    }
    fn merge(&self, acc: &mut Option<V>, other: Option<V>) {
        if let Some(v) = other {
            if acc.as_ref().is_none_or(|a| v < *a) {
                *acc = Some(v);
            }
        }
    }
    fn result(&self, acc: &Option<V>) -> Option<V> {
        acc.clone()
    }
}

/// Largest value of a field (`None` for an empty window, which never fires).
#[derive(Clone)]
pub struct Max<F> {
    field: F,
}
impl<F> Max<F> {
    /// Maximum of `field(record)`.
    pub fn new(field: F) -> Self {
        Max { field }
    }
}
impl<In, V: PartialOrd + AccData, F: Fn(&In) -> V + Clone + Send + Sync + 'static> Aggregate<In> for Max<F> {
    type Acc = Option<V>;
    type Output = Option<V>;
    fn create(&self) -> Option<V> {
        None
    }
    fn add(&self, acc: &mut Option<V>, value: In) {
        let v = (self.field)(&value);
        if acc.as_ref().is_none_or(|a| v > *a) {
            *acc = Some(v);
        }
    }
    fn merge(&self, acc: &mut Option<V>, other: Option<V>) {
        if let Some(v) = other {
            if acc.as_ref().is_none_or(|a| v > *a) {
                *acc = Some(v);
            }
        }
    }
    fn result(&self, acc: &Option<V>) -> Option<V> {
        acc.clone()
    }
}

/// Mean of a numeric field.
#[derive(Clone)]
pub struct Avg<F> {
    field: F,
}
impl<F> Avg<F> {
    /// Mean of `field(record)`.
    pub fn new(field: F) -> Self {
        Avg { field }
    }
}
/// Accumulator of [`Avg`]: sum and count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AvgAcc {
    /// Sum of the values.
    pub sum: f64,
    /// Number of values.
    pub count: u64,
}
impl<In, N: Summable, F: Fn(&In) -> N + Clone + Send + Sync + 'static> Aggregate<In> for Avg<F> {
    type Acc = AvgAcc;
    type Output = f64;
    fn create(&self) -> AvgAcc {
        AvgAcc::default()
    }
    fn add(&self, acc: &mut AvgAcc, value: In) {
        acc.sum += (self.field)(&value).as_f64();
        acc.count += 1;
    }
    fn merge(&self, acc: &mut AvgAcc, other: AvgAcc) {
        acc.sum += other.sum;
        acc.count += other.count;
    }
    fn result(&self, acc: &AvgAcc) -> f64 {
        if acc.count == 0 {
            0.0
        } else {
            acc.sum / acc.count as f64
        }
    }
}

/// Collects every record of the window, for process-window functions that need them all.
///
/// The order of the collected records is unspecified (it depends on where they were
/// pre-aggregated); sort them if the function's result depends on order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Collect;
impl<In: AccData> Aggregate<In> for Collect {
    type Acc = Vec<In>;
    type Output = Vec<In>;
    fn create(&self) -> Vec<In> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<In>, value: In) {
        acc.push(value);
    }
    fn merge(&self, acc: &mut Vec<In>, mut other: Vec<In>) {
        acc.append(&mut other);
    }
    fn result(&self, acc: &Vec<In>) -> Vec<In> {
        acc.clone()
    }
}

/// An aggregate written as four closures, for user-defined aggregates without a type.
///
/// ```
/// use riffle_core::aggregate::{Aggregate, FnAggregate};
/// // Longest word.
/// let longest = FnAggregate::new(
///     String::new,
///     |acc: &mut String, w: String| if w.len() > acc.len() { *acc = w },
///     |acc: &mut String, o: String| if o.len() > acc.len() { *acc = o },
///     |acc: &String| acc.clone(),
/// );
/// let mut a = longest.create();
/// longest.add(&mut a, "hi".to_string());
/// longest.add(&mut a, "hello".to_string());
/// assert_eq!(longest.result(&a), "hello");
/// ```
#[derive(Clone)]
pub struct FnAggregate<C, A, M, R> {
    create: C,
    add: A,
    merge: M,
    result: R,
}
impl<C, A, M, R> FnAggregate<C, A, M, R> {
    /// An aggregate from its four operations.
    pub fn new(create: C, add: A, merge: M, result: R) -> Self {
        FnAggregate {
            create,
            add,
            merge,
            result,
        }
    }
}
impl<In, Acc, Out, C, A, M, R> Aggregate<In> for FnAggregate<C, A, M, R>
where
    Acc: AccData,
    C: Fn() -> Acc + Clone + Send + Sync + 'static,
    A: Fn(&mut Acc, In) + Clone + Send + Sync + 'static,
    M: Fn(&mut Acc, Acc) + Clone + Send + Sync + 'static,
    R: Fn(&Acc) -> Out + Clone + Send + Sync + 'static,
{
    type Acc = Acc;
    type Output = Out;
    fn create(&self) -> Acc {
        (self.create)()
    }
    fn add(&self, acc: &mut Acc, value: In) {
        (self.add)(acc, value)
    }
    fn merge(&self, acc: &mut Acc, other: Acc) {
        (self.merge)(acc, other)
    }
    fn result(&self, acc: &Acc) -> Out {
        (self.result)(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split_merge<A: Aggregate<i64>>(agg: &A, xs: &[i64], cut: usize) -> A::Acc {
        let (l, r) = xs.split_at(cut.min(xs.len()));
        let mut a = agg.create();
        l.iter().for_each(|x| agg.add(&mut a, *x));
        let mut b = agg.create();
        r.iter().for_each(|x| agg.add(&mut b, *x));
        // merge in the "wrong" order to check commutativity too
        agg.merge(&mut b, a);
        b
    }

    proptest! {
        #[test]
        fn merge_of_parts_equals_whole(xs in proptest::collection::vec(-1000i64..1000, 0..50), cut in 0usize..50) {
            let sum = Sum::new(|x: &i64| *x);
            let whole: i64 = xs.iter().sum();
            prop_assert_eq!(sum.result(&split_merge(&sum, &xs, cut)), whole);
            prop_assert_eq!(Aggregate::<i64>::result(&Count, &split_merge(&Count, &xs, cut)), xs.len() as u64);
            let min = Min::new(|x: &i64| *x);
            prop_assert_eq!(min.result(&split_merge(&min, &xs, cut)), xs.iter().min().copied());
            let max = Max::new(|x: &i64| *x);
            prop_assert_eq!(max.result(&split_merge(&max, &xs, cut)), xs.iter().max().copied());
            let avg = Avg::new(|x: &i64| *x);
            let got = avg.result(&split_merge(&avg, &xs, cut));
            let expect = if xs.is_empty() { 0.0 } else { whole as f64 / xs.len() as f64 };
            prop_assert!((got - expect).abs() < 1e-9);
            let mut collected = Collect.result(&split_merge(&Collect, &xs, cut));
            collected.sort();
            let mut sorted = xs.clone();
            sorted.sort();
            prop_assert_eq!(collected, sorted);
        }
    }
}
