//! `riffle bench kafka`: messages/s that Riffle's Kafka source consumes and its sink produces,
//! text and JSON, on 1 and more workers, beside a hand-written single-threaded librdkafka loop
//! doing the same work on the same topic in the same run.
//!
//! Two jobs per format: **consume** (read the topic to its end, parse each message: text lines
//! as they are, JSON objects for their key and time, count them) and **pipe** (consume, then
//! produce each record into an output topic, at least once, waiting for every delivery). The
//! input topic is first filled by the hand-written producer, which is timed too.
//!
//! The broker is librdkafka's mock cluster in this process unless `--brokers` names one (its
//! topics must exist: see `scripts/bench-kafka.sh`). The mock cluster speaks the wire protocol
//! over loopback but shares this process's cores, so the figures are a floor for the client
//! side, not a broker benchmark.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use riffle_connectors::generator::WordGenerator;
use riffle_connectors::json::JsonRecordFormat;
use riffle_connectors::kafka::KafkaSink;
use riffle_connectors::Sink;
use riffle_connectors::SourceUri;
use riffle_core::{Error, Result};
use riffle_runtime::{execute, ExecutionConfig, JobContext, TextSource};

/// Arguments of `riffle bench kafka`.
#[derive(clap::Args, Debug)]
pub struct KafkaBenchArgs {
    /// A running broker (`HOST:PORT`) whose topics `riffle-bench-{text,json}` and
    /// `riffle-bench-{text,json}-out-w<N>` exist; by default librdkafka's mock cluster.
    #[arg(long)]
    brokers: Option<String>,
    /// Messages in the input topic (the mock cluster keeps 5 MB per partition: 400 000 JSON
    /// messages need 8 partitions).
    #[arg(long, default_value_t = 400_000)]
    messages: u64,
    /// Partitions of the topics the mock cluster creates.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Worker counts to run, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Repetitions of each consume and pipe run; the best is reported (the mock cluster shares
    /// the cores, so single runs are noisy).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
        }
    }

    /// Message `i`: a generated word line, or a JSON object holding it.
    fn message(self, gen: &WordGenerator, i: u64, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Format::Text => gen.line(i, out),
            Format::Json => {
                let mut line = Vec::new();
                gen.line(i, &mut line);
                let text = String::from_utf8_lossy(&line);
                let (ts, words) = text.split_once(' ').unwrap_or((&text, ""));
                let key = words.split(' ').next().unwrap_or_default();
                let _ = serde_json::to_writer(
                    &mut *out,
                    &serde_json::json!({"ts": ts.parse::<i64>().unwrap_or(0), "key": key, "text": words}),
                );
            }
        }
    }
}

fn kafka(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Execution(format!("bench kafka: {what}: {e}"))
}

