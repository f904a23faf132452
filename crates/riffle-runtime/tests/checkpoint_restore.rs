//! Restoring from a middle checkpoint gives the output of an uninterrupted run, for operators
//! the CLI tests do not reach (deduplication, joins), on the same and other worker counts. A crash right after checkpoint `k` is simulated by
//! removing what came after it: later manifests and committed output.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use riffle_core::WatermarkStrategy;
use riffle_runtime::checkpoint::{CheckpointConfig, CheckpointStore};
use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};

type Rec = (u32, u32);
/// Splits of a changelog: (event time, (key, change)).
type Changelog = Vec<Vec<(i64, (u32, riffle_core::join::Change<u32>))>>;

fn input() -> Vec<Vec<(i64, Rec)>> {
    // Two splits; keys repeat within and across splits, one record per ms of event time.
    (0..2u32)
        .map(|s| {
            (0..60_000u32)
                .map(|i| (i64::from(i), ((i * 7 + s * 3) % 1000, i * 2 + s)))
                .collect()
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Job {
    Dedup,
    IntervalJoin,
    WindowJoin,
    TemporalJoin,
}

fn run(dir: &Path, out: &Path, workers: usize, job: Job) -> riffle_core::Result<()> {
    let store = CheckpointStore::open(CheckpointConfig {
        dir: dir.to_path_buf(),
        interval: Duration::from_millis(1),
        retain: 1000,
        fingerprint: riffle_runtime::checkpoint::JobFingerprint::default(),
    })
    .expect("checkpoint store");
    riffle_connectors::file_sink::prepare_output_dir(out, store.restored_epoch().zip(store.restored_attempt()))?;
    let ctx = Arc::new(JobContext::new(true, Arc::new(SystemClock)).with_checkpoints(store));
    let (splits, out) = (input(), out.to_path_buf());
    execute(ExecutionConfig::threads(workers), ctx, move |env| {
        let s = WatermarkStrategy::bounded_out_of_orderness(10);
        let records = env.from_splits(splits.clone(), 32, s).key_by(|r: &Rec| r.0);
        match job {
            Job::Dedup => records
                .dedup(Duration::from_millis(700), 10_000, 1e-6)
                .expect("valid dedup")
                .write_committed(out.clone(), |ts, r, line| {
                    line.extend_from_slice(format!("{ts} {} {}\n", r.0, r.1).as_bytes())
                }),
            Job::TemporalJoin => {
                // A changelog over 1000 keys, one change per ms, every 13th a delete.
                let changes: Changelog = vec![(0..60_000u32)
                    .map(|i| {
                        let change = if i % 13 == 0 {
                            riffle_core::join::Change::Delete
                        } else {
                            riffle_core::join::Change::Upsert(i)
                        };
                        (i64::from(i), ((i * 37) % 1000, change))
                    })
                    .collect()];
                let table = env.from_splits(changes, 32, s);
                let joined = records.temporal_join(table, true);
                joined.rows.write_committed(out.clone(), |ts, r, line| {
                    line.extend_from_slice(format!("{ts} {} {:?} {:?}\n", r.key, r.left, r.right).as_bytes())
                });
            }
            Job::IntervalJoin | Job::WindowJoin => {
                // The other side: the same keys, shifted in time.
                let other: Vec<Vec<(i64, Rec)>> = vec![(0..60_000u32)
                    .map(|i| (i64::from(i) + 3, ((i * 11) % 1000, i)))
                    .collect()];
                let right = env.from_splits(other, 32, s).key_by(|r: &Rec| r.0);
                let joined = match job {
                    Job::IntervalJoin => records.interval_join(
                        right,
                        riffle_core::join::IntervalBounds::new(-20, 20).expect("bounds"),
                        riffle_core::join::JoinKind::Full,
                    ),
                    _ => records.window_join(
                        right,
                        // Sliding: a restored part that had fired less must catch up.
                        riffle_core::window::SlidingWindows::of_millis(100, 30).expect("window"),
                        riffle_core::join::JoinKind::Left,
                    ),
                };
                joined.rows.write_committed(out.clone(), |ts, r, line| {
                    line.extend_from_slice(format!("{ts} {} {:?} {:?}\n", r.key, r.left, r.right).as_bytes())
                });
            }
        }
    })
    .map(|_| ())
}

fn committed(dir: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_dir(dir)
        .expect("output dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .expect("part")
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

fn epochs_with_manifest(dir: &Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut v: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)
        .expect("checkpoints")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let epoch = name.strip_prefix("chk-")?.parse().ok()?;
            e.path().join("MANIFEST").exists().then_some((epoch, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// Runs `job` on 2 workers with checkpoints, then again from a copy of its state right after a
/// middle checkpoint on each of `workers`; returns the uninterrupted output and each restored
/// run's (or its error).
fn restore_from_the_middle(job: Job, workers: &[usize]) -> (Vec<String>, Vec<riffle_core::Result<Vec<String>>>) {
    let base = tempfile::tempdir().expect("tempdir");
    let (ck, out) = (base.path().join("ck"), base.path().join("out"));
    run(&ck, &out, 2, job).expect("job runs");
    let expected = committed(&out);
    assert!(!expected.is_empty());
    let complete = epochs_with_manifest(&ck);
    assert!(complete.len() >= 3, "checkpoints taken: {}", complete.len());
    let k = complete[complete.len() / 2].0;
    let mut results = Vec::new();
    for &workers in workers {
        // A copy of the run as it was right after checkpoint k.
        let (ck2, out2) = (
            base.path().join(format!("ck{workers}")),
            base.path().join(format!("out{workers}")),
        );
        std::fs::create_dir_all(&ck2).expect("dir");
        std::fs::create_dir_all(out2.join(".pending")).expect("dir");
        for (epoch, path) in epochs_with_manifest(&ck).into_iter().chain(
            std::fs::read_dir(&ck)
                .expect("ck")
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    Some((
                        e.file_name().to_string_lossy().strip_prefix("chk-")?.parse().ok()?,
                        e.path(),
                    ))
                }),
        ) {
            let target = ck2.join(path.file_name().expect("name"));
            std::fs::create_dir_all(&target).expect("dir");
            for f in std::fs::read_dir(&path).expect("chk").filter_map(|e| e.ok()) {
                let name = f.file_name().to_string_lossy().to_string();
                if epoch > k && name == "MANIFEST" {
                    continue;
                }
                std::fs::copy(f.path(), target.join(&name)).expect("copy");
            }
        }
        for f in std::fs::read_dir(&out).expect("out").filter_map(|e| e.ok()) {
            let name = f.file_name().to_string_lossy().to_string();
            let epoch: Option<u64> = name
                .strip_prefix("part-")
                .and_then(|r| r.split('-').next())
                .and_then(|e| e.parse().ok());
            if epoch.is_some_and(|e| e <= k) {
                std::fs::copy(f.path(), out2.join(&name)).expect("copy");
            }
        }
        results.push(run(&ck2, &out2, workers, job).map(|()| committed(&out2)));
    }
    (expected, results)
}

#[test]
fn dedup_restored_from_a_middle_checkpoint_onto_other_worker_counts_equals_an_uninterrupted_run() {
    let (expected, restored) = restore_from_the_middle(Job::Dedup, &[1, 3]);
    for (got, workers) in restored.into_iter().zip([1, 3]) {
        assert!(
            got.expect("restored run") == expected,
            "restored onto {workers} workers"
        );
    }
}

#[test]
fn joins_restored_from_a_middle_checkpoint_equal_an_uninterrupted_run() {
    for job in [Job::IntervalJoin, Job::WindowJoin, Job::TemporalJoin] {
        // Join state is split by key group: the same, fewer and more workers restore it.
        let workers = [2, 1, 3];
        let (expected, restored) = restore_from_the_middle(job, &workers);
        for (got, workers) in restored.into_iter().zip(workers) {
            let got = got.unwrap_or_else(|e| panic!("restored onto {workers} workers: {e}"));
            if got != expected {
                let extra: Vec<_> = got
                    .iter()
                    .filter(|l| expected.binary_search(l).is_err())
                    .take(3)
                    .collect();
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|l| got.binary_search(l).is_err())
                    .take(3)
                    .collect();
                panic!(
                    "job {} restored onto {workers} workers: {} rows, expected {}; extra {extra:?}; missing {missing:?}",
                    job as u8,
                    got.len(),
                    expected.len()
                );
            }
        }
    }
}

/// Stages chained after a window or a window join, as [`chained`] builds them.
#[derive(Clone, Copy, Debug)]
enum Chain {
    /// Counts per key in sliding windows, then the highest count per window (Nexmark q5).
    WindowThenWindow,
    /// Counts per key in tumbling windows on both sides, then a window join (Nexmark q8).
    WindowThenJoin,
    /// A window join, then counts of its rows per key in tumbling windows.
    JoinThenWindow,
}

/// Runs `chain` on `workers` threads, with checkpoints every `interval` when given (never
/// restored: the run is uninterrupted); returns its rows, sorted, and the records counted late.
fn chained(chain: Chain, workers: usize, checkpoints: Option<(&Path, Duration)>) -> (Vec<String>, u64) {
    type Rows = Arc<std::sync::Mutex<Vec<(i64, String)>>>;
    let mut ctx = JobContext::new(true, Arc::new(SystemClock));
    if let Some((dir, interval)) = checkpoints {
        let store = CheckpointStore::open(CheckpointConfig {
            dir: dir.to_path_buf(),
            interval,
            retain: 2,
            fingerprint: riffle_runtime::checkpoint::JobFingerprint::default(),
        })
        .expect("checkpoint store");
        ctx = ctx.with_checkpoints(store);
    }
    let ctx = Arc::new(ctx);
    let out: Rows = Arc::default();
    let (o, splits) = (Arc::clone(&out), input());
    execute(ExecutionConfig::threads(workers), Arc::clone(&ctx), move |env| {
        use riffle_core::aggregate::{Count, Max};
        use riffle_core::join::JoinKind;
        use riffle_core::window::{SlidingWindows, TumblingWindows};
        use riffle_runtime::WindowResult;
        let s = WatermarkStrategy::bounded_out_of_orderness(10);
        let records = env.from_splits(splits.clone(), 32, s);
        let tumble = || TumblingWindows::of_millis(100).expect("window");
        let rows = match chain {
            Chain::WindowThenWindow => records
                .key_by(|r: &Rec| r.0 % 50)
                .window(SlidingWindows::of_millis(500, 100).expect("window"))
                .aggregate(Count)
                .key_by(|r: &WindowResult<u32, u64>| r.window)
                .window(tumble())
                .aggregate(Max::new(|r: &WindowResult<u32, u64>| r.value))
                .map(|r| format!("{:?} {:?}", r.window, r.value)),
            Chain::WindowThenJoin => {
                fn counts(
                    stream: riffle_runtime::DataStream<'_, Rec>,
                    m: u32,
                ) -> riffle_runtime::KeyedStream<'_, u32, WindowResult<u32, u64>> {
                    stream
                        .key_by(move |r: &Rec| r.0 % m)
                        .window(TumblingWindows::of_millis(100).expect("window"))
                        .aggregate(Count)
                        .key_by(|r: &WindowResult<u32, u64>| r.key)
                }
                let other = env.from_splits(splits.clone(), 32, s);
                counts(records, 70)
                    .window_join(counts(other, 30), tumble(), JoinKind::Inner)
                    .rows
                    .map(|r| format!("{} {:?} {:?}", r.key, r.left, r.right))
            }
            Chain::JoinThenWindow => {
                let other = env.from_splits(splits.clone(), 32, s).key_by(|r: &Rec| r.0 % 40);
                records
                    .key_by(|r: &Rec| r.0 % 40)
                    .window_join(other, tumble(), JoinKind::Inner)
                    .rows
                    .key_by(|r: &riffle_runtime::JoinResult<u32, Rec, Rec>| r.key)
                    .window(tumble())
                    .aggregate(Count)
                    .map(|r| format!("{:?} {} {}", r.window, r.key, r.value))
            }
        };
        rows.collect_into(Arc::clone(&o));
    })
    .expect("job runs");
    let mut rows: Vec<String> = out
        .lock()
        .expect("rows")
        .iter()
        .map(|(ts, r)| format!("{ts} {r}"))
        .collect();
    rows.sort();
    let late = ctx.metrics().late.load(std::sync::atomic::Ordering::Relaxed);
    (rows, late)
}

/// A stage after a window (or a window join) receives the results at the watermark the first
/// stage had fired to before them, checkpoints or not: with checkpoints, results left at the
/// frontier's watermark, past the windows they belong to, and the next stage counted them late.
#[test]
fn chained_windows_with_checkpoints_equal_the_run_without() {
    for chain in [Chain::WindowThenWindow, Chain::WindowThenJoin, Chain::JoinThenWindow] {
        for workers in [1, 2] {
            let (expected, late) = chained(chain, workers, None);
            assert!(!expected.is_empty(), "{chain:?}");
            assert_eq!(late, 0, "{chain:?} on {workers} workers, without checkpoints");
            for interval in [Duration::from_millis(1), Duration::from_secs(3600)] {
                let dir = tempfile::tempdir().expect("tempdir");
                let (got, late) = chained(chain, workers, Some((dir.path(), interval)));
                assert_eq!(
                    late, 0,
                    "{chain:?} on {workers} workers, checkpoints every {interval:?}: records counted late"
                );
                assert!(
                    got == expected,
                    "{chain:?} on {workers} workers, checkpoints every {interval:?}: {} rows, expected {}",
                    got.len(),
                    expected.len()
                );
            }
        }
    }
}
