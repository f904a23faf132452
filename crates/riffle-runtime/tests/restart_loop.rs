//! The library's restart loop (`riffle_runtime::restart::run_with_restarts`) with a real job:
//! the first run crashes (a panic in an operator) after some checkpoints, the loop runs the job
//! again, which resumes from the newest checkpoint, and the committed output equals the input
//! exactly once. A job whose every run crashes gives up as its strategy says.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use riffle_core::WatermarkStrategy;
use riffle_runtime::checkpoint::{CheckpointConfig, CheckpointStore, JobFingerprint};
use riffle_runtime::restart::{run_with_restarts, RestartStrategy};
use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};

const RECORDS: u32 = 200_000;

/// One run of the job: numbers through a map that panics at `crash_at` (if any) into committed
/// part files.
fn run_job(dir: &Path, out: &Path, crash_at: Option<u32>) -> riffle_core::Result<()> {
    let store = CheckpointStore::open(CheckpointConfig {
        dir: dir.to_path_buf(),
        interval: Duration::from_millis(2),
        retain: 3,
        fingerprint: JobFingerprint::new("restart-loop"),
    })?;
    riffle_connectors::file_sink::prepare_output_dir(out, store.restored_epoch().zip(store.restored_attempt()))?;
    let ctx = Arc::new(JobContext::new(true, Arc::new(SystemClock)).with_checkpoints(store));
    let splits: Vec<Vec<(i64, u32)>> = vec![(0..RECORDS).map(|i| (i64::from(i), i)).collect()];
    let out = out.to_path_buf();
    execute(ExecutionConfig::threads(1), ctx, move |env| {
        env.from_splits(splits.clone(), 1000, WatermarkStrategy::bounded_out_of_orderness(0))
            .map(move |i: u32| {
                assert!(Some(i) != crash_at, "the operator crashes at record {i}");
                i
            })
            .write_committed(out.clone(), |_, i, line| {
                line.extend_from_slice(format!("{i}\n").as_bytes())
            });
    })
    .map(|_| ())
}

fn committed(out: &Path) -> Vec<u32> {
    let mut all: Vec<u32> = std::fs::read_dir(out)
        .expect("output")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .expect("part")
                .lines()
                .map(|l| l.parse::<u32>().expect("number"))
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort_unstable();
    all
}

#[test]
fn a_crashed_run_is_started_again_and_resumes_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ck, out) = (dir.path().join("ck"), dir.path().join("out"));
    let strategy: RestartStrategy = "fixed-delay:attempts=2,delay=10ms".parse().expect("strategy");
    let runs = AtomicU64::new(0);
    let crashed_after = AtomicU64::new(0);
    run_with_restarts(&strategy, |run| {
        runs.fetch_add(1, Ordering::SeqCst);
        let crash_at = (run == 0).then_some(RECORDS * 3 / 4);
        let result = run_job(&ck, &out, crash_at);
        if run == 0 {
            crashed_after.store(committed(&out).len() as u64, Ordering::SeqCst);
        }
        result
    })
    .expect("the second run completes");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(
        crashed_after.load(Ordering::SeqCst) > 0,
        "the first run committed something before it crashed, so the second resumed"
    );
    assert_eq!(committed(&out), (0..RECORDS).collect::<Vec<_>>());
}

#[test]
fn a_run_that_always_crashes_gives_up_with_its_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ck, out) = (dir.path().join("ck"), dir.path().join("out"));
    let strategy: RestartStrategy = "fixed-delay:attempts=1,delay=0s".parse().expect("strategy");
    let e = run_with_restarts(&strategy, |_| run_job(&ck, &out, Some(10))).expect_err("gives up");
    let text = e.to_string();
    assert!(text.contains("giving up after 1 restart(s)"), "{text}");
    assert!(text.contains("crashes at record 10"), "{text}");
}
