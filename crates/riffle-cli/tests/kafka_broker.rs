//! Riffle against a real Kafka-protocol broker process: `tansu` (crates.io, `cargo install
//! tansu --features dynostore,libsql`; `.ci/run` installs it when it is missing), started by
//! these tests on a free loopback port. `TANSU` names the binary if it is not on the PATH.
//!
//! What tansu 0.6 lacks shapes these tests: it answers ListOffsets(latest) with the base offset
//! of a partition's last record batch plus one, so the input is produced one message per batch
//! (then `bounded=latest` is right), and output is read until the expected count arrives rather
//! than to the reported end; it has no EndTxn, so the transactional sink cannot commit against
//! it (the mock-cluster tests cover that path; see docs/architecture.md).
#![cfg(feature = "kafka")]

mod common;
use common::{assert_same, generate, keyed, riffle, JOB};

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

fn tansu() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("these tests need the tansu broker: `cargo install tansu --features dynostore,libsql` (or set TANSU)")
    })
}

/// A tansu broker on 127.0.0.1, killed when dropped.
struct Broker {
    child: Child,
    port: u16,
    storage: String,
    log: PathBuf,
}

impl Broker {
    fn start(storage: &str, log: &Path) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Self::spawn(port, storage, log);
        let broker = Broker {
            child,
            port,
            storage: storage.to_string(),
            log: log.to_path_buf(),
        };
        broker.wait_ready();
        broker
    }

    fn spawn(port: u16, storage: &str, log: &Path) -> Child {
        let url = format!("tcp://127.0.0.1:{port}");
        // Relative storage paths (`sqlite://tansu.db`) are in the log's folder.
        let dir = log.parent().unwrap_or(Path::new("."));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("broker log");
        Command::new(tansu())
            .current_dir(dir)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", storage])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("tansu starts")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker (SIGKILL) and starts it again on the same port and storage after `down`.
    fn restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = Self::spawn(self.port, &self.storage, &self.log);
        self.wait_ready();
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn create_topic(&self, topic: &str, partitions: u32) {
        let status = Command::new(tansu())
            .args(["topic", "create", topic, "--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create");
        assert!(status.success(), "cannot create {topic}");
    }

    /// Writes `lines` into `topic`, line `i` into partition `i % partitions`, one message per
    /// record batch (see the module's note on tansu's ListOffsets).
    fn produce(&self, topic: &str, partitions: i32, lines: &[Vec<u8>]) {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            .create()
            .expect("producer");
        for (i, line) in lines.iter().enumerate() {
            let mut record = BaseRecord::<(), [u8]>::to(topic)
                .partition(i as i32 % partitions)
                .payload(line);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(60)).expect("flush");
    }

    /// The first `n` messages of `topic` as (key, value), sorted; fails if fewer arrive, or if
    /// more than `n` are there.
    fn read(&self, topic: &str, n: usize) -> Vec<(String, String)> {
        read_topic(&self.brokers(), topic, n, "read_uncommitted")
    }
}

/// The first `n` messages of `topic` as (key, value), sorted; fails if fewer arrive, or if more
/// than `n` are there.
fn read_topic(brokers: &str, topic: &str, n: usize, isolation: &str) -> Vec<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("isolation.level", isolation)
        .set("bootstrap.servers", brokers)
        .set("group.id", "riffle-test-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = None;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push((
                    String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
                ));
                quiet_since = None;
            }
            Some(Err(e)) => eprintln!("{topic}: {e}"),
            None if out.len() >= n => {
                // All arrived: wait a little for any extra.
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {n} messages arrived",
            out.len()
        );
    }
    out.sort();
    out
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[String]) -> Vec<String> {
    common::sorted_stdout(riffle().args(JOB).args(args))
}

/// The job over a file of `lines`: the oracle.
fn file_job(lines: &[Vec<u8>], dir: &Path) -> Vec<String> {
    let file = dir.join("words.txt");
    let mut bytes = Vec::new();
    for l in lines {
        bytes.extend_from_slice(l);
        bytes.push(b'\n');
    }
    std::fs::write(&file, bytes).expect("write");
    run(&["--source".into(), format!("file://{}", file.display())])
}

