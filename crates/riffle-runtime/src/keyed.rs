//! Keyed streams and what is built on them: time and count windows with their aggregates,
//! rolling aggregates, deduplication, and the joins (interval, window, temporal, lookup).
//! The operators themselves are in `window_op.rs`, `rolling_op.rs`, `dedup_op.rs` and
//! `join_op.rs`.

use std::rc::Rc;

use riffle_core::count_window::CountWindows;
use riffle_core::window::{TimeWindows, Window};
use serde::{Deserialize, Serialize};

use crate::stream::{Data, DataStream, Key};
use crate::window_op;

/// A stream partitioned by key.
pub struct KeyedStream<'s, K, D: 'static> {
    pub(crate) stream: DataStream<'s, D>,
    pub(crate) key: Rc<dyn Fn(&D) -> K>,
}

impl<'s, K: Key, D: Data> KeyedStream<'s, K, D> {
    /// Time windows: tumbling, sliding, session or global.
    pub fn window(self, windows: impl Into<TimeWindows>) -> WindowedStream<'s, K, D> {
        WindowedStream {
            keyed: self,
            windows: windows.into(),
            lateness: 0,
        }
    }

    /// The running aggregate of each key over all of time (no window), as an updating result:
    /// `(key, result)` each time the watermark advances past records that changed the key
    /// (see `rolling_op`). The last update of a key is the aggregate of all its records.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use riffle_core::aggregate::Sum;
    /// # use riffle_core::WatermarkStrategy;
    /// # use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};
    /// let out = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&out);
    /// let ctx = Arc::new(JobContext::new(false, Arc::new(SystemClock)));
    /// execute(ExecutionConfig::threads(2), ctx, move |env| {
    ///     let sales = vec![(0, ('a', 3u64)), (10, ('b', 1)), (20, ('a', 4))];
    ///     env.from_splits(vec![sales], 1, WatermarkStrategy::monotonous())
    ///         .key_by(|s: &(char, u64)| s.0)
    ///         .rolling(Sum::new(|s: &(char, u64)| s.1))
    ///         .collect_into(Arc::clone(&sink));
    /// })
    /// .unwrap();
    /// let got = out.lock().unwrap().clone();
    /// // The last update of each key is its total.
    /// let last = |k| got.iter().filter(|(_, (key, _))| *key == k).max_by_key(|(ts, _)| *ts).map(|(_, (_, v))| *v);
    /// assert_eq!((last('a'), last('b')), (Some(7), Some(1)));
    /// ```
    pub fn rolling<A>(self, agg: A) -> DataStream<'s, (K, A::Output)>
    where
        A: riffle_core::aggregate::Aggregate<D>,
        A::Output: Data,
    {
        crate::rolling_op::rolling(self, agg)
    }

    /// Tumbling count windows of `size` records per key.
    pub fn count_window(self, size: u64) -> riffle_core::Result<CountWindowedStream<'s, K, D>> {
        Ok(CountWindowedStream {
            keyed: self,
            shape: CountWindows::tumbling(size)?,
        })
    }

    /// Drops every record whose key was seen within the previous `within` of event time
    /// (Flink's "deduplicate, keep first" over an interval), with one counting Bloom filter per
    /// key group sized for `expected_keys` keys per interval at false-positive rate `fp_rate`
    /// (a false positive drops a first occurrence; a duplicate never gets through). Records
    /// are decided once the watermark passes them, in event-time order; see
    /// `riffle_sketch::dedup`. Returns the kept records.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use std::time::Duration;
    /// # use riffle_core::WatermarkStrategy;
    /// # use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};
    /// let kept = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&kept);
    /// let ctx = Arc::new(JobContext::new(false, Arc::new(SystemClock)));
    /// execute(ExecutionConfig::threads(2), ctx, move |env| {
    ///     let clicks = vec![(0, 'a'), (100, 'a'), (150, 'b'), (1_500, 'a')];
    ///     env.from_splits(vec![clicks], 1, WatermarkStrategy::monotonous())
    ///         .key_by(|c: &char| *c)
    ///         .dedup(Duration::from_secs(1), 1_000, 0.001)
    ///         .expect("valid configuration")
    ///         .collect_into(Arc::clone(&sink));
    /// })
    /// .unwrap();
    /// let mut got = kept.lock().unwrap().clone();
    /// got.sort();
    /// assert_eq!(got, vec![(0, 'a'), (150, 'b'), (1_500, 'a')]);
    /// ```
    pub fn dedup(
        self,
        within: std::time::Duration,
        expected_keys: u64,
        fp_rate: f64,
    ) -> riffle_core::Result<DataStream<'s, D>> {
        Ok(self.dedup_with_duplicates(within, expected_keys, fp_rate)?.0)
    }

    /// [`dedup`](Self::dedup), also returning the dropped duplicates.
    pub fn dedup_with_duplicates(
        self,
        within: std::time::Duration,
        expected_keys: u64,
        fp_rate: f64,
    ) -> riffle_core::Result<(DataStream<'s, D>, DataStream<'s, D>)> {
        let within = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
        crate::dedup_op::dedup(self, within, expected_keys, fp_rate)
    }

    /// Interval join with `other` (symmetric hash join): pairs with
    /// `self.ts + lower ≤ other.ts ≤ self.ts + upper`, emitted as soon as the second record of a
    /// pair arrives; unmatched rows of outer joins when they can no longer match.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use riffle_core::join::{IntervalBounds, JoinKind};
    /// # use riffle_core::WatermarkStrategy;
    /// # use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};
    /// let pairs = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&pairs);
    /// let ctx = Arc::new(JobContext::new(false, Arc::new(SystemClock)));
    /// execute(ExecutionConfig::threads(2), ctx, move |env| {
    ///     let s = WatermarkStrategy::bounded_out_of_orderness(0);
    ///     let orders = env.from_splits(vec![vec![(100, (1u32, 7u32)), (500, (2, 8))]], 1, s).key_by(|o: &(u32, u32)| o.0);
    ///     let payments = env.from_splits(vec![vec![(130, (1u32, 70u32)), (900, (2, 80))]], 1, s).key_by(|p: &(u32, u32)| p.0);
    ///     // A payment within 0..=200 ms after its order.
    ///     let joined = orders.interval_join(payments, IntervalBounds::new(0, 200).unwrap(), JoinKind::Inner);
    ///     joined.rows.map(|r| (r.key, r.left.map(|o| o.1), r.right.map(|p| p.1))).collect_into(Arc::clone(&sink));
    /// })
    /// .unwrap();
    /// let got: Vec<_> = pairs.lock().unwrap().iter().map(|(ts, r)| (*ts, *r)).collect();
    /// assert_eq!(got, vec![(130, (1, Some(7), Some(70)))]);
    /// ```
    pub fn interval_join<R: Data>(
        self,
        other: KeyedStream<'s, K, R>,
        bounds: riffle_core::join::IntervalBounds,
        kind: riffle_core::join::JoinKind,
    ) -> crate::join_op::Joined<'s, K, D, R> {
        let logic = crate::join_op::IntervalLogic(riffle_core::join::IntervalJoinState::new(bounds, kind));
        joined(crate::join_op::keyed_binary(self, other, "IntervalJoin", logic))
    }

    /// Window join with `other`: per window and key, every pair of a record of each side
    /// (tumbling, sliding and session windows), emitted when the window fires; outer joins
    /// also emit a window's rows that have no partner.
    pub fn window_join<R: Data>(
        self,
        other: KeyedStream<'s, K, R>,
        windows: impl Into<TimeWindows>,
        kind: riffle_core::join::JoinKind,
    ) -> crate::join_op::Joined<'s, K, D, R> {
        let logic = crate::join_op::WindowLogic(riffle_core::join::WindowJoinState::new(windows.into(), kind));
        joined(crate::join_op::keyed_binary(self, other, "WindowJoin", logic))
    }

    /// Event-time temporal join with a table given as a changelog of `(key, change)`: each
    /// record joins the row its key had at the record's event time (waiting for the table's
    /// watermark to pass it). `left_outer` keeps records whose key had no row.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use riffle_core::join::Change;
    /// # use riffle_core::WatermarkStrategy;
    /// # use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};
    /// let out = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&out);
    /// let ctx = Arc::new(JobContext::new(false, Arc::new(SystemClock)));
    /// execute(ExecutionConfig::threads(2), ctx, move |env| {
    ///     let s = WatermarkStrategy::bounded_out_of_orderness(0);
    ///     // Exchange rates per currency (1 = EUR), in hundredths.
    ///     let rates = vec![(0, (1u32, Change::Upsert(110u32))), (100, (1, Change::Upsert(120)))];
    ///     let orders = vec![(50, (1u32, 7u32)), (150, (1, 8))];
    ///     let rates = env.from_splits(vec![rates], 1, s);
    ///     env.from_splits(vec![orders], 1, s)
    ///         .key_by(|o: &(u32, u32)| o.0)
    ///         .temporal_join(rates, false)
    ///         .rows
    ///         .map(|r| (r.left.map(|o| o.1), r.right))
    ///         .collect_into(Arc::clone(&sink));
    /// })
    /// .unwrap();
    /// let mut got: Vec<_> = out.lock().unwrap().iter().map(|(ts, r)| (*ts, *r)).collect();
    /// got.sort();
    /// assert_eq!(got, vec![(50, (Some(7), Some(110))), (150, (Some(8), Some(120)))]);
    /// ```
    pub fn temporal_join<V: Data>(
        self,
        changelog: DataStream<'s, (K, riffle_core::join::Change<V>)>,
        left_outer: bool,
    ) -> crate::join_op::Joined<'s, K, D, V, (K, riffle_core::join::Change<V>)> {
        let logic = crate::join_op::TemporalLogic(riffle_core::join::TemporalJoinState::new(left_outer));
        let table = changelog.key_by(|c: &(K, riffle_core::join::Change<V>)| c.0.clone());
        joined(crate::join_op::keyed_binary(self, table, "TemporalJoin", logic))
    }

    /// Lookup join with a table given as a changelog of `(key, change)`: each record joins the
    /// latest row of its key when it arrives (processing-time semantics, as Flink's lookup
    /// join: the answer depends on how the two inputs interleave). `left_outer` keeps records
    /// without a row.
    pub fn lookup_join<V: Data>(
        self,
        changelog: DataStream<'s, (K, riffle_core::join::Change<V>)>,
        left_outer: bool,
    ) -> DataStream<'s, crate::join_op::JoinResult<K, D, V>> {
        let logic = crate::join_op::LookupLogic {
            table: hashbrown::HashMap::new(),
            left_outer,
            _stream: std::marker::PhantomData,
        };
        let table = changelog.key_by(|c: &(K, riffle_core::join::Change<V>)| c.0.clone());
        crate::join_op::keyed_binary(self, table, "LookupJoin", logic).rows
    }

    /// Sliding count windows: every `slide` records of a key, the last `size` of them.
    pub fn count_window_sliding(self, size: u64, slide: u64) -> riffle_core::Result<CountWindowedStream<'s, K, D>> {
        Ok(CountWindowedStream {
            keyed: self,
            shape: CountWindows::sliding(size, slide)?,
        })
    }
}

