//! The Kafka sink operator: keyed messages into a topic, at least once without checkpoints,
//! exactly once with them (the protocol is described in `riffle_connectors::kafka::sink`).
//!
//! **With checkpoints**, each worker collects an epoch's messages and, when its input frontier
//! passes the epoch, writes every message it has not yet published into the epoch's checkpoint
//! (its part `kafka-sink.w<worker>`) before it lets its capability go: the checkpoint cannot
//! complete without them (pre-commit). A publisher thread per worker waits for the checkpoint
//! to complete and publishes the epoch in a transaction with its marker (commit), off the
//! worker's thread so that the dataflow does not wait for the broker. After a crash,
//! [`KafkaSink::new`] publishes what the restored checkpoint holds and the topic lacks before
//! the job starts.
//!
//! **Without checkpoints** each worker sends its messages through an idempotent producer as
//! they come and waits for their delivery at the end of the input: at least once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use riffle_connectors::kafka::{KafkaSinkSpec, KafkaUri, MessageBatch, PendingOutput};
use riffle_core::{Error, EventTime, Result};
use serde::Serialize;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::checkpoint::{CheckpointStore, SnapshotKind};
use crate::context::JobContext;
use crate::progress::{hold_frontier, message_time};
use crate::time::Time;

type VecBuilder<T> = CapacityContainerBuilder<Vec<T>>;

/// The checkpoint operator name of the sink's parts.
const OPERATOR: &str = "kafka-sink";

/// How long the other processes of a job wait, at the end, for process 0 to complete the last
/// checkpoint.
const LAST_CHECKPOINT_WAIT: Duration = Duration::from_secs(60);

/// A Kafka sink of a job, shared by its workers: the topic, and the publisher threads that
/// [`KafkaSink::finish`] waits for.
#[derive(Clone)]
pub struct KafkaSink {
    spec: Arc<KafkaSinkSpec>,
    publishers: Arc<Publishers>,
}

#[derive(Default)]
struct Publishers {
    threads: Mutex<Vec<std::thread::JoinHandle<Result<()>>>>,
    /// Set once the dataflow has ended: publishers finish what is complete and stop.
    finished: AtomicBool,
}

/// Borrowed [`PendingOutput`]: encodes the same bytes without copying the batches.
#[derive(Serialize)]
struct PendingOutputRef<'a> {
    writer: u32,
    peers: u32,
    epochs: Vec<(u64, &'a MessageBatch)>,
}

impl KafkaSink {
    /// A sink into `uri` (`kafka://BROKERS/TOPIC?props`). When the job resumes from a
    /// checkpoint, publishes what the checkpoint holds and the topic lacks (on process 0 only:
    /// call it before the job starts).
    pub fn new(uri: &str, ctx: &JobContext, process: usize) -> Result<Self> {
        let spec = KafkaSinkSpec::new(KafkaUri::parse(uri)?)?;
        if let Some(store) = ctx.checkpoints() {
            if store.restored_epoch().is_some() && process == 0 {
                let pending = store
                    .restored_parts(OPERATOR)
                    .iter()
                    .map(|(_, bytes)| crate::checkpoint::decode::<PendingOutput>(bytes, OPERATOR))
                    .collect::<Result<Vec<_>>>()?;
                let n = spec.recover(&pending, 0)?;
                if n > 0 {
                    tracing::warn!("{}: {n} epoch(s) published again on recovery", spec.uri().name());
                }
            }
        }
        Ok(KafkaSink {
            spec: Arc::new(spec),
            publishers: Arc::default(),
        })
    }

    /// Waits, once the job has ended, until every complete epoch is published.
    pub fn finish(&self) -> Result<()> {
        self.publishers.finished.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *self.publishers.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let mut first = Ok(());
        for t in threads {
            let result = t
                .join()
                .unwrap_or_else(|_| Err(Error::Execution("a Kafka publisher thread panicked".into())));
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

/// What a worker's operator shares with its publisher thread: the epochs written into
/// checkpoints and not yet published.
type Unpublished = Arc<Mutex<BTreeMap<u64, Arc<MessageBatch>>>>;

/// Writes `stream` into the sink; returns the completion stream for the commit operator.
pub(crate) fn kafka_sink<'s, D: crate::stream::Data>(
    stream: Stream<'s, Time, Vec<(EventTime, D)>>,
    ctx: Arc<JobContext>,
    sink: KafkaSink,
    mut key: impl FnMut(&D, &mut Vec<u8>) + 'static,
    mut value: impl FnMut(EventTime, &D, &mut Vec<u8>) + 'static,
) -> Stream<'s, Time, Vec<()>> {
    let worker = stream.scope().index();
    let peers = stream.scope().peers();
    let store = ctx.checkpoints().cloned();
    let first_epoch = store.as_ref().map_or(0, |s| s.start_epoch());
    stream.unary_frontier::<VecBuilder<()>, _, _, _>(Pipeline, "KafkaSink", move |cap, _info| {
        let mut held = vec![cap];
        let mut buffers: BTreeMap<u64, MessageBatch> = BTreeMap::new();
        let unpublished: Unpublished = Arc::default();
        let mut producer = None;
        match &store {
            Some(store) => spawn_publisher(
                &sink,
                Arc::clone(store),
                Arc::clone(&ctx),
                worker,
                Arc::clone(&unpublished),
            ),
            None => match sink.spec.producer() {
                Ok(p) => producer = Some(p),
                Err(e) => ctx.fail(e),
            },
        }
        let mut flushed = false;
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                let epoch = message_time(&cap).epoch.max(first_epoch);
                output.session(&cap).give(());
                ctx.metrics()
                    .records_out
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                let batch = buffers.entry(epoch).or_default();
                for (ts, d) in data.drain(..) {
                    batch.push_with(|out| key(&d, out), |out| value(ts, &d, out));
                }
            });
            if let Some(producer) = &producer {
                // At least once: send as the messages come, wait for them at the end.
                for (_, batch) in std::mem::take(&mut buffers) {
                    if let Err(e) = producer.send(&batch) {
                        ctx.fail(e);
                    }
                }
                if frontier.frontier().is_empty() && !flushed {
                    flushed = true;
                    if let Err(e) = producer.flush() {
                        ctx.fail(e);
                    }
                }
            } else if let Some(store) = &store {
                let open = crate::sink::open_epoch(frontier.frontier(), first_epoch);
                let closed: Vec<u64> = buffers.range(..open).map(|(e, _)| *e).collect();
                for epoch in closed {
                    let Some(batch) = buffers.remove(&epoch) else { continue };
                    if let Err(e) = pre_commit(store, &unpublished, (worker, peers), epoch, batch) {
                        ctx.fail(e);
                    }
                }
            }
            hold_frontier(&mut held, frontier.frontier());
        }
    })
}

