//! `riffle wordcount --source kafka://…` end to end against librdkafka's mock cluster (a Kafka
//! protocol broker on a loopback port, started by the test; the riffle process connects to it
//! like to any broker): the result equals the same job over a file, on 1 and 2 workers;
//! malformed messages are reported with partition and offset; a run killed after a checkpoint
//! and restarted commits exactly the uninterrupted output.
#![cfg(feature = "kafka")]

mod common;
use common::{assert_same, generate, keyed, riffle, JOB};

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

const PARTITIONS: i32 = 4;

/// A mock cluster with topic `words`, line `i` in partition `i % PARTITIONS`.
fn cluster_with(lines: &[Vec<u8>]) -> MockCluster<'static, DefaultProducerContext> {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("words", PARTITIONS, 1).expect("topic");
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (i, line) in lines.iter().enumerate() {
        let p = i as i32 % PARTITIONS;
        let mut record = BaseRecord::<(), [u8]>::to("words").partition(p).payload(line);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    // Queue full: let it drain.
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    mock
}

fn sorted_stdout(args: &[String]) -> Vec<String> {
    common::sorted_stdout(riffle().args(args))
}

fn job(source: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = JOB.iter().map(|s| s.to_string()).collect();
    args.extend(["--source".into(), source.into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn wordcount_from_kafka_equals_the_same_job_over_a_file_on_1_and_2_workers() {
    let lines = generate(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("words.txt");
    std::fs::write(
        &file,
        lines
            .iter()
            .flat_map(|l| l.iter().copied().chain([b'\n']))
            .collect::<Vec<u8>>(),
    )
    .expect("write");
    let expected = sorted_stdout(&job(&format!("file://{}", file.display()), &[]));
    assert!(expected.len() > 100);
    let mock = cluster_with(&lines);
    for workers in ["1", "2"] {
        let source = format!(
            "kafka://{}/words?group.id=wc{workers}&bounded=latest",
            mock.bootstrap_servers()
        );
        let got = sorted_stdout(&job(&source, &["-w", workers]));
        assert_eq!(got, expected, "{workers} workers");
    }
}

#[test]
fn malformed_messages_are_counted_and_dead_lettered_with_partition_and_offset() {
    let mut lines = generate(400);
    lines[9] = b"not-a-timestamp hello".to_vec(); // partition 1, offset 2
    lines[14] = vec![b'1', b',', 0xff, 0xfe]; // partition 2, offset 3
    let mock = cluster_with(&lines);
    let dir = tempfile::tempdir().expect("tempdir");
    let dead = dir.path().join("dead.jsonl");
    let source = format!("kafka://{}/words?bounded=latest", mock.bootstrap_servers());
    let out = riffle()
        .args(job(&source, &["-w", "2", "--dead-letter"]))
        .arg(&dead)
        .output()
        .expect("riffle runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let brokers = mock.bootstrap_servers();
    assert!(stderr.contains(&format!("kafka://{brokers}/words/1:2")), "{stderr}");
    let dead = std::fs::read_to_string(&dead).expect("dead letters");
    let mut rows: Vec<(String, u64)> = dead
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            (
                v["origin"].as_str().expect("origin").to_string(),
                v["line"].as_u64().expect("offset"),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (format!("kafka://{brokers}/words/1"), 2),
            (format!("kafka://{brokers}/words/2"), 3)
        ]
    );
}

/// The committed output in `dir`, sorted.
fn committed(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir").filter_map(|e| e.ok()) {
        if entry.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(
                std::fs::read_to_string(entry.path())
                    .expect("part")
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines.sort();
    lines
}

#[test]
fn killed_after_a_checkpoint_and_restarted_on_other_workers_the_output_is_exactly_once() {
    let lines = generate(600_000);
    let mock = cluster_with(&lines);
    let dir = tempfile::tempdir().expect("tempdir");
    let source = |group: &str| {
        format!(
            "kafka://{}/words?group.id={group}&bounded=latest",
            mock.bootstrap_servers()
        )
    };
    let expected = sorted_stdout(&job(&source("uninterrupted"), &["-w", "2"]));
    // Another group: the uninterrupted run committed its offsets at the end of the topic.
    let source = source("checkpointed");
    let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
    let run = |workers: &str| {
        let mut cmd = riffle();
        cmd.args(job(
            &source,
            &["-w", workers, "--checkpoint-interval", "20ms", "--checkpoint-dir"],
        ))
        .arg(&ckpt)
        .arg("--sink")
        .arg(format!("file://{}", out.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        cmd
    };
    let mut child = run("2").spawn().expect("riffle starts");
    let complete = || {
        std::fs::read_dir(&ckpt)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("MANIFEST").exists())
                    .count()
            })
            .unwrap_or(0)
    };
    for _ in 0..4000 {
        if complete() >= 3 || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let finished_early = child.try_wait().ok().flatten().is_some();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !finished_early,
        "the job ended before it could be killed: make the input larger"
    );
    let o = run("3").output().expect("riffle runs again");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming from checkpoint"));
    assert_eq!(committed(&out), expected);
}

/// Every message of `topic` as (key, value), sorted: reads each partition to its end (with
/// `read_committed`, to its last stable offset).
fn read_topic(brokers: &str, topic: &str, isolation: &str) -> Vec<(String, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "riffle-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let (mut out, mut ended) = (Vec::new(), std::collections::HashSet::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ended.len() < partitions {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: partitions not read to the end"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("{topic}: {e}"),
            None => {}
        }
    }
    out.sort();
    out
}

#[test]
fn wordcount_into_kafka_keyed_by_word_equals_the_stdout_job_with_and_without_checkpoints() {
    let lines = generate(20_000);
    let mock = cluster_with(&lines);
    let brokers = mock.bootstrap_servers();
    mock.create_topic("counts", 3, 1).expect("topic");
    mock.create_topic("counts-eos", 3, 1).expect("topic");
    // A group per run: each run commits its offsets to its group.
    let source = |group: &str| format!("kafka://{brokers}/words?bounded=latest&group.id={group}");
    let expected = keyed(&sorted_stdout(&job(&source("stdout"), &["-w", "2"])));
    assert!(expected.len() > 100);
    // At least once (no checkpoints): no crash, so each result once.
    let sink = format!("kafka://{brokers}/counts");
    // `--format text` too: a Kafka sink writes JSON whatever the format.
    let mut args = job(&source("at-least-once"), &["-w", "2", "--sink", &sink]);
    args[8] = "text".into();
    sorted_stdout(&args);
    assert_same(
        &read_topic(&brokers, "counts", "read_uncommitted"),
        &expected,
        "at least once",
    );
    // Transactions committed with checkpoints.
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = format!("kafka://{brokers}/counts-eos");
    let ckpt = dir.path().join("ckpt").display().to_string();
    sorted_stdout(&job(
        &source("transactions"),
        &[
            "-w",
            "2",
            "--sink",
            &sink,
            "--checkpoint-dir",
            &ckpt,
            "--checkpoint-interval",
            "50ms",
        ],
    ));
    assert_same(
        &read_topic(&brokers, "counts-eos", "read_committed"),
        &expected,
        "transactions",
    );
}

#[test]
fn json_messages_give_the_same_counts_as_the_text_lines() {
    let lines = generate(5_000);
    let text = cluster_with(&lines);
    let expected = sorted_stdout(&job(
        &format!("kafka://{}/words?bounded=latest", text.bootstrap_servers()),
        &["-w", "2"],
    ));
    // The same lines as JSON objects, fields in either order.
    let json: Vec<Vec<u8>> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let l = String::from_utf8(l.clone()).expect("utf-8");
            let (ts, words) = l.split_once(' ').expect("timestamped line");
            let (ts, words) = (ts.parse::<i64>().expect("ts"), serde_json::json!(words));
            if i % 2 == 0 {
                format!(r#"{{"at":{ts},"body":{words}}}"#).into_bytes()
            } else {
                format!(r#"{{"body":{words},"at":{ts}}}"#).into_bytes()
            }
        })
        .collect();
    let mock = cluster_with(&json);
    let got = sorted_stdout(&job(
        &format!("kafka://{}/words?bounded=latest", mock.bootstrap_servers()),
        &[
            "-w",
            "2",
            "--input-format",
            "json",
            "--text-field",
            "body",
            "--time-field",
            "at",
        ],
    ));
    assert_eq!(got, expected);
}

/// The lines `child` prints within `wait` (then it is killed).
fn lines_within(mut child: std::process::Child, wait: Duration) -> Vec<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + wait;
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

/// A topic `words` of two partitions: 20 s of event time in partition 0 (a line every 100 ms),
/// nothing in partition 1.
fn words_in_partition_0_only() -> MockCluster<'static, DefaultProducerContext> {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("words", 2, 1).expect("topic");
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .create()
        .expect("producer");
    for i in 0..200i64 {
        let line = format!("{} w{}", 1_700_000_000_000 + i * 100, i % 3);
        producer
            .send(BaseRecord::<(), str>::to("words").partition(0).payload(&line))
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    mock
}

/// The windows of [`words_in_partition_0_only`] up to partition 0's watermark (19.9 s - 1 s of
/// disorder) closed, and only those: [0, 2) … [16, 18).
fn assert_partition_0_windows_closed(closed: &[String]) {
    let windows: std::collections::BTreeSet<i64> = closed
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["window_start"].as_i64().expect("window_start") - 1_700_000_000_000
        })
        .collect();
    assert_eq!(windows, (0..9).map(|i| i * 2_000).collect(), "{closed:?}");
}

