//! Kafka: topics as sources of lines (one split per partition) and as sinks of keyed messages
//! ([`sink`]),
//! on `rdkafka` (librdkafka, built vendored: a fresh machine needs no system library).
//!
//! **Partitions and workers.** A source topic's partitions are the source's splits, spread over
//! the job's workers the way every split is (partition `p` is read by worker `p % workers`, over
//! every process of a cluster). They are assigned by the job, not by the group protocol: a
//! checkpoint records each partition's offset and must find the partition on a known worker on
//! restore, whatever the group did meanwhile (Flink's `KafkaSource` does the same). The group
//! id names where offsets are committed for lag tools, and where a job without a checkpoint
//! starts: the group's committed offset if it has one, else `auto.offset.reset`.
//!
//! **Positions.** A partition's position is the offset of its next unread message. A chunk of
//! messages carries the offset of its first message in place of a line number and holds
//! consecutive offsets only (a gap, left by compaction or transaction markers, starts a new
//! chunk), so a malformed message is reported as `kafka://…/TOPIC/PARTITION:OFFSET`.
//!
//! Each partition has its own consumer (one librdkafka client, assigned one partition): simple
//! and independent per split, at the price of a client per partition and worker; sharing one
//! client per worker through partition queues is the next step for topics with many partitions.

pub mod sink;

pub use crate::sink::MessageBatch;
pub use sink::{KafkaProducer, KafkaSink, KafkaSinkSpec, PendingOutput, TransactionalProducer};

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use riffle_core::{Error, Result};

use crate::source::{LineChunk, LineReader, Poll, Source, Split, SplitPosition, SplitSpec};

/// How long metadata, watermark and committed-offset requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A Kafka endpoint from a `kafka://` URI: brokers, topic and librdkafka properties.
///
/// ```
/// use riffle_connectors::kafka::KafkaUri;
/// let uri = KafkaUri::parse("kafka://127.0.0.1:9092/words?group.id=wc&auto.offset.reset=latest&bounded=latest").unwrap();
/// assert_eq!(uri.brokers, "127.0.0.1:9092");
/// assert_eq!(uri.topic, "words");
/// assert_eq!(uri.property("group.id"), Some("wc"));
/// assert!(uri.bounded_latest);
/// assert!(KafkaUri::parse("kafka://127.0.0.1:9092").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaUri {
    /// `bootstrap.servers`: `HOST:PORT[,HOST:PORT…]`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// librdkafka properties, by their own names (`group.id`, `auto.offset.reset`, …).
    pub properties: Vec<(String, String)>,
    /// `bounded=latest`: stop at the offsets that were the latest when the job started.
    pub bounded_latest: bool,
}

impl KafkaUri {
    /// A builder: brokers (`HOST:PORT[,…]`) and topic, then librdkafka properties by their own
    /// names with [`set`](Self::set).
    ///
    /// ```
    /// use riffle_connectors::kafka::KafkaUri;
    /// use riffle_connectors::SourceUri;
    /// let uri = KafkaUri::new("127.0.0.1:9092", "words")
    ///     .set("group.id", "wc")
    ///     .set("auto.offset.reset", "latest")
    ///     .bounded_latest();
    /// assert_eq!(uri, KafkaUri::parse("kafka://127.0.0.1:9092/words?group.id=wc&auto.offset.reset=latest&bounded=latest").unwrap());
    /// let source = SourceUri::kafka(uri).unwrap(); // .splits() asks the brokers for the partitions
    /// # let _ = source;
    /// ```
    pub fn new(brokers: &str, topic: &str) -> KafkaUri {
        KafkaUri {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            properties: Vec::new(),
            bounded_latest: false,
        }
    }

    /// Sets a librdkafka property (`group.id`, `auto.offset.reset`, `security.protocol`, …).
    pub fn set(mut self, key: &str, value: &str) -> KafkaUri {
        self.properties.push((key.to_string(), value.to_string()));
        self
    }

    /// Stops the source at the offsets that were the latest when the job started.
    pub fn bounded_latest(mut self) -> KafkaUri {
        self.bounded_latest = true;
        self
    }

    /// Parses `kafka://HOST:PORT[,HOST:PORT…]/TOPIC[?key=value&…]`. `bounded=latest` is
    /// Riffle's; every other key is a librdkafka property, passed on as it is.
    pub fn parse(uri: &str) -> Result<KafkaUri> {
        let bad = |why: &str| {
            Error::Config(format!(
                "'{uri}': {why} (expected kafka://HOST:PORT/TOPIC?group.id=G&...)"
            ))
        };
        let rest = uri.strip_prefix("kafka://").ok_or_else(|| bad("not a kafka:// URI"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (brokers, topic) = path.split_once('/').ok_or_else(|| bad("no topic"))?;
        let topic = topic.trim_end_matches('/');
        if brokers.is_empty() || !brokers.split(',').all(|b| b.contains(':')) {
            return Err(bad("brokers must be HOST:PORT"));
        }
        if topic.is_empty() || topic.contains('/') {
            return Err(bad("one topic name"));
        }
        let mut out = KafkaUri {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            properties: Vec::new(),
            bounded_latest: false,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(&format!("'{pair}' is not key=value")))?;
            match k {
                "bounded" if v == "latest" => out.bounded_latest = true,
                "bounded" => return Err(bad(&format!("bounded={v}: only bounded=latest is known"))),
                "bootstrap.servers" => return Err(bad("give the brokers before the topic, not as bootstrap.servers")),
                _ => out.properties.push((k.to_string(), v.to_string())),
            }
        }
        Ok(out)
    }

    /// A property's value, if given.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The URI's name for messages: `kafka://BROKERS/TOPIC`.
    pub fn name(&self) -> String {
        format!("kafka://{}/{}", self.brokers, self.topic)
    }

    /// A client configuration with the brokers and the given properties, `defaults` first
    /// (the URI's properties override them).
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }
}

