//! The DataStream API: typed streams of timestamped records, in the shape of Flink's.
//!
//! A job is a function that builds its dataflow on a [`StreamEnv`]; it runs once on every
//! worker (see [`crate::execute`]). Streams carry `(event time, record)` pairs in batches
//! stamped with a coarse [`Time`].
//!
//! Each operator is a small timely operator with the logic taken from `riffle_core`.

use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;

use riffle_connectors::{BlackholeSink, CommittedFileSink, LineSink, Sink, SocketSplit, SplitSpec};
use riffle_core::count_window::CountWindows;
use riffle_core::window::{TimeWindows, Window};
use riffle_core::EventTime;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::core::Concat;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::{Scope, Stream};
use timely::ExchangeData;

use crate::context::JobContext;
use crate::source::{
    leading_millis, open_line_splits, record_decoder, split_source, text_decoder, SplitReader, TimeMode,
    TimestampParser, DEFAULT_CHUNK_LINES,
};
use crate::time::Time;
use crate::window_op;

/// Data that can flow through a stream: sent between threads and processes.
pub trait Data: ExchangeData + Clone {}
impl<T: ExchangeData + Clone> Data for T {}

/// Keys of a keyed stream.
pub trait Key: Data + Hash + Eq {}
impl<T: Data + Hash + Eq> Key for T {}

/// The environment a job builds its dataflow in, on one worker.
pub struct StreamEnv<'s> {
    pub(crate) scope: Scope<'s, Time>,
    pub(crate) ctx: Arc<JobContext>,
}

impl<'s> StreamEnv<'s> {
    pub(crate) fn new(scope: Scope<'s, Time>, ctx: Arc<JobContext>) -> Self {
        StreamEnv { scope, ctx }
    }

    /// This worker's index among all workers of all processes.
    pub fn worker_index(&self) -> usize {
        self.scope.index()
    }

    /// The number of workers of all processes.
    pub fn workers(&self) -> usize {
        self.scope.peers()
    }

    /// The job context (counters, errors, clock).
    pub fn context(&self) -> &Arc<JobContext> {
        &self.ctx
    }

    /// Lines read from a TCP server, as Flink's `socketTextStream`: processing time, and the
    /// job's input ends when the server closes the connection.
    pub fn socket_text(&mut self, address: &str) -> DataStream<'s, String> {
        self.text(TextSource::new(vec![SplitSpec::new(SocketSplit::new(address))]))
    }

    /// Lines of a text source.
    pub fn text(&mut self, source: TextSource) -> DataStream<'s, String> {
        let parser = match source.mode {
            TimeMode::Processing => None,
            TimeMode::Event(_) => Some(source.parser.clone().unwrap_or_else(|| Rc::new(leading_millis))),
        };
        let readers = open_line_splits(
            &source.splits,
            self.worker_index(),
            self.workers(),
            &text_decoder(parser),
            &self.ctx,
        );
        let n_splits = source.splits.len();
        let stream = self.splits("TextSource", source.mode, readers, source.chunk_lines);
        if n_splits < self.workers() {
            stream.rebalance()
        } else {
            stream
        }
    }

    /// Records parsed from the lines of a text source by `parser` (which also gives each its
    /// event time; the source's time mode decides whether that time or the clock is used).
    /// Lines the parser rejects are counted and reported with their position.
    pub fn text_records<R: Data>(
        &mut self,
        source: TextSource,
        parser: crate::source::RecordParser<R>,
    ) -> DataStream<'s, R> {
        let readers = open_line_splits(
            &source.splits,
            self.worker_index(),
            self.workers(),
            &record_decoder(parser, matches!(source.mode, TimeMode::Event(_))),
            &self.ctx,
        );
        let n_splits = source.splits.len();
        let stream = self.splits("RecordSource", source.mode, readers, source.chunk_lines);
        if n_splits < self.workers() {
            stream.rebalance()
        } else {
            stream
        }
    }

    /// Records from splits this worker reads (split readers built by the caller for this
    /// worker only), stamped per chunk of `chunk` records.
    pub fn splits<D: Data>(
        &mut self,
        name: &str,
        mode: TimeMode,
        readers: Vec<(u32, Box<dyn SplitReader<D>>)>,
        chunk: usize,
    ) -> DataStream<'s, D> {
        let stream = split_source(self.scope, name, Arc::clone(&self.ctx), mode, readers, chunk);
        DataStream {
            stream,
            ctx: Arc::clone(&self.ctx),
        }
    }

    /// In-memory records, one list per split (split `i` is read by worker `i % workers`),
    /// `chunk` records per watermark step, in event time with `strategy`. An in-memory
    /// generator for tests and examples.
    pub fn from_splits<D: Data>(
        &mut self,
        splits: Vec<Vec<(EventTime, D)>>,
        chunk: usize,
        strategy: riffle_core::WatermarkStrategy,
    ) -> DataStream<'s, D> {
        let (me, n) = (self.worker_index(), self.workers());
        let readers: Vec<(u32, Box<dyn SplitReader<D>>)> = splits
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == me)
            .map(|(i, records)| {
                (
                    i as u32,
                    Box::new(crate::source::CollectionSplit::new(records, chunk)) as Box<dyn SplitReader<D>>,
                )
            })
            .collect();
        self.splits("Collection", TimeMode::Event(strategy), readers, chunk)
    }
}

