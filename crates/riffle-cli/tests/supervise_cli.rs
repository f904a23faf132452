//! Fencing and `riffle supervise` from the command line (issue 16, items 1, 2 and 7): a second
//! instance on a running job's checkpoint directory is refused and changes nothing; a
//! three-process job whose processes are killed at random moments, ten times, commits what an
//! uninterrupted run does; a stopped (SIGSTOP) process is detected by the progress timeout; the
//! restart strategies give up as Flink's do; SIGTERM stops every process cleanly. Every child
//! runs under a deadline.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::riffle;

const DEADLINE: Duration = Duration::from_secs(120);

/// A running riffle whose stderr lines are collected as they come.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(command: &mut Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("riffle starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let collected = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                collected.lock().expect("lines").push(line);
            }
        });
        Running {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// The pids of the newest attempt the supervisor reported, and its number.
    fn newest_attempt(&self) -> Option<(u64, Vec<u32>)> {
        let lines = self.lines.lock().expect("lines");
        lines.iter().rev().find_map(|l| {
            let rest = l.strip_prefix("riffle supervise: attempt ")?;
            let (n, rest) = rest.split_once(':')?;
            let pids = rest.split_once("(pid ")?.1.split_once(')')?.0;
            Some((
                n.parse().ok()?,
                pids.split(", ").map(|p| p.parse().expect("pid")).collect(),
            ))
        })
    }

    /// Waits for an attempt numbered at least `n`; its pids.
    fn wait_for_attempt(&mut self, n: u64) -> Vec<u32> {
        let start = Instant::now();
        loop {
            if let Some((m, pids)) = self.newest_attempt() {
                if m >= n {
                    return pids;
                }
            }
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!(
                    "the supervisor exited ({status}) before attempt {n}:\n{}",
                    self.stderr()
                );
            }
            assert!(start.elapsed() < DEADLINE, "no attempt {n}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit; the status and stderr.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!("riffle did not finish within {DEADLINE:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an uninterrupted run prints, sorted.
fn oracle(lines: u64) -> Vec<String> {
    common::sorted_stdout(riffle().args(common::generated_wordcount(lines, 0)))
}

/// Every file under `dir` with its bytes, sorted by path.
fn listing(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list").filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

fn complete_checkpoints(ck: &Path) -> usize {
    std::fs::read_dir(ck).map_or(0, |d| {
        d.filter_map(|e| e.ok())
            .filter(|e| e.path().join("MANIFEST").exists())
            .count()
    })
}

#[test]
fn a_second_instance_on_a_running_jobs_checkpoint_directory_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ck, out) = (dir.path().join("ck"), dir.path().join("out"));
    let args = common::checkpointed_wordcount(150_000, 50_000, &ck.display().to_string(), &out);
    let first = Running::start(riffle().args(&args));
    let start = Instant::now();
    while complete_checkpoints(&ck) == 0 {
        assert!(start.elapsed() < DEADLINE, "no checkpoint:\n{}", first.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first instance is held still, so that whatever changes is the second one's doing.
    common::signal(first.child.id(), "-STOP");
    let (ck_before, out_before) = (listing(&ck), listing(&out));
    let second = riffle().args(&args).output().expect("riffle runs");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains(&ck.display().to_string()), "names the directory: {err}");
    assert!(
        err.contains(&format!("pid {}", first.child.id())),
        "names the holder: {err}"
    );
    assert!(err.contains("in use by another instance"), "{err}");
    assert_eq!(listing(&ck), ck_before, "the checkpoint directory is untouched");
    assert_eq!(listing(&out), out_before, "the output directory is untouched");
    common::signal(first.child.id(), "-CONT");
    let (status, err) = first.wait();
    assert!(status.success(), "{err}");
    assert_eq!(common::committed_lines(&out), oracle(150_000));
}

#[test]
fn a_three_process_job_killed_ten_times_under_the_supervisor_commits_what_an_uninterrupted_run_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ck, out) = (dir.path().join("ck"), dir.path().join("out"));
    let lines = 500_000;
    let mut supervisor = Running::start(
        riffle()
            .args(["supervise", "--processes", "3"])
            .args(["--restart-strategy", "fixed-delay:attempts=20,delay=100ms", "--"])
            .args(common::checkpointed_wordcount(
                lines,
                25_000,
                &ck.display().to_string(),
                &out,
            )),
    );
    // A fixed seed: the moments and the processes vary, and a failure can be replayed.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for kill in 1..=10u64 {
        let pids = supervisor.wait_for_attempt(kill);
        std::thread::sleep(Duration::from_millis(300 + next(1200)));
        let victim = pids[next(3) as usize];
        common::signal(victim, "-KILL");
    }
    supervisor.wait_for_attempt(11);
    let (status, err) = supervisor.wait();
    assert!(status.success(), "{err}");
    for kill in 1..=10 {
        assert!(
            err.contains(&format!("attempt {kill} failed: process")) && err.contains(&format!("restart {kill} in")),
            "restart {kill} is printed with its cause:\n{err}"
        );
    }
    assert!(err.contains("the job finished (attempt 11)"), "{err}");
    assert_eq!(
        common::committed_lines(&out),
        oracle(lines),
        "exactly once after 10 kills:\n{err}"
    );
}

#[test]
fn a_stopped_process_is_detected_by_the_progress_timeout_and_the_job_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ck, out) = (dir.path().join("ck"), dir.path().join("out"));
    let lines = 150_000;
    let mut supervisor = Running::start(
        riffle()
            .args(["supervise", "--processes", "2", "--progress-timeout", "2s"])
            .args(["--restart-strategy", "fixed-delay:attempts=3,delay=100ms", "--"])
            .args(common::checkpointed_wordcount(
                lines,
                30_000,
                &ck.display().to_string(),
                &out,
            )),
    );
    let pids = supervisor.wait_for_attempt(1);
    let start = Instant::now();
    while complete_checkpoints(&ck) == 0 {
        assert!(start.elapsed() < DEADLINE, "no checkpoint:\n{}", supervisor.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    common::signal(pids[1], "-STOP");
    supervisor.wait_for_attempt(2);
    // The stopped process was killed before the restart: resuming it does nothing.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -CONT {} 2>/dev/null", pids[1]))
        .status();
    let (status, err) = supervisor.wait();
    assert!(status.success(), "{err}");
    assert!(err.contains("no checkpoint completed"), "the cause is printed:\n{err}");
    assert_eq!(common::committed_lines(&out), oracle(lines));
}

#[test]
fn the_restart_strategies_give_up_as_flinks_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A malformed line in strict mode fails every attempt the same way.
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "1000 a b\n2000 c\nnot-a-time d\n3000 e\n").expect("input");
    let failing = |strategy: &str, ck: &str| {
        let mut c = riffle();
        c.args(["supervise", "--restart-strategy", strategy, "--"])
            .args(["wordcount", "--time", "event", "--window", "10s", "--strict"])
            .arg("--source")
            .arg(format!("file://{}", input.display()))
            .arg("--checkpoint-dir")
            .arg(dir.path().join(ck));
        c.output().expect("riffle runs")
    };
    let o = failing("fixed-delay:attempts=2,delay=50ms", "ck1");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("restart 1 in 50 ms") && err.contains("restart 2 in 50 ms"),
        "{err}"
    );
    assert!(!err.contains("restart 3"), "{err}");
    assert!(
        err.contains(
            "giving up after 2 restart(s): fixed-delay allows 2 restart(s), all used; the last failure: process 0"
        ),
        "{err}"
    );

    let o = failing("none", "ck2");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("giving up after 0 restart(s): the restart strategy is none"),
        "{err}"
    );

    let o = failing("failure-rate:max=1,interval=1m,delay=0s", "ck3");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("restart 1 in 0 ms") && !err.contains("restart 2"), "{err}");
    assert!(err.contains("more than failure-rate's max of 1"), "{err}");

    // Wrong arguments fail every attempt alike: no restart at all.
    let o = riffle()
        .args(["supervise", "--", "wordcount", "--window", "ten seconds"])
        .output()
        .expect("riffle runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not restarting the job") && !err.contains("restart 1"),
        "{err}"
    );

    // The supervisor's own arguments are checked before anything starts.
    for (args, what) in [
        (
            vec!["supervise", "--restart-strategy", "sometimes", "--", "wordcount"],
            "sometimes",
        ),
        (vec!["supervise", "--", "wordcount", "--process", "1"], "--process"),
    ] {
        let o = riffle().args(&args).output().expect("riffle runs");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(what), "{err}");
    }
}

#[test]
fn sigterm_stops_every_process_cleanly_and_the_next_supervisor_resumes_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ck, out) = (dir.path().join("ck"), dir.path().join("out"));
    let lines = 200_000;
    let args = common::checkpointed_wordcount(lines, 40_000, &ck.display().to_string(), &out);
    let mut supervisor = Running::start(riffle().args(["supervise", "--processes", "2", "--"]).args(&args));
    supervisor.wait_for_attempt(1);
    let start = Instant::now();
    while common::committed_lines(&out).is_empty() {
        assert!(
            start.elapsed() < DEADLINE,
            "nothing committed:\n{}",
            supervisor.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    common::signal(supervisor.child.id(), "-TERM");
    let (status, err) = supervisor.wait();
    assert!(status.success(), "{err}");
    assert!(err.contains("the job stopped cleanly"), "{err}");
    assert!(
        common::committed_lines(&out).len() < oracle(lines).len(),
        "stopped before the end:\n{err}"
    );

    let (status, err) = Running::start(riffle().args(["supervise", "--processes", "2", "--"]).args(&args)).wait();
    assert!(status.success(), "{err}");
    assert!(err.contains("resuming from checkpoint"), "{err}");
    assert_eq!(common::committed_lines(&out), oracle(lines));
}
