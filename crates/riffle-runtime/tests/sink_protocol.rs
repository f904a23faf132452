//! The sink shell drives any `Sink`, including one written outside riffle-connectors, through
//! the protocol of `riffle_connectors::sink`: every record is written once, for its epoch;
//! each epoch is pre-committed once, in order, after its last write; commits come after the
//! pre-commits of every worker, and without checkpoints once at the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use riffle_connectors::{Delivery, OutputBatch, Sink, SinkWriter, WriterContext};
use riffle_core::{Result, WatermarkStrategy};
use riffle_runtime::checkpoint::{CheckpointConfig, CheckpointStore, JobFingerprint};
use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};

/// What the sink saw, in order, from every worker.
#[derive(Debug, PartialEq)]
enum Call {
    Write {
        worker: usize,
        epoch: u64,
        lines: Vec<String>,
    },
    PreCommit {
        worker: usize,
        epoch: u64,
    },
    Commit {
        epoch: u64,
    },
}

#[derive(Clone, Default)]
struct RecordingSink {
    calls: Arc<Mutex<Vec<Call>>>,
}

struct RecordingWriter {
    worker: usize,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Sink for RecordingSink {
    fn name(&self) -> String {
        "recording".into()
    }
    fn delivery(&self) -> Delivery {
        Delivery::ExactlyOnce
    }
    fn writer(&self, at: WriterContext) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(RecordingWriter {
            worker: at.worker,
            calls: Arc::clone(&self.calls),
        }))
    }
    fn commit(&self, epoch: u64, _attempt: u64) -> Result<()> {
        self.calls.lock().expect("calls").push(Call::Commit { epoch });
        Ok(())
    }
}

impl SinkWriter for RecordingWriter {
    fn write(&mut self, epoch: u64, batch: &mut OutputBatch) -> Result<()> {
        let OutputBatch::Lines(bytes) = batch else {
            panic!("a sink of lines gets lines");
        };
        let lines = String::from_utf8(bytes.clone())
            .expect("utf-8")
            .lines()
            .map(str::to_string)
            .collect();
        batch.clear();
        let worker = self.worker;
        self.calls
            .lock()
            .expect("calls")
            .push(Call::Write { worker, epoch, lines });
        Ok(())
    }
    fn pre_commit(&mut self, epoch: u64) -> Result<()> {
        let worker = self.worker;
        self.calls
            .lock()
            .expect("calls")
            .push(Call::PreCommit { worker, epoch });
        Ok(())
    }
}

/// Two splits of (event time, value), 20 000 records each.
fn input() -> Vec<Vec<(i64, u64)>> {
    (0..2u64)
        .map(|s| (0..20_000u64).map(|i| (i as i64, i * 2 + s)).collect())
        .collect()
}

fn run(workers: usize, checkpoints: Option<&std::path::Path>) -> Vec<Call> {
    let mut ctx = JobContext::new(true, Arc::new(SystemClock));
    if let Some(dir) = checkpoints {
        let store = CheckpointStore::open(CheckpointConfig {
            dir: dir.to_path_buf(),
            interval: Duration::from_millis(1),
            retain: 1000,
            fingerprint: JobFingerprint::default(),
        })
        .expect("checkpoint store");
        ctx = ctx.with_checkpoints(store);
    }
    let sink = RecordingSink::default();
    let job_sink = sink.clone();
    let splits = input();
    execute(ExecutionConfig::threads(workers), Arc::new(ctx), move |env| {
        env.from_splits(splits.clone(), 64, WatermarkStrategy::monotonous())
            .write_to(
                Arc::new(job_sink.clone()),
                |_, _| {},
                |_, v: &u64, out| out.extend_from_slice(format!("{v}\n").as_bytes()),
            );
    })
    .expect("job runs");
    let calls = std::mem::take(&mut *sink.calls.lock().expect("calls"));
    calls
}

/// Checks the protocol on what the sink saw; returns the lines written.
fn check(calls: &[Call]) -> Vec<u64> {
    let mut lines = Vec::new();
    // Per worker: the epochs it wrote, and those it pre-committed (in order).
    let mut written: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut pre_committed: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut last_commit = None;
    for call in calls {
        match call {
            Call::Write {
                worker,
                epoch,
                lines: l,
            } => {
                let done = pre_committed.entry(*worker).or_default();
                assert!(
                    !done.contains(epoch),
                    "worker {worker} wrote into epoch {epoch} after pre-committing it"
                );
                written.entry(*worker).or_default().push(*epoch);
                lines.extend(l.iter().map(|x| x.parse::<u64>().expect("a number")));
            }
            Call::PreCommit { worker, epoch } => {
                let done = pre_committed.entry(*worker).or_default();
                assert!(
                    done.last().is_none_or(|last| last < epoch),
                    "{worker}: {done:?} then {epoch}"
                );
                done.push(*epoch);
            }
            Call::Commit { epoch } => {
                assert!(last_commit.is_none_or(|last| last < *epoch), "commits go forward");
                // Every epoch up to it that a worker wrote into, it has pre-committed.
                for (worker, epochs) in &written {
                    let done = pre_committed.get(worker).cloned().unwrap_or_default();
                    for e in epochs.iter().filter(|e| *e <= epoch) {
                        assert!(
                            done.contains(e),
                            "commit of {epoch} before worker {worker} pre-committed {e}"
                        );
                    }
                }
                last_commit = Some(*epoch);
            }
        }
    }
    assert!(last_commit.is_some(), "the sink was committed");
    // Every epoch written into was pre-committed by the end.
    for (worker, epochs) in &written {
        let done = pre_committed.get(worker).cloned().unwrap_or_default();
        assert!(
            epochs.iter().all(|e| done.contains(e)),
            "worker {worker}: {epochs:?} vs {done:?}"
        );
    }
    lines.sort_unstable();
    lines
}

fn expected() -> Vec<u64> {
    let mut all: Vec<u64> = input().into_iter().flatten().map(|(_, v)| v).collect();
    all.sort_unstable();
    all
}

#[test]
fn with_checkpoints_every_epoch_is_written_then_pre_committed_then_committed() {
    for workers in [1, 3] {
        let dir = tempfile::tempdir().expect("tempdir");
        let calls = run(workers, Some(dir.path()));
        assert_eq!(check(&calls), expected(), "{workers} workers");
        let commits = calls.iter().filter(|c| matches!(c, Call::Commit { .. })).count();
        assert!(
            commits > 1,
            "{workers} workers: several checkpoints completed, got {commits}"
        );
    }
}

#[test]
fn without_checkpoints_the_sink_commits_once_at_the_end() {
    for workers in [1, 2] {
        let calls = run(workers, None);
        assert_eq!(check(&calls), expected(), "{workers} workers");
        let commits: Vec<&Call> = calls.iter().filter(|c| matches!(c, Call::Commit { .. })).collect();
        assert_eq!(commits, vec![&Call::Commit { epoch: u64::MAX }]);
        assert!(matches!(calls.last(), Some(Call::Commit { epoch: u64::MAX })));
    }
}
