//! Restoring from a middle checkpoint gives the output of an uninterrupted run, for operators
//! the CLI tests do not reach (deduplication). A crash right after checkpoint `k` is simulated by
//! removing what came after it: later manifests and committed output.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use riffle_core::WatermarkStrategy;
use riffle_runtime::checkpoint::{CheckpointConfig, CheckpointStore};
use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};

type Rec = (u32, u32);

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

fn run(dir: &Path, out: &Path, workers: usize) {
    let store = CheckpointStore::open(CheckpointConfig {
        dir: dir.to_path_buf(),
        interval: Duration::from_millis(5),
        retain: 1000,
    })
    .expect("checkpoint store");
    riffle_runtime::sink::prepare_output_dir(out, store.restored_epoch()).expect("output dir");
    let ctx = Arc::new(JobContext::new(true, Arc::new(SystemClock)).with_checkpoints(store));
    let (splits, out) = (input(), out.to_path_buf());
    execute(ExecutionConfig::threads(workers), ctx, move |env| {
        env.from_splits(splits.clone(), 64, WatermarkStrategy::bounded_out_of_orderness(10))
            .key_by(|r: &Rec| r.0)
            .dedup(Duration::from_millis(700), 10_000, 1e-6)
            .expect("valid dedup")
            .write_committed(out.clone(), |ts, r, line| {
                line.extend_from_slice(format!("{ts} {} {}\n", r.0, r.1).as_bytes())
            });
    })
    .expect("job runs");
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

#[test]
fn dedup_restored_from_a_middle_checkpoint_onto_other_worker_counts_equals_an_uninterrupted_run() {
    let base = tempfile::tempdir().expect("tempdir");
    let (ck, out) = (base.path().join("ck"), base.path().join("out"));
    run(&ck, &out, 2);
    let expected = committed(&out);
    assert!(!expected.is_empty());
    let complete = epochs_with_manifest(&ck);
    assert!(complete.len() >= 3, "checkpoints taken: {}", complete.len());
    let k = complete[complete.len() / 2].0;
    for workers in [1, 3] {
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
        run(&ck2, &out2, workers);
        assert!(
            committed(&out2) == expected,
            "restored from checkpoint {k} onto {workers} workers"
        );
    }
}
