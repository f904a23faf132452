//! Kafka as a sink: keyed messages into a topic, at least once with a plain producer, or
//! exactly once with transactions committed after the job's checkpoints.
//!
//! **Exactly once.** librdkafka cannot resume a transaction that another client opened (Flink's
//! Java sink does it through reflection on the Java client), so a transaction cannot span a
//! crash. Riffle therefore writes an epoch's messages into the epoch's checkpoint first (the
//! engine's part of the protocol) and publishes them only once the checkpoint is complete, in a
//! transaction that also commits a **marker**: the epoch, stored as the committed offset of the
//! marker group `<transactional.id>` on partition 0 of the output topic, atomically with the
//! messages (`send_offsets_to_transaction`). A job restored from a checkpoint first fences every
//! transactional id of the previous run (`init_transactions` aborts a transaction left open by
//! a dead worker), reads each id's marker, and publishes again only the epochs past it
//! ([`KafkaSinkSpec::recover`]). Each epoch thus reaches readers with
//! `isolation.level=read_committed` exactly once, whether the crash came before, during or
//! after its transaction.
//!
//! Transactional ids are `<prefix>-w<worker>`, the prefix being the URI's `transactional.id`
//! (default `riffle-<topic>`): two jobs writing into one topic need two prefixes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use riffle_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::{kafka_error, KafkaUri, REQUEST_TIMEOUT};
use crate::sink::{
    Checkpoints, Delivery, Layout, MessageBatch, OutputBatch, Restored, Sink, SinkWriter, WriterContext,
};

/// How long a transaction's commit (which flushes its messages) may take.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The messages of one sink worker that were in a checkpoint and perhaps not yet published:
/// what a restore hands to [`KafkaSinkSpec::recover`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOutput {
    /// The worker (its transactional id is `<prefix>-w<writer>`).
    pub writer: u32,
    /// How many workers the job that wrote it had (all their ids are fenced on recovery).
    pub peers: u32,
    /// Epochs and their messages, oldest first.
    pub epochs: Vec<(u64, MessageBatch)>,
}

/// A sink topic: `kafka://BROKERS/TOPIC?props`, librdkafka producer properties passed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSinkSpec {
    uri: KafkaUri,
    prefix: String,
}

/// The first delivery error of a producer, kept by its context (librdkafka reports deliveries
/// through a callback).
#[derive(Default)]
struct DeliveryErrors {
    first: Mutex<Option<String>>,
}

impl ClientContext for DeliveryErrors {}

impl ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

impl KafkaSinkSpec {
    /// A sink on `uri`; rejects source-only options.
    ///
    /// ```
    /// use riffle_connectors::kafka::{KafkaSinkSpec, KafkaUri};
    /// let spec = KafkaSinkSpec::new(KafkaUri::parse("kafka://127.0.0.1:9092/counts").unwrap()).unwrap();
    /// assert_eq!(spec.transactional_id(2), "riffle-counts-w2");
    /// assert!(KafkaSinkSpec::new(KafkaUri::parse("kafka://127.0.0.1:9092/counts?bounded=latest").unwrap()).is_err());
    /// ```
    pub fn new(uri: KafkaUri) -> Result<Self> {
        if uri.bounded_latest {
            return Err(Error::Config(format!(
                "{}: bounded=latest is for sources, not sinks",
                uri.name()
            )));
        }
        let prefix = uri
            .property("transactional.id")
            .map_or_else(|| format!("riffle-{}", uri.topic), str::to_string);
        Ok(KafkaSinkSpec { uri, prefix })
    }

    /// The URI.
    pub fn uri(&self) -> &KafkaUri {
        &self.uri
    }

    /// The transactional id of `worker`.
    pub fn transactional_id(&self, worker: usize) -> String {
        format!("{}-w{worker}", self.prefix)
    }

    /// A producer for at-least-once delivery (idempotent, acks from all replicas).
    pub fn producer(&self) -> Result<KafkaProducer> {
        let producer: ThreadedProducer<DeliveryErrors> = self
            .uri
            .client_config(&[("enable.idempotence", "true"), ("linger.ms", "5")])
            .create_with_context(DeliveryErrors::default())
            .map_err(|e| Error::Config(format!("{}: {e}", self.uri.name())))?;
        Ok(KafkaProducer {
            producer,
            topic: self.uri.topic.clone(),
            name: self.uri.name(),
        })
    }

