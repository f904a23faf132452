//! The edges of issue 13 that a user hits from the command line: extreme timestamps (item 3),
//! processes of one job that disagree (item 5) and smaller option edges (item 6). Every child
//! runs under a deadline and is killed when it passes it, so that a hang fails the test instead
//! of blocking the suite.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{free_port, riffle};

/// How long any one riffle run of these tests may take (each takes well under a second).
const DEADLINE: Duration = Duration::from_secs(30);

/// Waits for `child` until [`DEADLINE`] has passed, then kills it and panics with `what`.
fn wait_with_deadline(child: Child, what: &str) -> Output {
    common::wait_with_deadline(child, DEADLINE, what)
}

/// Runs riffle with `args` under the deadline.
fn run(args: &[&str]) -> Output {
    let child = riffle()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riffle starts");
    wait_with_deadline(child, &args.join(" "))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write input");
    format!("file://{}", path.display())
}

/// Asserts that the run reported line 1 of `name` as malformed (warning, counter, dead letter)
/// and exited 0, and, in `--strict`, fails with the same message. (The inputs are a line or
/// two: all malformed would fail the job under the default `--max-malformed-ratio`, which is
/// lifted here.)
fn assert_malformed(dir: &Path, source: &str, name: &str, job: &[&str]) {
    let dead = dir.join(format!("{name}.dead.jsonl"));
    let dead_arg = dead.display().to_string();
    let mut args = job.to_vec();
    args.extend([
        "--source",
        source,
        "--dead-letter",
        &dead_arg,
        "--max-malformed-ratio",
        "1",
    ]);
    let o = run(&args);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{args:?}: {err}");
    assert!(err.contains(&format!("{name}:1: event time")), "{args:?}: {err}");
    assert!(err.contains("1 malformed"), "{args:?}: {err}");
    let dead_lines = std::fs::read_to_string(&dead).expect("dead letters written");
    assert_eq!(dead_lines.lines().count(), 1, "{args:?}: {dead_lines}");
    assert!(dead_lines.contains("outside the supported range"), "{dead_lines}");
    args.push("--strict");
    let o = run(&args);
    assert_eq!(o.status.code(), Some(1), "{args:?} --strict: {}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(&format!("{name}:1: event time")),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn i64_max_in_a_window_is_malformed_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = write(dir.path(), "max.txt", "9223372036854775807,max\n");
    assert_malformed(
        dir.path(),
        &src,
        "max.txt",
        &["wordcount", "--time", "event", "--window", "5s"],
    );
    assert_malformed(
        dir.path(),
        &src,
        "max.txt",
        &["distinct", "--time", "event", "--window", "5s"],
    );
    assert_malformed(
        dir.path(),
        &src,
        "max.txt",
        &["wordcount", "--time", "event", "--count-window", "1"],
    );
}

#[test]
fn i64_max_in_json_is_malformed_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = write(
        dir.path(),
        "max.json",
        "{\"ts\":9223372036854775807,\"text\":\"max\"}\n",
    );
    assert_malformed(
        dir.path(),
        &src,
        "max.json",
        &[
            "wordcount",
            "--input-format",
            "json",
            "--time",
            "event",
            "--window",
            "5s",
        ],
    );
}

#[test]
fn i64_min_with_slide_and_lateness_is_malformed_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = write(dir.path(), "min.txt", "-9223372036854775808,min\n");
    let job = [
        "wordcount",
        "--time",
        "event",
        "--window",
        "5s",
        "--slide",
        "1s",
        "--lateness",
        "10s",
    ];
    assert_malformed(dir.path(), &src, "min.txt", &job);
}

#[test]
fn near_i64_min_is_reported_not_dropped_silently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = write(dir.path(), "lost.txt", "-9223372036854775001,lost\n");
    assert_malformed(
        dir.path(),
        &src,
        "lost.txt",
        &["wordcount", "--time", "event", "--window", "5s"],
    );
}