#[test]
fn wordcount_from_a_broker_into_a_broker_equals_the_file_job_on_1_and_2_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start("memory://tansu/", &dir.path().join("tansu.log"));
    let lines = generate(3_000);
    let expected = file_job(&lines, dir.path());
    broker.create_topic("words", 3);
    broker.produce("words", 3, &lines);
    for workers in ["1", "2"] {
        let out = format!("counts-{workers}");
        broker.create_topic(&out, 2);
        let b = broker.brokers();
        let stdout = run(&[
            "--source".into(),
            format!("kafka://{b}/words?bounded=latest&group.id=wc-{workers}"),
            "--sink".into(),
            format!("kafka://{b}/{out}"),
            "-w".into(),
            workers.into(),
        ]);
        assert!(stdout.is_empty());
        assert_same(
            &broker.read(&out, expected.len()),
            &keyed(&expected),
            &format!("{workers} workers"),
        );
    }
}

#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Storage that outlives the process: a SQLite file (in the log's folder).
    let mut broker = Broker::start("sqlite://tansu.db", &dir.path().join("tansu.log"));
    broker.create_topic("counts", 2);
    // 3 s of input at 2000 lines/s, 6 s of event time: windows close all along the run, and
    // the broker is down from 1 s to 2 s into it.
    let source = "generate://words?lines=6000&words=3&vocabulary=300&step=1&disorder=200";
    let expected = keyed(&run(&["--source".into(), source.into()]));
    let b = broker.brokers();
    let child = riffle()
        .args(JOB)
        .args(["--source", &format!("{source}&rate=2000"), "-w", "2"])
        .args(["--sink", &format!("kafka://{b}/counts?message.timeout.ms=120000")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riffle starts");
    std::thread::sleep(Duration::from_secs(1));
    broker.restart(Duration::from_secs(1));
    let out = child.wait_with_output().expect("riffle ends");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = broker.read("counts", expected.len());
    // At least once: every result arrived; a retry across the restart may repeat one.
    let mut missing = expected.clone();
    for m in &got {
        if let Ok(i) = missing.binary_search(m) {
            missing.remove(i);
        }
    }
    assert!(
        missing.is_empty(),
        "{} results lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    eprintln!("{} results, {} messages", expected.len(), got.len());
}

/// Needs a broker with transactions (Apache Kafka, Redpanda): tansu 0.6 has no EndTxn and the
/// mock cluster neither writes commit markers nor keeps transactional offsets. Run with
/// `RIFFLE_TXN_BROKERS=HOST:PORT cargo test -p riffle-cli --test kafka_broker -- --ignored`;
/// the topic `riffle-eos-<pid>` is created with 3 partitions if the broker auto-creates topics.
#[test]
#[ignore = "needs a Kafka broker with transactions: set RIFFLE_TXN_BROKERS and pass --ignored"]
fn killed_mid_stream_and_restarted_the_transactional_sink_holds_each_result_once() {
    let brokers = std::env::var("RIFFLE_TXN_BROKERS").expect("RIFFLE_TXN_BROKERS=HOST:PORT");
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = format!("riffle-eos-{}", std::process::id());
    let source = "generate://words?lines=20000&words=3&vocabulary=300&step=1&disorder=200";
    let expected = keyed(&run(&["--source".into(), source.into()]));
    let ckpt = dir.path().join("ckpt").display().to_string();
    let sink = format!("kafka://{brokers}/{topic}");
    let start = |workers: &str, rate: &str| {
        riffle()
            .args(JOB)
            .args(["--source", &format!("{source}{rate}"), "-w", workers, "--sink", &sink])
            .args(["--checkpoint-dir", &ckpt, "--checkpoint-interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("riffle starts")
    };
    // Killed twice mid-stream (while transactions are being published), then run to the end
    // (with the same source: the rate is part of the job's fingerprint).
    for workers in ["2", "3"] {
        let mut child = start(workers, "&rate=5000");
        std::thread::sleep(Duration::from_millis(1500));
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = start("1", "&rate=5000").wait_with_output().expect("riffle ends");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same(
        &read_topic(&brokers, &topic, expected.len(), "read_committed"),
        &expected,
        "read_committed after two kills",
    );
}