/// Writes the messages of `epoch` and every earlier one not yet published into checkpoint
/// `epoch`, and hands `epoch` to the publisher.
fn pre_commit(
    store: &CheckpointStore,
    unpublished: &Unpublished,
    (worker, peers): (usize, usize),
    epoch: u64,
    batch: MessageBatch,
) -> Result<()> {
    let mut pending = unpublished.lock().unwrap_or_else(|p| p.into_inner());
    pending.insert(epoch, Arc::new(batch));
    let part = PendingOutputRef {
        writer: worker as u32,
        peers: peers as u32,
        epochs: pending.range(..=epoch).map(|(e, b)| (*e, &**b)).collect(),
    };
    let bytes = crate::checkpoint::encode(&part)?;
    drop(part);
    drop(pending);
    store.write(epoch, OPERATOR, worker, vec![(0, bytes)], SnapshotKind::Full)
}

/// Starts the thread that publishes `worker`'s epochs once their checkpoints are complete.
fn spawn_publisher(
    sink: &KafkaSink,
    store: Arc<CheckpointStore>,
    ctx: Arc<JobContext>,
    worker: usize,
    unpublished: Unpublished,
) {
    let spec = Arc::clone(&sink.spec);
    let publishers = Arc::clone(&sink.publishers);
    let thread_ctx = Arc::clone(&ctx);
    let thread = std::thread::Builder::new()
        .name(format!("riffle-kafka-publisher-w{worker}"))
        .spawn(move || {
            let result = publish_loop(&spec, &store, &thread_ctx, &publishers, worker, &unpublished);
            if let Err(e) = &result {
                thread_ctx.fail(Error::Execution(e.to_string()));
            }
            result
        });
    match thread {
        Ok(t) => sink
            .publishers
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t),
        Err(e) => ctx.fail(Error::Execution(format!("cannot start a Kafka publisher thread: {e}"))),
    }
}

fn publish_loop(
    spec: &KafkaSinkSpec,
    store: &CheckpointStore,
    ctx: &JobContext,
    publishers: &Publishers,
    worker: usize,
    unpublished: &Unpublished,
) -> Result<()> {
    let mut producer = None;
    let mut finished_at: Option<Instant> = None;
    loop {
        let finished = publishers.finished.load(Ordering::Acquire);
        let oldest = unpublished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .next()
            .copied();
        let Some(oldest) = oldest else {
            if finished || ctx.is_cancelled() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if ctx.is_cancelled() {
            return Ok(());
        }
        match store.completed_epoch(oldest) {
            Some(done) if done >= oldest => {
                let ready: Vec<(u64, Arc<MessageBatch>)> = unpublished
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .range(..=done)
                    .map(|(e, b)| (*e, Arc::clone(b)))
                    .collect();
                let producer = match &mut producer {
                    Some(p) => p,
                    None => producer.insert(spec.transactional(worker)?),
                };
                let last = ready.last().map_or(oldest, |(e, _)| *e);
                producer.publish(last, ready.iter().map(|(_, b)| &**b))?;
                let mut pending = unpublished.lock().unwrap_or_else(|p| p.into_inner());
                for (e, _) in &ready {
                    pending.remove(e);
                }
            }
            _ if finished => {
                // On process 0 the last checkpoint is complete by now; the others wait for its
                // manifest.
                let since = *finished_at.get_or_insert_with(Instant::now);
                if since.elapsed() > LAST_CHECKPOINT_WAIT {
                    return Err(Error::Execution(format!(
                        "{}: the results of epoch {oldest} are not published: its checkpoint did not complete (they will be when the job resumes from its checkpoint)",
                        spec.transactional_id(worker)
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}