fn joined<'s, K, L, R, LR>(
    parts: crate::join_op::BinaryOutput<'s, crate::join_op::JoinResult<K, L, R>, L, LR>,
) -> crate::join_op::Joined<'s, K, L, R, LR> {
    crate::join_op::Joined {
        rows: parts.rows,
        late_left: parts.late_left,
        late_right: parts.late_right,
        state: parts.state,
    }
}

/// One result of a window: the window, the key and the aggregate. Its event time is the
/// window's last millisecond.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowResult<K, R> {
    /// The window.
    pub window: Window,
    /// The key.
    pub key: K,
    /// The aggregate of the key's records in the window.
    pub value: R,
}

/// A keyed stream cut into time windows.
pub struct WindowedStream<'s, K, D: 'static> {
    keyed: KeyedStream<'s, K, D>,
    windows: TimeWindows,
    lateness: i64,
}

impl<'s, K: Key, D: Data> WindowedStream<'s, K, D> {
    /// Keeps windows for `lateness` after they fire: records that late update them and the
    /// update is emitted (see `riffle_core::window_state`).
    pub fn allowed_lateness(mut self, lateness: std::time::Duration) -> Self {
        self.lateness = lateness.as_millis().min(i64::MAX as u128) as i64;
        self
    }

    /// Aggregates each key's records per window with `agg`; records later than the allowed
    /// lateness are counted and returned in the second stream.
    pub fn aggregate_with_late<A>(self, agg: A) -> (DataStream<'s, WindowResult<K, A::Output>>, DataStream<'s, D>)
    where
        A: riffle_core::aggregate::Aggregate<D>,
        A::Output: Data,
    {
        window_op::time_window(self.keyed, self.windows, self.lateness, agg)
    }

