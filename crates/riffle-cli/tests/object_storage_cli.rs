//! Checkpoints on object storage (issue 16, items 4 and 7), against a real S3-protocol server:
//! `s3s-fs` (crates.io; `cargo install s3s-fs --version 0.14.1 --features binary`, which
//! scripts/test-deps.sh does), started by each test on a free loopback port over a temporary
//! folder. A job killed again and again resumes from its checkpoints on S3 exactly once; a
//! checkpoint whose manifest never arrived (a crash mid-checkpoint) is not restored; a zombie
//! (stopped, replaced, resumed) commits nothing, since no lock file exists on S3 and the attempt
//! number alone fences it; the processes of a supervised job share their checkpoints there.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::riffle;

const DEADLINE: Duration = Duration::from_secs(120);
const BUCKET: &str = "riffle-test";

/// An s3s-fs server over a temporary folder, killed when dropped.
struct S3Server {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl S3Server {
    fn start() -> S3Server {
        let binary = std::env::var("S3S_FS").unwrap_or_else(|_| "s3s-fs".into());
        let root = tempfile::tempdir().expect("tempdir");
        // A bucket of s3s-fs is a folder of its root.
        std::fs::create_dir(root.path().join(BUCKET)).expect("bucket");
        let port = common::free_port();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "riffle", "--secret-key", "riffle-secret"])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} ({e}): cargo install s3s-fs --version 0.14.1 --features binary")
            });
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "s3s-fs does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        S3Server { child, port, root }
    }

    /// `--checkpoint-dir` for `prefix` in the bucket.
    fn location(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}?endpoint=http://127.0.0.1:{}", self.port)
    }

    /// Where the server keeps the objects under `prefix`.
    fn folder(&self, prefix: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(prefix)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// riffle with the server's credentials in the environment (never in the URI).
fn riffle_s3() -> Command {
    let mut c = riffle();
    c.env("AWS_ACCESS_KEY_ID", "riffle")
        .env("AWS_SECRET_ACCESS_KEY", "riffle-secret")
        .env("AWS_REGION", "us-east-1");
    c
}

fn oracle(lines: u64) -> Vec<String> {
    common::sorted_stdout(riffle().args(common::generated_wordcount(lines, 0)))
}

/// The checkpoints with a manifest under `folder` (the server's files).
fn manifests(folder: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder).map_or(Vec::new(), |d| {
        d.filter_map(|e| e.ok())
            .map(|e| e.path().join("MANIFEST"))
            .filter(|m| m.exists())
            .collect()
    });
    found.sort();
    found
}

fn wait_for_manifests(folder: &Path, n: usize) {
    let start = Instant::now();
    while manifests(folder).len() < n {
        assert!(
            start.elapsed() < DEADLINE,
            "fewer than {n} checkpoints in {}",
            folder.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid of the child of `parent` started with `--process index`, from /proc.
fn child_process(parent: u32, index: &str) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|pid: &u32| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.windows(2)
                .any(|w| w[0] == b"--process" && w[1] == index.as_bytes())
        })
}

fn finish(command: &mut Command) -> String {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riffle starts");
    let o = common::wait_with_deadline(child, DEADLINE, "riffle");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

#[test]
fn a_job_killed_again_and_again_resumes_from_s3_exactly_once() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let lines = 300_000;
    let args = common::checkpointed_wordcount(lines, 60_000, &s3.location("jobs/wc"), &out);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..5 {
        let mut child = riffle_s3()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("riffle starts");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(400 + seed % 800));
        let _ = child.kill();
        child.wait().expect("reaped");
    }
    assert!(!manifests(&s3.folder("jobs/wc")).is_empty(), "checkpoints are on S3");
    assert!(!s3.folder("jobs/wc").join("LOCK.p0").exists(), "no lock file on S3");
    let err = finish(riffle_s3().args(&args));
    assert!(err.contains("resuming from checkpoint"), "{err}");
    assert_eq!(common::committed_lines(&out), oracle(lines));
}

#[test]
fn a_checkpoint_whose_manifest_never_arrived_is_not_restored() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let lines = 200_000;
    let args = common::checkpointed_wordcount(lines, 50_000, &s3.location("ck"), &out);
    let mut child = riffle_s3()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("riffle starts");
    wait_for_manifests(&s3.folder("ck"), 3);
    let _ = child.kill();
    child.wait().expect("reaped");
    // The crash came after the newest checkpoint's files and before its manifest.
    let all = manifests(&s3.folder("ck"));
    let newest = all.last().expect("a manifest");
    std::fs::remove_file(newest).expect("remove the newest manifest");
    let torn = newest
        .parent()
        .expect("its checkpoint")
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    let err = finish(riffle_s3().args(&args));
    let epoch: u64 = torn.trim_start_matches("chk-").parse().expect("epoch");
    assert!(
        err.contains(&format!("resuming from checkpoint {}", epoch - 1)),
        "the checkpoint before {torn}: {err}"
    );
    assert_eq!(common::committed_lines(&out), oracle(lines));
}

#[test]
fn a_zombie_on_object_storage_commits_nothing() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let lines = 150_000;
    let args = common::checkpointed_wordcount(lines, 50_000, &s3.location("zombie"), &out);
    let zombie = riffle_s3()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riffle starts");
    wait_for_manifests(&s3.folder("zombie"), 2);
    // Stopped where no lock can see it (S3 has none), and replaced: the new attempt runs to
    // the end while the old one sleeps.
    let pid = zombie.id();
    common::signal(pid, "-STOP");
    let err = finish(riffle_s3().args(&args));
    assert!(err.contains("resuming from checkpoint"), "{err}");
    let after_new = common::committed_lines(&out);
    assert_eq!(after_new, oracle(lines));
    common::signal(pid, "-CONT");
    let o = common::wait_with_deadline(zombie, DEADLINE, "the zombie");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "the zombie fails: {err}");
    assert!(err.contains("fenced: attempt 2 of this job has started"), "{err}");
    assert_eq!(common::committed_lines(&out), after_new, "the zombie committed nothing");
}

#[test]
fn the_processes_of_a_supervised_job_share_their_checkpoints_on_s3() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let lines = 300_000;
    let mut supervisor = riffle_s3()
        .args(["supervise", "--processes", "2"])
        .args(["--restart-strategy", "fixed-delay:attempts=5,delay=100ms", "--"])
        .args(common::checkpointed_wordcount(
            lines,
            30_000,
            &s3.location("cluster"),
            &out,
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riffle starts");
    // Kill a process of the job twice, each time after a new checkpoint.
    for kill in 1..=2 {
        wait_for_manifests(&s3.folder("cluster"), kill * 2);
        if let Some(pid) = child_process(supervisor.id(), "1") {
            common::signal(pid, "-KILL");
        }
    }
    let start = Instant::now();
    while supervisor.try_wait().expect("wait").is_none() {
        if start.elapsed() > DEADLINE {
            let _ = supervisor.kill();
            panic!("the supervisor did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = supervisor.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("restart 1 in"),
        "a process was killed and the job restarted: {err}"
    );
    assert_eq!(common::committed_lines(&out), oracle(lines));
}
