//! The DataStream API: typed streams of timestamped records, in the shape of Flink's, and
//! their stateless operators (map, flat_map, filter, rebalance, union, event-time
//! assignment, key_by).
//!
//! A job is a function that builds its dataflow on a [`StreamEnv`] (sources, in `env.rs`); it
//! runs once on every worker (see [`crate::execute()`]). Streams carry `(event time, record)`
//! pairs in batches stamped with a coarse [`Time`]. Keyed streams, windows and
//! joins are in `keyed.rs`; sinks in [`crate::sink`].
//!
//! Each operator is a small timely operator with the logic taken from `riffle_core`.

use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;

use riffle_core::EventTime;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::core::Concat;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::ExchangeData;

use crate::context::JobContext;
use crate::time::Time;

pub use crate::env::{StreamEnv, TextSource};
pub use crate::keyed::{CountWindowedStream, KeyedStream, WindowResult, WindowedStream};

/// Data that can flow through a stream: sent between threads and processes.
pub trait Data: ExchangeData + Clone {}
impl<T: ExchangeData + Clone> Data for T {}

/// Keys of a keyed stream.
pub trait Key: Data + Hash + Eq {}
impl<T: Data + Hash + Eq> Key for T {}

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
}
