//! The Kafka source against librdkafka's mock cluster (a broker speaking the Kafka protocol on
//! a loopback port, in this process): partitions as splits, offsets as positions, bounded
//! reads, reset policies, committed offsets of the group.
#![cfg(feature = "kafka")]

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use riffle_connectors::{Poll, SourceUri, SplitPosition, SplitSpec};

fn cluster(topic: &str, partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(topic, partitions, 1).expect("topic");
    mock
}

/// Writes `n` messages `"<partition>-<i>"` into each partition.
fn produce(brokers: &str, topic: &str, partitions: i32, n: usize) {
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    for p in 0..partitions {
        for i in 0..n {
            let value = format!("{p}-{i}");
            producer
                .send(BaseRecord::<(), str>::to(topic).partition(p).payload(&value))
                .map_err(|(e, _)| e)
                .expect("send");
        }
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// Reads a split until it finishes (or `deadline`), returning (offset, payload) pairs.
fn read_all(
    split: &SplitSpec,
    at: Option<SplitPosition>,
    deadline: Duration,
) -> (Vec<(u64, String)>, Option<SplitPosition>) {
    let mut reader = split.open_at(at).expect("open");
    let mut out = Vec::new();
    let start = Instant::now();
    loop {
        match reader.poll(100).expect("poll") {
            Poll::Chunk(c) => {
                for (i, line) in c.lines.into_iter().enumerate() {
                    out.push((c.first_line + i as u64, String::from_utf8(line).expect("utf8")));
                }
            }
            Poll::Finished => break,
            Poll::Pending => {
                if start.elapsed() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    (out, reader.position())
}

#[test]
fn bounded_partitions_read_every_message_once_in_offset_order() {
    let mock = cluster("words", 3);
    let brokers = mock.bootstrap_servers();
    produce(&brokers, "words", 3, 50);
    let uri = SourceUri::parse(&format!("kafka://{brokers}/words?group.id=t1&bounded=latest")).expect("uri");
    let splits = uri.splits().expect("splits");
    assert_eq!(splits.len(), 3, "one split per partition");
    for (p, split) in splits.iter().enumerate() {
        assert!(split.is_bounded_by_nature());
        let (got, end) = read_all(split, None, Duration::from_secs(20));
        let expected: Vec<(u64, String)> = (0..50).map(|i| (i as u64, format!("{p}-{i}"))).collect();
        assert_eq!(got, expected, "partition {p}");
        assert_eq!(end.map(|e| e.offset), Some(50));
    }
    // Messages written after the job started are past the bound.
    produce(&brokers, "words", 3, 5);
    let (got, _) = read_all(
        &splits[0],
        Some(SplitPosition { offset: 0, line: 0 }),
        Duration::from_secs(20),
    );
    assert_eq!(got.len(), 50);
    // The group committed what it read: without a position, a new reader starts there.
    let (got, _) = read_all(&splits[1], None, Duration::from_secs(20));
    assert_eq!(got, vec![], "partition 1 was read to its bound by group t1");
}

#[test]
fn a_partition_resumes_at_a_checkpointed_offset() {
    let mock = cluster("resume", 1);
    let brokers = mock.bootstrap_servers();
    produce(&brokers, "resume", 1, 40);
    let splits = SourceUri::parse(&format!("kafka://{brokers}/resume?bounded=latest"))
        .expect("uri")
        .splits()
        .expect("splits");
    let at = SplitPosition { offset: 25, line: 25 };
    let (got, _) = read_all(&splits[0], Some(at), Duration::from_secs(20));
    assert_eq!(got.first(), Some(&(25, "0-25".to_string())));
    assert_eq!(got.len(), 15);
}

#[test]
fn reset_latest_starts_at_the_end_and_reads_what_comes_after() {
    let mock = cluster("live", 1);
    let brokers = mock.bootstrap_servers();
    produce(&brokers, "live", 1, 10);
    let splits = SourceUri::parse(&format!("kafka://{brokers}/live?group.id=t3&auto.offset.reset=latest"))
        .expect("uri")
        .splits()
        .expect("splits");
    assert!(!splits[0].is_bounded_by_nature());
    let mut reader = splits[0].open().expect("open");
    assert_eq!(reader.position().map(|p| p.offset), Some(10), "starts at the end");
    produce(&brokers, "live", 1, 3);
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < 3 && start.elapsed() < Duration::from_secs(20) {
        if let Poll::Chunk(c) = reader.poll(100).expect("poll") {
            got.extend(c.lines.into_iter().map(|l| String::from_utf8(l).expect("utf8")));
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(got, vec!["0-0", "0-1", "0-2"]);
}

#[test]
fn a_missing_topic_and_a_bad_uri_are_clear_errors() {
    let mock = cluster("present", 1);
    let brokers = mock.bootstrap_servers();
    assert!(SourceUri::parse("kafka://nohost/topic").is_err());
    assert!(SourceUri::parse(&format!("kafka://{brokers}/t?auto.offset.reset=sometimes")).is_err());
    let err = SourceUri::parse(&format!("kafka://{brokers}/t?no.such.property=1"))
        .expect("uri")
        .splits()
        .expect_err("unknown property");
    assert!(err.to_string().contains("no.such.property"), "{err}");
}

#[test]
fn recovery_fences_every_writer_and_publishes_the_checkpointed_epochs_in_transactions() {
    use riffle_connectors::kafka::{KafkaSinkSpec, KafkaUri, MessageBatch, PendingOutput};
    let mock = cluster("out", 2);
    let spec = KafkaSinkSpec::new(KafkaUri::parse(&format!("kafka://{}/out", mock.bootstrap_servers())).expect("uri"))
        .expect("spec");
    let batch = |msgs: &[(&str, &str)]| {
        let mut b = MessageBatch::default();
        for (k, v) in msgs {
            b.push(k.as_bytes(), v.as_bytes());
        }
        b
    };
    // Writer 0 of a 3-worker run left epochs 4 and 5 in the checkpoint, writer 2 epoch 5;
    // writer 1 left nothing but is fenced all the same.
    let pending = vec![
        PendingOutput {
            writer: 0,
            peers: 3,
            epochs: vec![(4, batch(&[("a", "1"), ("b", "2")])), (5, batch(&[("a", "3")]))],
        },
        PendingOutput {
            writer: 2,
            peers: 3,
            epochs: vec![(5, batch(&[("", "no key")]))],
        },
    ];
    // The mock cluster keeps no transactional offsets, so no marker says an epoch was
    // published: recovery publishes all of them (a broker with transactions skips those whose
    // marker is at or past them).
    assert_eq!(spec.recover(&pending, 1).expect("recover"), 3);
    let mut got: Vec<String> = Vec::new();
    for p in 0..2 {
        let split = SplitSpec::new(riffle_connectors::kafka::KafkaPartitionSpec {
            source: std::sync::Arc::new(
                riffle_connectors::kafka::KafkaSourceSpec::new(
                    KafkaUri::parse(&format!(
                        "kafka://{}/out?bounded=latest&group.id=check",
                        mock.bootstrap_servers()
                    ))
                    .expect("uri"),
                )
                .expect("source"),
            ),
            partition: p,
            end: None,
        });
        let (messages, _) = read_all(
            &split,
            Some(SplitPosition { offset: 0, line: 0 }),
            Duration::from_secs(2),
        );
        got.extend(messages.into_iter().map(|(_, m)| m));
    }
    got.sort();
    assert_eq!(got, vec!["1", "2", "3", "no key"]);
}
