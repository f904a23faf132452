//! How a job ends before its input does, from the command line (issue 13, items 1 and 4):
//! results written while the job runs, SIGINT/SIGTERM stopping it cleanly (with a final
//! checkpoint from which it resumes exactly once), a reader that closes stdout, strict mode
//! that fails without printing partial windows, and input that is mostly malformed. Every
//! child runs under a deadline, so a job that does not stop fails the test.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::riffle;

const DEADLINE: Duration = Duration::from_secs(60);

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn spawn(command: &mut Command) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riffle starts")
}

/// Sends `signal` (`-INT`, `-TERM`) to `child`.
fn signal(child: &Child, signal: &str) {
    // The shell's builtin `kill`: a fresh machine may lack procps' /usr/bin/kill.
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("kill {signal} {}", child.id()))
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {signal} failed");
}

/// Waits until `path` has at least `lines` lines (panics after the deadline).
fn wait_for_lines(path: &Path, lines: usize) -> usize {
    let start = Instant::now();
    loop {
        let n = std::fs::read_to_string(path).map_or(0, |s| s.lines().count());
        if n >= lines {
            return n;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{} has {n} lines, {lines} expected",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number after `what` in the summary (`… 35 results, …`).
fn summary_count(stderr: &str, what: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("riffle: wordcount"))
        .expect("a summary line");
    let words: Vec<&str> = line.split([' ', ',', ':']).filter(|w| !w.is_empty()).collect();
    let at = words.iter().position(|w| *w == what).expect("the count in the summary");
    words[at - 1].parse().expect("a number")
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Generated words, 20 000 lines a second, 10 ms of event time apart: 1 s windows fire about
/// five times a second.
const PACED: &str = "generate://words?lines=2000000&rate=20000&vocabulary=5&step=10";

#[test]
fn results_reach_a_file_while_the_job_runs_and_sigterm_stops_it_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("o.jsonl");
    let child = spawn(riffle().args(["wordcount", "--source", PACED]).args([
        "--time",
        "event",
        "--window",
        "1s",
        "--format",
        "json",
        "--output",
        out.to_str().expect("utf-8 path"),
    ]));
    // Fired windows are in the file while the job runs, not when it ends.
    wait_for_lines(&out, 10);
    signal(&child, "-TERM");
    let o = common::wait_with_deadline(child, DEADLINE, "SIGTERM");
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("stopped (interrupted by a signal"), "{err}");
    // Every result the summary counts is in the file.
    let written = std::fs::read_to_string(&out).expect("output").lines().count() as u64;
    assert_eq!(written, summary_count(&err, "results"), "{err}");
}

#[test]
fn a_stop_takes_a_final_checkpoint_from_which_the_job_resumes_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ck, sink) = (dir.path().join("ck"), dir.path().join("out"));
    let source = "generate://words?lines=200000&rate=50000&vocabulary=50&step=1";
    let job = |workers: &str| {
        let mut c = riffle();
        c.args(["wordcount", "--source", source, "--time", "event", "--window", "10s"])
            .args(["--format", "json", "-w", workers, "--checkpoint-dir"])
            .arg(&ck)
            .arg("--sink")
            .arg(format!("file://{}", sink.display()));
        c
    };
    let child = spawn(&mut job("2"));
    // Some windows have been committed (the first checkpoints are complete).
    let start = Instant::now();
    while std::fs::read_dir(&sink).map_or(0, |d| d.filter_map(|e| e.ok()).filter(|e| e.path().is_file()).count()) == 0 {
        assert!(start.elapsed() < DEADLINE, "no committed results");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, "-INT");
    let o = common::wait_with_deadline(child, DEADLINE, "SIGINT");
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("open windows are kept in checkpoint"), "{err}");
    let first_run = summary_count(&err, "records");
    assert!(first_run < 200_000, "the job ended before the stop: {err}");

    // Resumed on one worker, it reads the rest; the committed results equal one
    // uninterrupted run's.
    let o = common::wait_with_deadline(spawn(&mut job("1")), DEADLINE, "resume");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        first_run + summary_count(&stderr(&o), "records"),
        200_000,
        "{}",
        stderr(&o)
    );
    let mut committed = String::new();
    for entry in std::fs::read_dir(&sink).expect("sink dir").filter_map(|e| e.ok()) {
        if entry.path().is_file() {
            committed.push_str(&std::fs::read_to_string(entry.path()).expect("part file"));
        }
    }
    let o = riffle()
        .args([
            "wordcount",
            "--source",
            source,
            "--time",
            "event",
            "--window",
            "10s",
            "--format",
            "json",
        ])
        .output()
        .expect("riffle runs");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        sorted_lines(&committed),
        sorted_lines(&String::from_utf8_lossy(&o.stdout))
    );
}