/// A source topic: the URI with the group id and reset policy settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSourceSpec {
    uri: KafkaUri,
}

/// One partition of a source topic, with the offset it stops at (bounded sources).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaPartitionSpec {
    /// The topic it belongs to.
    pub source: Arc<KafkaSourceSpec>,
    /// The partition.
    pub partition: i32,
    /// The offset to stop before (`bounded=latest`), if any.
    pub end: Option<i64>,
}

fn kafka_error(what: &str, uri: &KafkaUri, e: impl std::fmt::Display) -> Error {
    Error::Execution(format!("{what} {}: {e}", uri.name()))
}

impl KafkaSourceSpec {
    /// Settles the URI's defaults: `group.id=riffle`, `auto.offset.reset=earliest`.
    pub fn new(uri: KafkaUri) -> Result<Self> {
        match uri.property("auto.offset.reset") {
            None | Some("earliest" | "latest" | "smallest" | "largest" | "beginning" | "end") => {}
            Some(other) => {
                return Err(Error::Config(format!(
                    "{}: auto.offset.reset={other}: expected earliest or latest",
                    uri.name()
                )))
            }
        }
        Ok(KafkaSourceSpec { uri })
    }

    /// The URI.
    pub fn uri(&self) -> &KafkaUri {
        &self.uri
    }

    fn consumer(&self, partition_eof: bool) -> Result<BaseConsumer> {
        self.uri
            .client_config(&[
                ("group.id", "riffle"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", if partition_eof { "true" } else { "false" }),
                // Offsets of messages read are committed to the group every 5 s so that lag
                // tools see progress; a checkpoint, when there is one, decides where a restarted
                // job reads from.
                ("enable.auto.commit", "true"),
            ])
            .create()
            .map_err(|e| Error::Config(format!("{}: {e}", self.uri.name())))
    }

    /// The topic's partitions, as splits (asks the brokers for the topic's metadata; with
    /// `bounded=latest`, also for each partition's latest offset).
    pub fn partitions(&self) -> Result<Vec<KafkaPartitionSpec>> {
        let source = Arc::new(self.clone());
        let consumer = self.consumer(false)?;
        let metadata = consumer
            .fetch_metadata(Some(&self.uri.topic), REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("cannot read the metadata of", &self.uri, e))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.uri.topic)
            .ok_or_else(|| kafka_error("no metadata for", &self.uri, "the broker did not list the topic"))?;
        if let Some(e) = topic.error() {
            return Err(kafka_error(
                "cannot read",
                &self.uri,
                rdkafka::types::RDKafkaErrorCode::from(e),
            ));
        }
        let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        if ids.is_empty() {
            return Err(kafka_error(
                "cannot read",
                &self.uri,
                "the topic has no partitions (does it exist?)",
            ));
        }
        ids.into_iter()
            .map(|partition| {
                let end = if self.uri.bounded_latest {
                    let (_, high) = consumer
                        .fetch_watermarks(&self.uri.topic, partition, REQUEST_TIMEOUT)
                        .map_err(|e| {
                            kafka_error(
                                &format!("cannot read the latest offset of partition {partition} of"),
                                &self.uri,
                                e,
                            )
                        })?;
                    Some(high)
                } else {
                    None
                };
                Ok(KafkaPartitionSpec {
                    source: Arc::clone(&source),
                    partition,
                    end,
                })
            })
            .collect()
    }
}

impl Source for KafkaSourceSpec {
    fn name(&self) -> String {
        self.uri.name()
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        Ok(self.partitions()?.into_iter().map(SplitSpec::new).collect())
    }
}

impl Split for KafkaPartitionSpec {
    fn name(&self) -> String {
        KafkaPartitionSpec::name(self)
    }

    fn is_bounded(&self) -> bool {
        self.end.is_some()
    }

    fn is_replayable(&self) -> bool {
        true
    }

    fn open_at(&self, position: Option<SplitPosition>) -> Result<Box<dyn LineReader>> {
        KafkaPartitionSpec::open_at(self, position)
    }
}