#[test]
fn an_idle_partition_holds_the_watermark_back_only_until_the_idle_timeout() {
    // Partition 0 gets 20 s of event time; partition 1 stays empty; the source is unbounded.
    // On 2 workers, worker 1 reads only the empty partition.
    let mock = words_in_partition_0_only();
    let start = |group: &str, extra: &[&str]| {
        riffle()
            .args(job(
                &format!("kafka://{}/words?group.id={group}", mock.bootstrap_servers()),
                extra,
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("riffle starts")
    };
    // Without an idle timeout the empty partition's watermark stays at its start: no window closes.
    let held = lines_within(start("held", &["-w", "2"]), Duration::from_secs(3));
    assert!(held.is_empty(), "windows closed with an idle partition: {held:?}");
    // With one, the idle partition stops counting and the windows up to partition 0's
    // watermark (19.9 s - 1 s of disorder) close: [0, 2) … [16, 18).
    let closed = lines_within(
        start("idle", &["--idle-timeout", "300ms", "-w", "2"]),
        Duration::from_secs(4),
    );
    assert_partition_0_windows_closed(&closed);
}

#[test]
fn a_process_reading_only_an_idle_partition_does_not_hold_back_the_other() {
    // As above, on two processes of one worker each: process 1 reads only the empty
    // partition. Idleness is global: its worker follows the watermark process 0 announces.
    let mock = words_in_partition_0_only();
    let addresses = format!("127.0.0.1:{},127.0.0.1:{}", common::free_port(), common::free_port());
    let source = format!("kafka://{}/words?group.id=two", mock.bootstrap_servers());
    let processes: Vec<std::process::Child> = ["0", "1"]
        .iter()
        .map(|p| {
            riffle()
                .args(job(&source, &["--idle-timeout", "300ms", "-n", "2", "-p", p]))
                .args(["--addresses", &addresses])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("riffle starts")
        })
        .collect();
    let readers: Vec<_> = processes
        .into_iter()
        .map(|child| std::thread::spawn(move || lines_within(child, Duration::from_secs(6))))
        .collect();
    let closed: Vec<String> = readers.into_iter().flat_map(|r| r.join().expect("reader")).collect();
    assert_partition_0_windows_closed(&closed);
}