    /// The transactional producer of `worker`, fencing any older producer with its id (and
    /// aborting that producer's open transaction).
    pub fn transactional(&self, worker: usize) -> Result<TransactionalProducer> {
        let id = self.transactional_id(worker);
        let mut config = self.uri.client_config(&[("linger.ms", "5")]);
        config.set("transactional.id", &id);
        let producer: BaseProducer<DeliveryErrors> = config
            .create_with_context(DeliveryErrors::default())
            .map_err(|e| Error::Config(format!("{}: {e}", self.uri.name())))?;
        producer
            .init_transactions(COMMIT_TIMEOUT)
            .map_err(|e| kafka_error(&format!("cannot start transactions ({id}) on"), &self.uri, e))?;
        let markers: BaseConsumer = self
            .uri
            .client_config(&[("isolation.level", "read_committed")])
            .set("group.id", &id)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| Error::Config(format!("{}: {e}", self.uri.name())))?;
        Ok(TransactionalProducer {
            producer,
            markers,
            spec: self.clone(),
            id,
        })
    }

    /// Makes the topic hold, exactly once, every epoch of `pending` (what the restored
    /// checkpoint holds of each worker): fences the transactional ids of `0..fence` and of
    /// every worker of the runs that wrote `pending`, then publishes each worker's epochs past
    /// its marker. Returns the number of epochs published again.
    pub fn recover(&self, pending: &[PendingOutput], fence: usize) -> Result<usize> {
        let peers = pending.iter().map(|p| p.peers as usize).max().unwrap_or(0).max(fence);
        let mut republished = 0;
        for worker in 0..peers {
            let producer = self.transactional(worker)?;
            let Some(output) = pending.iter().find(|p| p.writer as usize == worker) else {
                continue;
            };
            let marker = producer.committed_epoch()?;
            let todo: Vec<&(u64, MessageBatch)> = output
                .epochs
                .iter()
                .filter(|(e, _)| marker.is_none_or(|m| *e > m))
                .collect();
            if let Some(&&(last, _)) = todo.last() {
                tracing::warn!(
                    "{}: publishing again {} epoch(s) up to {last} that were checkpointed but not committed",
                    producer.id,
                    todo.len()
                );
                producer.publish(last, todo.iter().map(|(_, b)| b))?;
                republished += todo.len();
            }
        }
        Ok(republished)
    }
}

/// An at-least-once producer (see [`KafkaSinkSpec::producer`]).
pub struct KafkaProducer {
    producer: ThreadedProducer<DeliveryErrors>,
    topic: String,
    name: String,
}

/// librdkafka's answer to a send: a refused record comes back with the error.
type SendResult<'a> = std::result::Result<(), (KafkaError, BaseRecord<'a, [u8], [u8]>)>;

/// The two producers the sink uses, as far as sending goes.
trait SendRecord {
    /// librdkafka's send (its error hands the record back).
    #[allow(clippy::result_large_err)] // rdkafka's own signature
    fn send_record<'a>(&self, record: BaseRecord<'a, [u8], [u8]>) -> SendResult<'a>;
    /// Lets the queue drain a little.
    fn wait(&self);
}

impl SendRecord for ThreadedProducer<DeliveryErrors> {
    fn send_record<'a>(&self, record: BaseRecord<'a, [u8], [u8]>) -> SendResult<'a> {
        self.send(record)
    }
    fn wait(&self) {
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl SendRecord for BaseProducer<DeliveryErrors> {
    fn send_record<'a>(&self, record: BaseRecord<'a, [u8], [u8]>) -> SendResult<'a> {
        self.send(record)
    }
    fn wait(&self) {
        self.poll(Duration::from_millis(10));
    }
}

/// Sends every message of `batch` into `topic`, waiting while the producer's queue is full.
fn send_batch(producer: &impl SendRecord, batch: &MessageBatch, topic: &str, name: &str) -> Result<()> {
    for (key, value) in batch.iter() {
        let mut record = BaseRecord::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match producer.send_record(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.wait();
                }
                Err((e, _)) => return Err(Error::Execution(format!("{name}: cannot send a message: {e}"))),
            }
        }
    }
    Ok(())
}

impl KafkaProducer {
    /// Queues every message of `batch` (waits while librdkafka's queue is full).
    pub fn send(&self, batch: &MessageBatch) -> Result<()> {
        self.delivery_error()?;
        send_batch(&self.producer, batch, &self.topic, &self.name)
    }

    /// Waits until every queued message is delivered.
    pub fn flush(&self) -> Result<()> {
        self.producer
            .flush(COMMIT_TIMEOUT)
            .map_err(|e| Error::Execution(format!("{}: cannot deliver the messages: {e}", self.name)))?;
        self.delivery_error()
    }

    fn delivery_error(&self) -> Result<()> {
        let first = self
            .producer
            .context()
            .first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match first {
            Some(e) => Err(Error::Execution(format!(
                "{}: a message was not delivered: {e}",
                self.name
            ))),
            None => Ok(()),
        }
    }
}