impl KafkaPartitionSpec {
    /// The partition's name for messages: `kafka://BROKERS/TOPIC/PARTITION`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.source.uri.name(), self.partition)
    }

    /// Opens the partition at `position` (a checkpointed offset), or where the group left off,
    /// or where `auto.offset.reset` says.
    pub fn open_at(&self, position: Option<SplitPosition>) -> Result<Box<dyn LineReader>> {
        let uri = &self.source.uri;
        let consumer = self.source.consumer(self.end.is_some())?;
        let start = match position {
            Some(p) => p.offset as i64,
            None => self.start_offset(&consumer)?,
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&uri.topic, self.partition, Offset::Offset(start))
            .map_err(|e| kafka_error("cannot assign", uri, e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_error(&format!("cannot assign partition {} of", self.partition), uri, e))?;
        Ok(Box::new(KafkaPartitionReader {
            origin: self.name().into(),
            consumer,
            next: start,
            end: self.end,
            held: None,
            warned: None,
        }))
    }

    /// The group's committed offset, or the reset policy's end of the partition.
    fn start_offset(&self, consumer: &BaseConsumer) -> Result<i64> {
        let uri = &self.source.uri;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&uri.topic, self.partition);
        let committed = consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("cannot read the committed offsets of", uri, e))?;
        if let Some(Offset::Offset(o)) = committed.elements().first().map(|e| e.offset()) {
            return Ok(o);
        }
        let (low, high) = consumer
            .fetch_watermarks(&uri.topic, self.partition, REQUEST_TIMEOUT)
            .map_err(|e| {
                kafka_error(
                    &format!("cannot read the offsets of partition {} of", self.partition),
                    uri,
                    e,
                )
            })?;
        Ok(match uri.property("auto.offset.reset") {
            Some("latest" | "largest" | "end") => high,
            _ => low,
        })
    }
}

/// Reads one partition: messages as lines (payloads), in chunks of consecutive offsets.
struct KafkaPartitionReader {
    origin: Arc<str>,
    consumer: BaseConsumer,
    /// Offset of the next unread message.
    next: i64,
    end: Option<i64>,
    /// A message polled after a gap in offsets: it starts the next chunk.
    held: Option<(i64, Vec<u8>)>,
    /// When a transient error was last reported.
    warned: Option<std::time::Instant>,
}

/// Whether a consumer error ends the job: librdkafka's fatal errors and refused authorization;
/// the others (connections lost, leaders moving, timeouts) pass as librdkafka retries.
fn is_fatal(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match e {
        KafkaError::MessageConsumptionFatal(_) => true,
        KafkaError::MessageConsumption(code) => matches!(
            code,
            Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::SaslAuthenticationFailed
                | Code::Fatal
        ),
        _ => false,
    }
}

impl LineReader for KafkaPartitionReader {
    fn origin(&self) -> &Arc<str> {
        &self.origin
    }

    fn poll(&mut self, max_lines: usize) -> Result<Poll> {
        if self.end.is_some_and(|end| self.next >= end) {
            return Ok(Poll::Finished);
        }
        let mut chunk = LineChunk::default();
        if let Some((offset, payload)) = self.held.take() {
            chunk.first_line = offset as u64;
            chunk.lines.push(payload);
            self.next = offset + 1;
        }
        while chunk.lines.len() < max_lines {
            if self.end.is_some_and(|end| self.next >= end) {
                break;
            }
            let Some(message) = self.consumer.poll(Duration::ZERO) else {
                break;
            };
            let message = match message {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(_)) => {
                    // Only bounded sources ask for end-of-partition events: everything up to
                    // the partition's current end, which is at or past the bound, was read
                    // (the rest of the way were transaction markers or compacted away).
                    if let Some(end) = self.end {
                        self.next = self.next.max(end);
                    }
                    break;
                }
                Err(e) if is_fatal(&e) => return Err(Error::Execution(format!("{}: cannot read: {e}", self.origin))),
                Err(e) => {
                    // librdkafka reconnects and fetches again by itself (a broker restarting,
                    // a leader moving): say so, now and then, and keep reading.
                    if self.warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!("{}: {e} (retrying)", self.origin);
                        #[allow(clippy::disallowed_methods)] // throttles a log line: wall time
                        {
                            self.warned = Some(std::time::Instant::now());
                        }
                    }
                    break;
                }
            };
            let offset = message.offset();
            if offset < self.next {
                continue; // already read (a fetch restarted behind the position)
            }
            if self.end.is_some_and(|end| offset >= end) {
                self.next = offset;
                break;
            }
            let payload = message.payload().unwrap_or_default().to_vec();
            if !chunk.lines.is_empty() && offset != self.next {
                // A gap: the message starts the next chunk.
                self.held = Some((offset, payload));
                break;
            }
            if chunk.lines.is_empty() {
                chunk.first_line = offset as u64;
            }
            chunk.lines.push(payload);
            self.next = offset + 1;
        }
        Ok(if chunk.lines.is_empty() {
            Poll::Pending
        } else {
            Poll::Chunk(chunk)
        })
    }

    fn position(&self) -> Option<SplitPosition> {
        // The held message is not read yet: the position is where it starts.
        let next = self.held.as_ref().map_or(self.next, |(o, _)| *o);
        Some(SplitPosition {
            offset: next as u64,
            line: next as u64,
        })
    }
}