    /// Aggregates each key's records per window with `agg`. Late records are counted in the
    /// job's metrics; use [`WindowedStream::aggregate_with_late`] to keep them.
    pub fn aggregate<A>(self, agg: A) -> DataStream<'s, WindowResult<K, A::Output>>
    where
        A: riffle_core::aggregate::Aggregate<D>,
        A::Output: Data,
    {
        self.aggregate_with_late(agg).0
    }

    /// Sum of `field` per key and window.
    pub fn sum<N: riffle_core::aggregate::Summable>(
        self,
        field: impl Fn(&D) -> N + Clone + Send + Sync + 'static,
    ) -> DataStream<'s, WindowResult<K, N>> {
        self.aggregate(riffle_core::aggregate::Sum::new(field))
    }

    /// Number of records per key and window.
    pub fn count(self) -> DataStream<'s, WindowResult<K, u64>> {
        self.aggregate(riffle_core::aggregate::Count)
    }

    /// Minimum of `field` per key and window.
    pub fn min<V: PartialOrd + Data + Send + Sync>(
        self,
        field: impl Fn(&D) -> V + Clone + Send + Sync + 'static,
    ) -> DataStream<'s, WindowResult<K, Option<V>>> {
        self.aggregate(riffle_core::aggregate::Min::new(field))
    }

    /// Maximum of `field` per key and window.
    pub fn max<V: PartialOrd + Data + Send + Sync>(
        self,
        field: impl Fn(&D) -> V + Clone + Send + Sync + 'static,
    ) -> DataStream<'s, WindowResult<K, Option<V>>> {
        self.aggregate(riffle_core::aggregate::Max::new(field))
    }

    /// Mean of `field` per key and window.
    pub fn avg<N: riffle_core::aggregate::Summable>(
        self,
        field: impl Fn(&D) -> N + Clone + Send + Sync + 'static,
    ) -> DataStream<'s, WindowResult<K, f64>> {
        self.aggregate(riffle_core::aggregate::Avg::new(field))
    }

    /// A process-window function: `f` sees the key, the window and all its records (in no
    /// particular order) and returns the result.
    pub fn process<R: Data>(self, f: impl Fn(&K, Window, Vec<D>) -> R + 'static) -> DataStream<'s, WindowResult<K, R>> {
        self.aggregate(riffle_core::aggregate::Collect)
            .map(move |r: WindowResult<K, Vec<D>>| WindowResult {
                value: f(&r.key, r.window, r.value),
                window: r.window,
                key: r.key,
            })
    }
}

/// A keyed stream cut into count windows.
pub struct CountWindowedStream<'s, K, D: 'static> {
    keyed: KeyedStream<'s, K, D>,
    shape: CountWindows,
}

impl<'s, K: Key, D: Data> CountWindowedStream<'s, K, D> {
    /// Aggregates each count window with `agg`.
    pub fn aggregate<A>(self, agg: A) -> DataStream<'s, WindowResult<K, A::Output>>
    where
        A: riffle_core::aggregate::Aggregate<D>,
        A::Output: Data,
    {
        window_op::count_window(self.keyed, self.shape, agg)
    }

    /// Sum of `field` per count window.
    pub fn sum<N: riffle_core::aggregate::Summable>(
        self,
        field: impl Fn(&D) -> N + Clone + Send + Sync + 'static,
    ) -> DataStream<'s, WindowResult<K, N>> {
        self.aggregate(riffle_core::aggregate::Sum::new(field))
    }
}