#[test]
fn the_ends_of_the_supported_range_are_counted() {
    // EVENT_TIME_MAX and EVENT_TIME_MIN (±2^62 ms) are valid event times: every job counts them.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = write(
        dir.path(),
        "edge.txt",
        "4611686018427387903,high\n-4611686018427387904,low\n",
    );
    for job in [
        &["wordcount", "--time", "event", "--window", "5s"][..],
        &[
            "wordcount",
            "--time",
            "event",
            "--window",
            "5s",
            "--slide",
            "1s",
            "--lateness",
            "10s",
        ],
        &["wordcount", "--time", "event", "--count-window", "1"],
        &["wordcount", "--time", "event", "--session-gap", "5s"],
    ] {
        let mut args = job.to_vec();
        args.extend(["--source", &src, "--format", "json"]);
        let o = run(&args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        let out = text(&o.stdout);
        assert!(out.contains("\"high\"") && out.contains("\"low\""), "{args:?}: {out}");
        assert!(text(&o.stderr).contains("0 malformed"), "{}", text(&o.stderr));
    }
}

/// Starts the two processes of a word count over `source`, process `i` with `extra[i]`, and
/// returns both outputs (each under the deadline).
fn two_processes(source: &str, extra: [&[&str]; 2]) -> [Output; 2] {
    let addresses = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let children: Vec<Child> = (0..2)
        .map(|p| {
            let index = p.to_string();
            let mut cmd: Command = riffle();
            cmd.args(["wordcount", "--source", source, "--time", "event", "--format", "json"])
                .args(["-n", "2", "-p", &index, "--addresses", &addresses])
                .args(extra[p])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().expect("riffle starts")
        })
        .collect();
    let mut outputs = children
        .into_iter()
        .enumerate()
        .map(|(p, c)| wait_with_deadline(c, &format!("process {p}")));
    let first = outputs.next().expect("process 0");
    let second = outputs.next().expect("process 1");
    [first, second]
}

#[test]
fn processes_with_different_worker_counts_refuse_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = write(dir.path(), "words.txt", "1000,a b\n2000,b c\n");
    let [p0, p1] = two_processes(&src, [&["-w", "1", "--window", "5s"], &["-w", "2", "--window", "5s"]]);
    for (p, o) in [(0, &p0), (1, &p1)] {
        assert_eq!(o.status.code(), Some(1), "process {p}: {}", text(&o.stderr));
        assert!(o.stdout.is_empty(), "process {p} printed results: {}", text(&o.stdout));
    }
    let e0 = text(&p0.stderr);
    assert!(
        e0.contains("process 1 runs with --workers 2, process 0 with --workers 1"),
        "{e0}"
    );
    let e1 = text(&p1.stderr);
    assert!(
        e1.contains("process 0 runs with --workers 1, process 1 with --workers 2"),
        "{e1}"
    );
}

#[test]
fn processes_with_different_windows_refuse_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = write(dir.path(), "words.txt", "1000,a b\n2000,b c\n");
    let [p0, p1] = two_processes(&src, [&["--window", "5s"], &["--window", "10s"]]);
    for (p, o) in [(0, &p0), (1, &p1)] {
        assert_eq!(o.status.code(), Some(1), "process {p}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("--window"), "process {p}: {}", text(&o.stderr));
    }
    assert!(
        text(&p0.stderr).contains("process 1 runs with --window 10s, process 0 with --window 5s"),
        "{}",
        text(&p0.stderr)
    );
}

#[test]
fn processes_with_the_same_settings_still_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = write(dir.path(), "words.txt", "1000,a b\n2000,b c\n");
    // Outputs may differ per process: each writes its own file.
    let out0 = dir.path().join("out0.jsonl").display().to_string();
    let out1 = dir.path().join("out1.jsonl").display().to_string();
    let [p0, p1] = two_processes(
        &src,
        [
            &["--window", "5s", "--output", &out0],
            &["--window", "5s", "--output", &out1],
        ],
    );
    assert!(p0.status.success(), "{}", text(&p0.stderr));
    assert!(p1.status.success(), "{}", text(&p1.stderr));
    let rows = std::fs::read_to_string(&out0).expect("out0") + &std::fs::read_to_string(&out1).expect("out1");
    assert_eq!(rows.lines().count(), 3, "{rows}");
}

/// Runs riffle with `args` in `dir` (for relative paths) under the deadline.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    let child = riffle()
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riffle starts");
    wait_with_deadline(child, &args.join(" "))
}

