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

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use riffle_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::{kafka_error, KafkaUri, REQUEST_TIMEOUT};

/// How long a transaction's commit (which flushes its messages) may take.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Keyed messages, stored back to back in one buffer (no allocation per message).
///
/// ```
/// use riffle_connectors::kafka::MessageBatch;
/// let mut batch = MessageBatch::default();
/// batch.push(b"k", b"{\"v\":1}\n");
/// batch.push(b"", b"{\"v\":2}");
/// let messages: Vec<_> = batch.iter().collect();
/// assert_eq!(messages, vec![(Some(&b"k"[..]), &b"{\"v\":1}"[..]), (None, &b"{\"v\":2}"[..])]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBatch {
    bytes: Vec<u8>,
    /// Per message: where its key ends and where its value ends in `bytes`.
    ends: Vec<(u32, u32)>,
}

impl MessageBatch {
    /// Appends a message; an empty key is no key, and a trailing newline of `value` is dropped.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value.strip_suffix(b"\n").unwrap_or(value));
        self.ends.push((key_end, self.bytes.len() as u32));
    }

    /// Appends a message written by `key` and `value` straight into the batch's buffer.
    pub fn push_with(&mut self, key: impl FnOnce(&mut Vec<u8>), value: impl FnOnce(&mut Vec<u8>)) {
        key(&mut self.bytes);
        let key_end = self.bytes.len() as u32;
        value(&mut self.bytes);
        if self.bytes.len() > key_end as usize && self.bytes.last() == Some(&b'\n') {
            self.bytes.pop();
        }
        self.ends.push((key_end, self.bytes.len() as u32));
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The messages: (key, value), `None` for no key.
    pub fn iter(&self) -> impl Iterator<Item = (Option<&[u8]>, &[u8])> {
        let mut start = 0usize;
        self.ends.iter().map(move |&(key_end, end)| {
            let (k, e) = (key_end as usize, end as usize);
            let key = &self.bytes[start..k];
            let value = &self.bytes[k..e];
            start = e;
            ((!key.is_empty()).then_some(key), value)
        })
    }
}

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