/// The transactional producer of one sink worker (see [`KafkaSinkSpec::transactional`]).
pub struct TransactionalProducer {
    producer: BaseProducer<DeliveryErrors>,
    /// A client of the marker group (its group metadata goes into the transactions).
    markers: BaseConsumer,
    spec: KafkaSinkSpec,
    id: String,
}

impl TransactionalProducer {
    /// The newest epoch whose transaction committed, from the marker.
    pub fn committed_epoch(&self) -> Result<Option<u64>> {
        let uri = &self.spec.uri;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&uri.topic, 0);
        let committed = self
            .markers
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error(&format!("cannot read the marker of {} on", self.id), uri, e))?;
        Ok(match committed.elements().first().map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o > 0 => Some(o as u64 - 1),
            _ => None,
        })
    }

    /// Publishes `batches` in one transaction with the marker `epoch`.
    pub fn publish<'a>(&self, epoch: u64, batches: impl IntoIterator<Item = &'a MessageBatch>) -> Result<()> {
        let uri = &self.spec.uri;
        let fail = |what: &str, e: KafkaError| kafka_error(&format!("{} ({what}, epoch {epoch}):", self.id), uri, e);
        self.producer.begin_transaction().map_err(|e| fail("begin", e))?;
        let result = (|| {
            for batch in batches {
                send_batch(&self.producer, batch, &uri.topic, &uri.name())?;
                self.producer.poll(Duration::ZERO);
            }
            let mut marker = TopicPartitionList::new();
            marker
                .add_partition_offset(&uri.topic, 0, Offset::Offset(epoch as i64 + 1))
                .map_err(|e| fail("marker", e))?;
            let group = self
                .markers
                .group_metadata()
                .ok_or_else(|| kafka_error(&format!("{}: no group metadata for the marker of", self.id), uri, ""))?;
            self.producer
                .send_offsets_to_transaction(&marker, &group, COMMIT_TIMEOUT)
                .map_err(|e| fail("marker", e))?;
            self.producer
                .commit_transaction(COMMIT_TIMEOUT)
                .map_err(|e| fail("commit", e))
        })();
        if result.is_err() {
            // Best effort: a fenced or failed producer cannot abort, and its transaction is
            // aborted by the next init_transactions of its id anyway.
            let _ = self.producer.abort_transaction(REQUEST_TIMEOUT);
        }
        result
    }
}

/// The checkpoint part name of the sink's writers.
const STATE_NAME: &str = "kafka-sink";

/// How long the other processes of a job wait, at the end, for process 0 to complete the last
/// checkpoint.
const LAST_CHECKPOINT_WAIT: Duration = Duration::from_secs(60);

/// `kafka://BROKERS/TOPIC?props` as a sink of a job: keyed messages, at least once without
/// checkpoints, exactly once with them.
///
/// **With checkpoints**, each worker collects an epoch's messages and, at pre-commit, writes
/// every message it has not yet published into the epoch's checkpoint (its part
/// `kafka-sink.w<worker>`): the checkpoint cannot complete without them. A publisher thread
/// per worker waits for the checkpoint to complete and publishes the epoch in a transaction
/// with its marker (commit), off the worker's thread so that the dataflow does not wait for
/// the broker. After a crash, [`Sink::recover`] publishes what the restored checkpoint holds
/// and the topic lacks before the job starts.
///
/// **Without checkpoints** each worker sends its messages through an idempotent producer as
/// they come and waits for their delivery when the input ends: at least once.
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

/// What a worker's writer shares with its publisher thread: the epochs written into
/// checkpoints and not yet published.
type Unpublished = Arc<Mutex<BTreeMap<u64, Arc<MessageBatch>>>>;

impl KafkaSink {
    /// A sink into `uri` (`kafka://BROKERS/TOPIC?props`).
    pub fn parse(uri: &str) -> Result<Self> {
        Ok(KafkaSink {
            spec: Arc::new(KafkaSinkSpec::new(KafkaUri::parse(uri)?)?),
            publishers: Arc::default(),
        })
    }