/// A text source: splits, their time mode and how lines carry timestamps.
#[derive(Clone)]
pub struct TextSource {
    splits: Vec<SplitSpec>,
    mode: TimeMode,
    parser: Option<TimestampParser>,
    chunk_lines: usize,
}

impl TextSource {
    /// Lines of `splits` in processing time.
    pub fn new(splits: Vec<SplitSpec>) -> Self {
        TextSource {
            splits,
            mode: TimeMode::Processing,
            parser: None,
            chunk_lines: DEFAULT_CHUNK_LINES,
        }
    }

    /// Event time: every line starts with `<unix-millis><comma, tab or space>` (or what
    /// [`TextSource::timestamp_parser`] says), watermarks follow `strategy`.
    pub fn event_time(mut self, strategy: riffle_core::WatermarkStrategy) -> Self {
        self.mode = TimeMode::Event(strategy);
        self
    }

    /// How a line yields its event time and its text (default: [`leading_millis`]).
    pub fn timestamp_parser(mut self, parser: TimestampParser) -> Self {
        self.parser = Some(parser);
        self
    }

    /// Lines per chunk: watermarks advance between chunks (default 1024).
    pub fn chunk_lines(mut self, lines: usize) -> Self {
        self.chunk_lines = lines.max(1);
        self
    }
}

/// A stream of records of type `D`, each with its event time.
pub struct DataStream<'s, D: 'static> {
    pub(crate) stream: Stream<'s, Time, Vec<(EventTime, D)>>,
    pub(crate) ctx: Arc<JobContext>,
}

impl<D: Clone + 'static> Clone for DataStream<'_, D> {
    fn clone(&self) -> Self {
        DataStream {
            stream: self.stream.clone(),
            ctx: Arc::clone(&self.ctx),
        }
    }
}

type VecBuilder<T> = CapacityContainerBuilder<Vec<T>>;