#[test]
fn a_reader_that_closes_stdout_ends_the_job_quietly() {
    let mut child = spawn(
        riffle()
            .args(["wordcount", "--source", PACED])
            .args(["--time", "event", "--window", "1s", "--format", "json"]),
    );
    // Read one line, then close the pipe, as `| head -1` does.
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).expect("one line");
    assert!(first.starts_with("{\"window_start\""), "{first}");
    let o = common::wait_with_deadline(child, DEADLINE, "closed stdout");
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains("error"), "{err}");
    assert!(err.contains("the reader of stdout closed it"), "{err}");
}

/// Word lines 10 ms apart, the line `bad` (1-based) replaced by text without a timestamp.
fn words_with_a_bad_line(path: &Path, lines: u64, bad: usize) {
    let o = riffle()
        .args([
            "generate",
            "words",
            "--lines",
            &lines.to_string(),
            "--step",
            "10",
            "--vocabulary",
            "7",
        ])
        .output()
        .expect("riffle generate");
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).expect("utf-8");
    let mut out: Vec<&str> = text.lines().collect();
    out[bad - 1] = "garbage line";
    std::fs::write(path, out.join("\n") + "\n").expect("write input");
}

#[test]
fn strict_mode_fails_without_printing_a_partial_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("words.txt");
    words_with_a_bad_line(&input, 100_000, 50_001);
    let uri = format!("file://{}", input.display());
    let job = ["wordcount", "--source", &uri, "--time", "event", "--window", "100s"];
    // The oracle: every window of the input without the bad line.
    let o = riffle().args(job).output().expect("riffle runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let complete = sorted_lines(&String::from_utf8_lossy(&o.stdout));
    for workers in ["1", "2"] {
        for chunk in ["1024", "100"] {
            let o = riffle()
                .args(job)
                .args(["--strict", "-w", workers, "--chunk-lines", chunk])
                .output()
                .expect("riffle runs");
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            assert!(stderr(&o).contains(":50001:"), "{}", stderr(&o));
            // What was printed was final: rows of windows the bad line is not in, with their
            // full counts (a partial window's counts are not among the oracle's).
            for row in sorted_lines(&String::from_utf8_lossy(&o.stdout)) {
                assert!(complete.contains(&row), "-w {workers}: partial result {row}");
                assert!(!row.starts_with("[1700000500000,"), "-w {workers}: {row}");
            }
        }
    }
}

#[test]
fn an_input_that_is_mostly_malformed_fails_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("words.txt");
    words_with_a_bad_line(&input, 1_000, 1);
    let uri = format!("file://{}", input.display());
    // Text lines read as JSON: every one is malformed.
    let o = riffle()
        .args([
            "wordcount",
            "--source",
            &uri,
            "--time",
            "event",
            "--input-format",
            "json",
        ])
        .output()
        .expect("riffle runs");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1000 of 1000 input records (100 %) were malformed"),
        "{}",
        stderr(&o)
    );
    // One bad line in a thousand is not a wrong format.
    let o = riffle()
        .args(["wordcount", "--source", &uri, "--time", "event"])
        .output()
        .expect("riffle runs");
    assert!(o.status.success(), "{}", stderr(&o));
    // The threshold is the user's.
    let o = riffle()
        .args([
            "wordcount",
            "--source",
            &uri,
            "--time",
            "event",
            "--max-malformed-ratio",
            "0",
        ])
        .output()
        .expect("riffle runs");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}