    /// The topic's sink spec.
    pub fn spec(&self) -> &KafkaSinkSpec {
        &self.spec
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> String {
        self.spec.uri().name()
    }

    fn layout(&self) -> Layout {
        Layout::Messages
    }

    fn delivery(&self) -> Delivery {
        Delivery::ExactlyOnce
    }

    fn state_name(&self) -> &str {
        STATE_NAME
    }

    /// Publishes what the restored checkpoint holds and the topic lacks (on the first process).
    fn recover(&self, restored: Option<Restored<'_>>, first_process: bool) -> Result<()> {
        let Some(Restored { parts, .. }) = restored else {
            return Ok(());
        };
        if !first_process {
            return Ok(());
        }
        let pending = parts
            .iter()
            .map(|(_, bytes)| {
                bincode::deserialize::<PendingOutput>(bytes).map_err(|e| {
                    Error::Execution(format!("cannot decode the checkpointed output of {STATE_NAME}: {e}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let n = self.spec.recover(&pending, 0)?;
        if n > 0 {
            tracing::warn!("{}: {n} epoch(s) published again on recovery", self.spec.uri().name());
        }
        Ok(())
    }

    fn writer(&self, at: WriterContext) -> Result<Box<dyn SinkWriter>> {
        let WriterContext {
            worker,
            peers,
            checkpoints,
            ..
        } = at;
        let unpublished: Unpublished = Arc::default();
        let producer = match &checkpoints {
            Some(checkpoints) => {
                self.spawn_publisher(Arc::clone(checkpoints), worker, Arc::clone(&unpublished));
                None
            }
            None => Some(self.spec.producer()?),
        };
        Ok(Box::new(KafkaWriter {
            producer,
            checkpoints,
            unpublished,
            buffers: BTreeMap::new(),
            worker,
            peers,
        }))
    }

    /// Waits, once the job has ended, until every complete epoch is published.
    fn finish(&self) -> Result<()> {
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

impl KafkaSink {
    /// Starts the thread that publishes `worker`'s epochs once their checkpoints are complete.
    fn spawn_publisher(&self, checkpoints: Arc<dyn Checkpoints>, worker: usize, unpublished: Unpublished) {
        let spec = Arc::clone(&self.spec);
        let publishers = Arc::clone(&self.publishers);
        let thread_checkpoints = Arc::clone(&checkpoints);
        let thread = std::thread::Builder::new()
            .name(format!("riffle-kafka-publisher-w{worker}"))
            .spawn(move || {
                let result = publish_loop(&spec, &*thread_checkpoints, &publishers, worker, &unpublished);
                if let Err(e) = &result {
                    thread_checkpoints.fail(Error::Execution(e.to_string()));
                }
                result
            });
        match thread {
            Ok(t) => self
                .publishers
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(t),
            Err(e) => checkpoints.fail(Error::Execution(format!("cannot start a Kafka publisher thread: {e}"))),
        }
    }
}

/// One worker's writer: sends at once (at least once), or collects each epoch for its
/// checkpoint and publisher (exactly once).
struct KafkaWriter {
    producer: Option<KafkaProducer>,
    checkpoints: Option<Arc<dyn Checkpoints>>,
    unpublished: Unpublished,
    buffers: BTreeMap<u64, MessageBatch>,
    worker: usize,
    peers: usize,
}

impl SinkWriter for KafkaWriter {
    fn write(&mut self, epoch: u64, batch: &mut OutputBatch) -> Result<()> {
        let OutputBatch::Messages(messages) = batch else {
            return Err(Error::Execution(
                "the Kafka sink takes keyed messages, not lines".into(),
            ));
        };
        let messages = std::mem::take(messages);
        if let Some(producer) = &self.producer {
            // At least once: send as the messages come, wait for them at the end.
            return producer.send(&messages);
        }
        match self.buffers.entry(epoch) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(messages);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().append(&messages),
        }
        Ok(())
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<()> {
        if let Some(producer) = &self.producer {
            return producer.flush();
        }
        let (Some(checkpoints), Some(batch)) = (&self.checkpoints, self.buffers.remove(&epoch)) else {
            return Ok(());
        };
        // Writes the messages of `epoch` and every earlier one not yet published into
        // checkpoint `epoch`, and hands `epoch` to the publisher.
        let mut pending = self.unpublished.lock().unwrap_or_else(|p| p.into_inner());
        pending.insert(epoch, Arc::new(batch));
        let part = PendingOutputRef {
            writer: self.worker as u32,
            peers: self.peers as u32,
            epochs: pending.range(..=epoch).map(|(e, b)| (*e, &**b)).collect(),
        };
        let bytes =
            bincode::serialize(&part).map_err(|e| Error::Execution(format!("cannot encode a snapshot: {e}")))?;
        drop(part);
        drop(pending);
        checkpoints.store(epoch, self.worker, bytes)
    }
}

fn publish_loop(
    spec: &KafkaSinkSpec,
    checkpoints: &dyn Checkpoints,
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
            if finished || checkpoints.job_failed() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if checkpoints.job_failed() {
            return Ok(());
        }
        match checkpoints.completed_epoch(oldest) {
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
                #[allow(clippy::disallowed_methods)] // a timeout: wall time
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