impl<'s, D: Data> DataStream<'s, D> {
    /// Applies `f` to every record.
    pub fn map<D2: Data>(self, mut f: impl FnMut(D) -> D2 + 'static) -> DataStream<'s, D2> {
        let stream = self
            .stream
            .unary::<VecBuilder<(EventTime, D2)>, _, _, _>(Pipeline, "Map", |_, _| {
                move |input, output| {
                    input.for_each(|cap, data| {
                        // Build the output batch in a plain Vec and hand it over whole: cheaper
                        // than pushing record by record through the container builder.
                        let mut batch: Vec<(EventTime, D2)> = data.drain(..).map(|(ts, d)| (ts, f(d))).collect();
                        output.session(&cap).give_container(&mut batch);
                    });
                }
            });
        DataStream { stream, ctx: self.ctx }
    }

    /// Replaces every record by the records `f` returns (each with the input's event time).
    pub fn flat_map<D2: Data, I: IntoIterator<Item = D2>>(
        self,
        mut f: impl FnMut(D) -> I + 'static,
    ) -> DataStream<'s, D2> {
        let stream = self
            .stream
            .unary::<VecBuilder<(EventTime, D2)>, _, _, _>(Pipeline, "FlatMap", |_, _| {
                // Output batches of at most BATCH records, built in plain Vecs and handed over
                // whole: cheaper than pushing record by record through a container builder, and
                // small enough to stay below the allocator's mmap threshold.
                const BATCH: usize = 1024;
                let mut batch: Vec<(EventTime, D2)> = Vec::with_capacity(BATCH);
                move |input, output| {
                    input.for_each(|cap, data| {
                        let mut session = output.session(&cap);
                        for (ts, d) in data.drain(..) {
                            for d2 in f(d) {
                                batch.push((ts, d2));
                                if batch.len() == BATCH {
                                    session.give_container(&mut batch);
                                    batch = Vec::with_capacity(BATCH);
                                }
                            }
                        }
                        if !batch.is_empty() {
                            session.give_container(&mut batch);
                            batch = Vec::with_capacity(BATCH);
                        }
                    });
                }
            });
        DataStream { stream, ctx: self.ctx }
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(self, mut f: impl FnMut(&D) -> bool + 'static) -> DataStream<'s, D> {
        let stream = self
            .stream
            .unary::<VecBuilder<(EventTime, D)>, _, _, _>(Pipeline, "Filter", |_, _| {
                move |input, output| {
                    input.for_each(|cap, data| {
                        data.retain(|(_, d)| f(d));
                        output.session(&cap).give_container(data);
                    });
                }
            });
        DataStream { stream, ctx: self.ctx }
    }

    /// Spreads records evenly over all workers, as Flink's `rebalance`: batches go round
    /// robin to the workers whole (one message per batch, not per record), so a single
    /// reader can feed every worker cheaply.
    pub fn rebalance(self) -> DataStream<'s, D> {
        let packed =
            self.stream
                .unary::<VecBuilder<Vec<(EventTime, D)>>, _, _, _>(Pipeline, "RebalancePack", |_, _| {
                    move |input, output| {
                        input.for_each(|cap, data| output.session(&cap).give(std::mem::take(data)));
                    }
                });
        let mut next = 0u64;
        let pact = Exchange::new(move |_: &Vec<(EventTime, D)>| {
            next = next.wrapping_add(1);
            next
        });
        let stream = packed.unary::<VecBuilder<(EventTime, D)>, _, _, _>(pact, "Rebalance", |_, _| {
            move |input, output| {
                input.for_each(|cap, batches| {
                    let mut session = output.session(&cap);
                    for mut batch in batches.drain(..) {
                        session.give_container(&mut batch);
                    }
                });
            }
        });
        DataStream { stream, ctx: self.ctx }
    }

    /// Both streams' records.
    pub fn union(self, other: DataStream<'s, D>) -> DataStream<'s, D> {
        DataStream {
            stream: self.stream.concat(other.stream),
            ctx: self.ctx,
        }
    }

    /// Moves every record to the event time `f` returns for it (Flink's timestamp assigner
    /// inside a pipeline). Moving records later is always safe; a record moved before the
    /// watermark it travels with is late for the windows downstream (counted, as any late
    /// record).
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use riffle_core::WatermarkStrategy;
    /// # use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};
    /// let out = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&out);
    /// let ctx = Arc::new(JobContext::new(false, Arc::new(SystemClock)));
    /// execute(ExecutionConfig::threads(1), ctx, move |env| {
    ///     // (auction, expires): each auction moves to the time it closes.
    ///     env.from_splits(vec![vec![(100, (1u32, 900i64))]], 1, WatermarkStrategy::monotonous())
    ///         .assign_event_time(|_, a: &(u32, i64)| a.1)
    ///         .collect_into(Arc::clone(&sink));
    /// })
    /// .unwrap();
    /// assert_eq!(*out.lock().unwrap(), vec![(900, (1, 900))]);
    /// ```
    pub fn assign_event_time(self, mut f: impl FnMut(EventTime, &D) -> EventTime + 'static) -> DataStream<'s, D> {
        let stream = self
            .stream
            .unary::<VecBuilder<(EventTime, D)>, _, _, _>(Pipeline, "AssignEventTime", |_, _| {
                move |input, output| {
                    input.for_each(|cap, data| {
                        for (ts, d) in data.iter_mut() {
                            *ts = f(*ts, d);
                        }
                        output.session(&cap).give_container(data);
                    });
                }
            });
        DataStream { stream, ctx: self.ctx }
    }

    /// Partitions the stream by key: records with equal keys are processed by the same worker.
    pub fn key_by<K: Key>(self, key: impl Fn(&D) -> K + 'static) -> KeyedStream<'s, K, D> {
        KeyedStream {
            stream: self,
            key: Rc::new(key),
        }
    }

    /// Calls `f` with every record and its event time: a sink.
    pub fn for_each(self, mut f: impl FnMut(EventTime, D) + 'static) {
        let ctx = Arc::clone(&self.ctx);
        self.stream
            .unary::<VecBuilder<()>, _, _, _>(Pipeline, "ForEach", |_, _| {
                move |input, _output| {
                    input.for_each(|_cap, data| {
                        ctx.metrics()
                            .records_out
                            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        for (ts, d) in data.drain(..) {
                            f(ts, d);
                        }
                    });
                }
            });
    }

    /// Counts and drops every record, as Flink's blackhole sink: for measuring a job without
    /// the cost of writing its results. Takes part in checkpoints as any sink.
    pub fn discard(self) {
        self.write_to(Arc::new(BlackholeSink), |_, _| {}, |_, _, _| {})
    }

    /// Writes every record into `sink` (any connector, e.g. from
    /// [`SinkUri`](riffle_connectors::SinkUri)): `value` formats it (a line with its newline,
    /// or a message's value), `key` writes its key for sinks of keyed messages (nothing: no
    /// key). Exactly once with checkpoints when the sink has two-phase commit, at least once
    /// otherwise (see [`crate::sink`]). Before the job starts, call [`crate::sink::recover`];
    /// once it has ended, [`Sink::finish`](riffle_connectors::Sink::finish).
    pub fn write_to(
        self,
        sink: Arc<dyn Sink>,
        key: impl FnMut(&D, &mut Vec<u8>) + 'static,
        value: impl FnMut(EventTime, &D, &mut Vec<u8>) + 'static,
    ) {
        crate::sink::write_to_sink(self.stream, self.ctx, sink, key, value, true)
    }

    /// Formats every record with `format` (which appends one line, newline included) and
    /// writes the lines to `sink` batch by batch, each flushed when written. The records are
    /// the job's results (counted in `records_out`). A sink whose reader went away (stdout
    /// into `head`) stops the job cleanly.
    pub fn write_lines(self, sink: LineSink, format: impl FnMut(EventTime, &D, &mut Vec<u8>) + 'static) {
        self.write_to(Arc::new(sink), |_, _| {}, format)
    }

    /// As [`write_lines`](Self::write_lines) for a side output, such as the records later than
    /// the allowed lateness: its records are not counted as results.
    pub fn write_side_lines(self, sink: LineSink, format: impl FnMut(EventTime, &D, &mut Vec<u8>) + 'static) {
        crate::sink::write_to_sink(self.stream, self.ctx, Arc::new(sink), |_, _| {}, format, false)
    }

    /// Writes every record with `format` into files under `dir`, exactly once with
    /// checkpoints (see [`CommittedFileSink`]): results of an epoch become visible, as
    /// `dir/part-<epoch>-w<worker>`, when the epoch's checkpoint completes. Call
    /// [`crate::sink::recover`] with the same sink before the job starts.
    pub fn write_committed(self, dir: std::path::PathBuf, format: impl FnMut(EventTime, &D, &mut Vec<u8>) + 'static) {
        self.write_to(Arc::new(CommittedFileSink::new(dir)), |_, _| {}, format)
    }

    /// Prints every record with `Debug` to stdout, one per line.
    pub fn print(self)
    where
        D: std::fmt::Debug,
    {
        self.write_lines(LineSink::stdout(), |_, d, out| {
            use std::io::Write;
            let _ = writeln!(out, "{d:?}");
        })
    }

    /// Collects every record of this worker into `into`, for tests.
    pub fn collect_into(self, into: Arc<std::sync::Mutex<Vec<(EventTime, D)>>>) {
        self.for_each(move |ts, d| into.lock().unwrap_or_else(|p| p.into_inner()).push((ts, d)));
    }
}

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