/// Runs the benchmark and prints a table.
pub fn run(args: KafkaBenchArgs) -> Result<()> {
    let mock = match &args.brokers {
        Some(_) => None,
        None => Some(rdkafka::mocking::MockCluster::new(1).map_err(|e| kafka("mock cluster", e))?),
    };
    let brokers = match (&args.brokers, &mock) {
        (Some(b), _) => b.clone(),
        (None, Some(m)) => m.bootstrap_servers(),
        (None, None) => unreachable!("a mock cluster exists when no brokers are given"),
    };
    let gen = WordGenerator {
        lines: args.messages,
        words_per_line: 3,
        vocabulary: 10_000,
        ..WordGenerator::default()
    };
    println!(
        "riffle bench kafka: {} messages, {} ({}), {} partitions",
        args.messages,
        brokers,
        if mock.is_some() {
            "librdkafka mock cluster in this process"
        } else {
            "external broker"
        },
        args.partitions
    );
    println!("{:<6} {:<26} {:>12} {:>10}", "format", "run", "msgs/s", "vs loop");
    for format in [Format::Text, Format::Json] {
        let input = format!("riffle-bench-{}", format.name());
        let output = |w: &str| format!("riffle-bench-{}-out-{w}", format.name());
        if let Some(m) = &mock {
            m.create_topic(&input, args.partitions, 1)
                .map_err(|e| kafka("topic", e))?;
            for w in std::iter::once("loop".to_string()).chain(args.workers.iter().map(|w| format!("w{w}"))) {
                m.create_topic(&output(&w), args.partitions, 1)
                    .map_err(|e| kafka("topic", e))?;
            }
        }
        let n = args.messages;
        let secs = hand_produce(&brokers, &input, args.partitions, format, &gen)?;
        row(format, "loop: produce", n as f64 / secs, None);
        let (secs, parsed) = hand_consume(&brokers, &input, format, None)?;
        check(parsed, n, "loop consume")?;
        let consume_loop = n as f64 / secs;
        row(format, "loop: consume", consume_loop, None);
        for &w in &args.workers {
            let (secs, got) = riffle_job(&brokers, &input, None, format, w)?;
            check(got, n, "riffle consume")?;
            row(
                format,
                &format!("riffle consume, {w} worker(s)"),
                n as f64 / secs,
                Some(consume_loop),
            );
        }
        let (secs, parsed) = hand_consume(&brokers, &input, format, Some(&output("loop")))?;
        check(parsed, n, "loop pipe")?;
        let pipe_loop = n as f64 / secs;
        row(format, "loop: pipe", pipe_loop, None);
        for &w in &args.workers {
            let (secs, got) = riffle_job(&brokers, &input, Some(&output(&format!("w{w}"))), format, w)?;
            check(got, n, "riffle pipe")?;
            row(
                format,
                &format!("riffle pipe, {w} worker(s)"),
                n as f64 / secs,
                Some(pipe_loop),
            );
        }
    }
    Ok(())
}

fn row(format: Format, run: &str, rate: f64, vs: Option<f64>) {
    let vs = vs.map_or(String::new(), |v| format!("{:.2}x", rate / v));
    println!("{:<6} {:<26} {:>12.0} {:>10}", format.name(), run, rate, vs);
}

fn check(got: u64, want: u64, what: &str) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Execution(format!(
            "bench kafka: {what} saw {got} messages of {want}"
        )))
    }
}

fn producer(brokers: &str) -> Result<ThreadedProducer<rdkafka::producer::DefaultProducerContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .map_err(|e| kafka("producer", e))
}

/// Sends with retries while librdkafka's queue is full.
fn send(
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err((e, _)) => return Err(kafka("send", e)),
        }
    }
}

/// The hand-written producer fills the input topic; returns its time.
fn hand_produce(brokers: &str, topic: &str, partitions: i32, format: Format, gen: &WordGenerator) -> Result<f64> {
    let producer = producer(brokers)?;
    let start = Instant::now();
    let mut buf = Vec::new();
    for i in 0..gen.lines {
        format.message(gen, i, &mut buf);
        send(
            &producer,
            BaseRecord::to(topic)
                .partition((i % partitions as u64) as i32)
                .payload(&buf[..]),
        )?;
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| kafka("flush", e))?;
    Ok(start.elapsed().as_secs_f64())
}

