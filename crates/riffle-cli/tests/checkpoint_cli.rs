//! Crash recovery end to end: `riffle wordcount` with checkpoints and the exactly-once file
//! sink, killed with SIGKILL at random moments and restarted, must leave exactly the output
//! of an uninterrupted run; so must a restart onto another number of workers, and a restart
//! whose newest checkpoint was corrupted or truncated.

mod common;

use common::kill_after_a_checkpoint;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn riffle() -> Command {
    Command::new(env!("CARGO_BIN_EXE_riffle"))
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Generates `lines` event-time lines of 3 words into `path`.
fn generate(path: &Path, lines: u64) {
    let out = std::fs::File::create(path).expect("create input");
    let status = riffle()
        .args([
            "generate",
            "words",
            "--lines",
            &lines.to_string(),
            "--words-per-line",
            "3",
            "--vocabulary",
            "500",
        ])
        .args(["--step", "1", "--disorder", "300"])
        .stdout(out)
        .status()
        .expect("riffle generate");
    assert!(status.success());
}

const JOB: [&str; 10] = [
    "wordcount",
    "--time",
    "event",
    "--window",
    "5s",
    "--slide",
    "1s",
    "--out-of-orderness",
    "500ms",
    "--format",
];

fn job(input: &Path) -> Vec<String> {
    let mut args: Vec<String> = JOB.iter().map(|s| s.to_string()).collect();
    args.extend(["json".into(), "--source".into(), format!("file://{}", input.display())]);
    args
}

/// The uninterrupted run's output, sorted.
fn expected(input: &Path) -> Vec<String> {
    let out = riffle()
        .args(job(input))
        .args(["-w", "2"])
        .output()
        .expect("riffle runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// The committed output in `dir`, sorted.
fn committed(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let entry = entry.expect("entry");
        if entry.file_name().to_string_lossy().starts_with("part-") {
            let text = std::fs::read_to_string(entry.path()).expect("part file");
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

fn checkpointed(input: &Path, ckpt: &Path, out: &Path, workers: usize) -> Command {
    let mut cmd = riffle();
    cmd.args(job(input))
        .args([
            "-w",
            &workers.to_string(),
            "--checkpoint-interval",
            "20ms",
            "--checkpoint-dir",
        ])
        .arg(ckpt)
        .arg("--sink")
        .arg(format!("file://{}", out.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn run_to_end(input: &Path, ckpt: &Path, out: &Path, workers: usize) {
    let mut cmd = checkpointed(input, ckpt, out, workers);
    let o = cmd.stderr(Stdio::piped()).output().expect("riffle runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn killed_twenty_times_the_committed_output_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("words.txt");
    generate(&input, 3_000_000);
    let expected = expected(&input);
    let mut rng = Lcg(2026);
    let (mut kills, mut runs, mut round) = (0, 0, 0);
    // Rounds over fresh directories until 20 kills have landed: on a fast machine a job may
    // end by itself before its share of kills; its output is checked all the same.
    while kills < 20 {
        round += 1;
        let (ckpt, out) = (
            dir.path().join(format!("checkpoints-{round}")),
            dir.path().join(format!("out-{round}")),
        );
        loop {
            // Restarts alternate between 1, 2 and 3 workers: recovery also rescales.
            let workers = 1 + runs % 3;
            runs += 1;
            let mut child = checkpointed(&input, &ckpt, &out, workers)
                .spawn()
                .expect("riffle starts");
            std::thread::sleep(Duration::from_millis(20 + rng.next(100)));
            if child.try_wait().expect("child status").is_some() {
                break;
            }
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            kills += 1;
            if kills >= 20 {
                break;
            }
        }
        run_to_end(&input, &ckpt, &out, 2);
        let got = committed(&out);
        assert_eq!(got.len(), expected.len(), "round {round}, {kills} kills so far");
        assert!(
            got == expected,
            "committed output differs from the uninterrupted run (round {round}, {kills} kills)"
        );
    }
}

#[test]
fn restoring_onto_1_2_and_4_workers_gives_the_same_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("words.txt");
    generate(&input, 1_000_000);
    let expected = expected(&input);
    for workers in [1, 2, 4] {
        let (ckpt, out) = (
            dir.path().join(format!("ck{workers}")),
            dir.path().join(format!("out{workers}")),
        );
        // Kill a 3-worker run part-way (after its first checkpoint), resume on `workers`.
        let mut child = checkpointed(&input, &ckpt, &out, 3).spawn().expect("riffle starts");
        kill_after_a_checkpoint(&mut child, &ckpt);
        run_to_end(&input, &ckpt, &out, workers);
        assert!(committed(&out) == expected, "restored onto {workers} workers");
    }
}

/// The newest complete checkpoint's directory.
fn newest_checkpoint(ckpt: &Path) -> Option<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(ckpt)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("MANIFEST").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

#[test]
fn a_corrupt_or_truncated_newest_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("words.txt");
    generate(&input, 1_000_000);
    let expected = expected(&input);
    for damage in ["corrupt", "truncate"] {
        let (ckpt, out) = (
            dir.path().join(format!("ck-{damage}")),
            dir.path().join(format!("out-{damage}")),
        );
        let mut child = checkpointed(&input, &ckpt, &out, 2).spawn().expect("riffle starts");
        // Two complete checkpoints: the newest to damage, the previous to fall back to.
        kill_after_a_checkpoint(&mut child, &ckpt);
        let newest = newest_checkpoint(&ckpt).expect("a checkpoint completed before the kill");
        // Damage every snapshot file of the newest checkpoint.
        for entry in std::fs::read_dir(&newest).expect("checkpoint dir") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == "MANIFEST") {
                continue;
            }
            let mut bytes = std::fs::read(&path).expect("read snapshot");
            if damage == "corrupt" {
                let i = bytes.len() / 2;
                bytes[i] ^= 0x5a;
            } else {
                bytes.truncate(bytes.len() * 2 / 3);
            }
            std::fs::write(&path, bytes).expect("damage snapshot");
        }
        let o = checkpointed(&input, &ckpt, &out, 2)
            .stderr(Stdio::piped())
            .output()
            .expect("riffle runs");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("cannot be restored"), "the damage is reported: {err}");
        assert!(committed(&out) == expected, "{damage}: output after falling back");
    }
}

#[test]
fn a_savepoint_restores_the_job_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("words.txt");
    generate(&input, 1_000_000);
    let expected = expected(&input);
    let (ckpt, out, save) = (
        dir.path().join("ck"),
        dir.path().join("out"),
        dir.path().join("savepoint"),
    );
    let mut child = checkpointed(&input, &ckpt, &out, 2).spawn().expect("riffle starts");
    kill_after_a_checkpoint(&mut child, &ckpt);
    let o = riffle()
        .args(["savepoint", "--checkpoint-dir"])
        .arg(&ckpt)
        .arg("--to")
        .arg(&save)
        .output()
        .expect("riffle savepoint");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The original checkpoints are gone; the savepoint alone resumes the job, on 4 workers.
    std::fs::remove_dir_all(&ckpt).expect("remove checkpoints");
    run_to_end(&input, &save, &out, 4);
    assert!(committed(&out) == expected);
    // An empty directory has nothing to save.
    let o = riffle()
        .args(["savepoint", "--checkpoint-dir"])
        .arg(dir.path().join("nothing"))
        .arg("--to")
        .arg(dir.path().join("x"))
        .output()
        .expect("riffle savepoint");
    assert!(!o.status.success());
}

#[test]
fn count_windows_resume_exactly_once_on_another_worker_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("words.txt");
    generate(&input, 1_000_000);
    let count_job = |workers: usize| {
        let mut cmd = riffle();
        cmd.args([
            "wordcount",
            "--time",
            "event",
            "--count-window",
            "50",
            "--count-slide",
            "20",
        ])
        .args(["--out-of-orderness", "500ms", "--format", "json", "--source"])
        .arg(format!("file://{}", input.display()))
        .args(["-w", &workers.to_string()]);
        cmd
    };
    let o = count_job(2).output().expect("riffle runs");
    assert!(o.status.success());
    let mut expected: Vec<String> = String::from_utf8(o.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect();
    expected.sort();
    let (ckpt, out) = (dir.path().join("ck"), dir.path().join("out"));
    let with_checkpoints = |workers: usize| {
        let mut cmd = count_job(workers);
        cmd.args(["--checkpoint-interval", "20ms", "--checkpoint-dir"])
            .arg(&ckpt)
            .arg("--sink")
            .arg(format!("file://{}", out.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let mut child = with_checkpoints(2).spawn().expect("riffle starts");
    kill_after_a_checkpoint(&mut child, &ckpt);
    let o = with_checkpoints(3).output().expect("riffle runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        committed(&out) == expected,
        "count windows after a restore onto 3 workers"
    );
}