/// Asserts a configuration error (exit 2) whose message contains `want`.
fn assert_config_error(o: &Output, want: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(want), "expected '{want}' in: {err}");
}

#[test]
fn a_bare_path_is_a_file_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("words.txt"), "a b a\n").expect("write");
    let o = run_in(dir.path(), &["wordcount", "--source", "words.txt"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("a 2"), "{}", text(&o.stdout));
    assert_config_error(
        &run_in(dir.path(), &["wordcount", "--source", "ftp://x"]),
        "unknown scheme",
    );
}

#[test]
fn negative_durations_are_values_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = write(dir.path(), "w.txt", "1000,a\n");
    for args in [
        &["wordcount", "--source", &src, "--time", "event", "--window", "-5s"][..],
        &["wordcount", "--source", &src, "--time", "event", "--window=-5s"],
    ] {
        let o = run(args);
        assert_config_error(&o, "invalid configuration: --window: must not be negative, got '-5s'");
    }
    // A value that is not a duration: one prefix, not two.
    let o = run(&["wordcount", "--source", &src, "--time", "event", "--window", "abc"]);
    assert_config_error(&o, "invalid configuration: --window: invalid duration 'abc'");
    assert!(
        !text(&o.stderr).contains("--window: invalid configuration"),
        "{}",
        text(&o.stderr)
    );
    let ck = dir.path().join("ck").display().to_string();
    let o = run(&[
        "wordcount",
        "--source",
        &src,
        "--checkpoint-dir",
        &ck,
        "--checkpoint-interval",
        "abc",
    ]);
    assert_config_error(
        &o,
        "invalid configuration: --checkpoint-interval: invalid duration 'abc'",
    );
}

#[test]
fn ignored_or_out_of_range_options_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = write(dir.path(), "w.txt", "1000,a\n");
    let cases: [(&[&str], &str); 5] = [
        (
            &["wordcount", "--source", &src, "--time", "event", "--lateness", "1s"],
            "--lateness applies to time windows",
        ),
        (
            &["distinct", "--source", &src, "--method", "exact", "--precision", "10"],
            "--precision applies to --method hll",
        ),
        (
            &[
                "distinct",
                "--source",
                &src,
                "--method",
                "bloom",
                "--expected-items",
                "0",
            ],
            "--expected-items must be at least 1",
        ),
        (
            &["wordcount", "--source", &src, "--chunk-lines", "0"],
            "--chunk-lines must be at least 1",
        ),
        (
            &["wordcount", "--source", &src, "-w", "100000"],
            "--workers 100000 is more than",
        ),
    ];
    for (args, want) in cases {
        assert_config_error(&run(args), want);
    }
}

#[test]
fn topk_with_a_small_map_warns_and_prints_its_error_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = String::new();
    for i in 0..300 {
        lines.push_str(&format!("w{} w{} hot\n", i % 50, (i * 7) % 50));
    }
    let src = write(dir.path(), "w.txt", &lines);
    let o = run(&["topk", "--source", &src, "--k", "3", "--map-size", "8"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("--map-size 8 is below 32 slots per reported item"),
        "{}",
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("(counts ±"), "{}", text(&o.stdout));
    // With a map large enough the counts are exact and printed as before.
    let o = run(&["topk", "--source", &src, "--k", "3"]);
    assert!(
        o.status.success() && !text(&o.stderr).contains("WARN"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout).trim(), "hot:300 w0:12 w1:12", "{}", text(&o.stdout));
}

#[test]
fn riffle_log_info_shows_the_job_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = write(dir.path(), "w.txt", "1000,a\n2000,b\n");
    let child = riffle()
        .env("RIFFLE_LOG", "info")
        .args([
            "wordcount",
            "--source",
            &src,
            "--time",
            "event",
            "--window",
            "5s",
            "-w",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riffle starts");
    let o = wait_with_deadline(child, "RIFFLE_LOG=info");
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("starting wordcount: 2 worker(s) per process"), "{err}");
    assert!(err.contains("split 0 ended on worker"), "{err}");
    assert!(err.contains("after 2 records"), "{err}");
    assert!(err.contains("shut down after wordcount"), "{err}");
}