/// The hand-written consumer: a client per partition (as the engine's source has), polled in
/// turn on one thread, to the end of each; parses each message as the engine does; with
/// `pipe`, produces each one into that topic. Returns (time, count).
fn hand_consume(brokers: &str, topic: &str, format: Format, pipe: Option<&str>) -> Result<(f64, u64)> {
    let start = Instant::now();
    let client = || -> Result<BaseConsumer> {
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "riffle-bench-loop")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| kafka("consumer", e))
    };
    let first = client()?;
    let metadata = first
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| kafka("metadata", e))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
    let mut consumers = vec![first];
    while consumers.len() < partitions {
        consumers.push(client()?);
    }
    for (p, consumer) in consumers.iter().enumerate() {
        // From the partition's first offset, as the engine's source starts without a group.
        let (low, _) = consumer
            .fetch_watermarks(topic, p as i32, Duration::from_secs(10))
            .map_err(|e| kafka("offsets", e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(low))
            .map_err(|e| kafka("assign", e))?;
        consumer.assign(&tpl).map_err(|e| kafka("assign", e))?;
    }
    let producer = pipe.map(|_| producer(brokers)).transpose()?;
    let json = JsonRecordFormat::new("key", "ts");
    let (mut count, mut key) = (0u64, Vec::new());
    let mut ended = vec![false; partitions];
    while ended.iter().any(|e| !e) {
        let mut idle = true;
        for (p, consumer) in consumers.iter().enumerate() {
            if ended[p] {
                continue;
            }
            // Up to a chunk per partition per turn, as the engine's source reads.
            for _ in 0..1024 {
                match consumer.poll(Duration::ZERO) {
                    Some(Ok(m)) => {
                        idle = false;
                        let payload = m.payload().unwrap_or_default();
                        let Ok(text) = std::str::from_utf8(payload) else {
                            continue;
                        };
                        key.clear();
                        if format == Format::Json {
                            match json.parse(text) {
                                Ok((_, r)) => r.key.write_json(&mut key),
                                Err(_) => continue,
                            }
                        }
                        count += 1;
                        if let (Some(p), Some(out)) = (&producer, pipe) {
                            let mut record = BaseRecord::to(out).payload(payload);
                            if !key.is_empty() {
                                record = record.key(&key[..]);
                            }
                            send(p, record)?;
                        }
                    }
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                        ended[p] = true;
                        break;
                    }
                    Some(Err(e)) => return Err(kafka("poll", e)),
                    None => break,
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    if let Some(p) = producer {
        p.flush(Duration::from_secs(120)).map_err(|e| kafka("flush", e))?;
    }
    Ok((start.elapsed().as_secs_f64(), count))
}

/// Riffle: the topic as a bounded source on `workers` workers, parsed, counted, and with
/// `pipe` written into that topic. Returns (time, count).
fn riffle_job(brokers: &str, topic: &str, pipe: Option<&str>, format: Format, workers: usize) -> Result<(f64, u64)> {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let group = format!("riffle-bench-{}", RUN.fetch_add(1, Ordering::Relaxed));
    let start = Instant::now();
    let splits = SourceUri::parse(&format!("kafka://{brokers}/{topic}?bounded=latest&group.id={group}"))?.splits()?;
    let ctx = Arc::new(JobContext::default());
    let sink = pipe
        .map(|out| KafkaSink::parse(&format!("kafka://{brokers}/{out}")))
        .transpose()?;
    let count = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&count);
    let job_sink = sink.clone();
    execute(ExecutionConfig::threads(workers), Arc::clone(&ctx), move |env| {
        let source = TextSource::new(splits.clone());
        let counted = Arc::clone(&counted);
        match format {
            Format::Text => {
                let lines = env.text(source);
                match &job_sink {
                    Some(sink) => lines.write_to(
                        Arc::new(sink.clone()),
                        |_, _| {},
                        |_, line, out| out.extend_from_slice(line.as_bytes()),
                    ),
                    None => lines.for_each(move |_, _| {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }),
                }
            }
            Format::Json => {
                let json = JsonRecordFormat::new("key", "ts");
                let records = env.text_records(source, std::rc::Rc::new(move |line: &str| json.parse(line)));
                match &job_sink {
                    Some(sink) => records.write_to(
                        Arc::new(sink.clone()),
                        |r, key| r.key.write_json(key),
                        |_, r, out| out.extend_from_slice(r.json.as_bytes()),
                    ),
                    None => records.for_each(move |_, _| {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }),
                }
            }
        }
    })?;
    if let Some(sink) = sink {
        sink.finish()?;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = match pipe {
        Some(_) => ctx.snapshot().records_out,
        None => count.load(Ordering::Relaxed),
    };
    Ok((secs, n))
}
