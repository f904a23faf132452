//! The edges of issue 13 that a user hits from the command line: extreme timestamps (item 3),
//! processes of one job that disagree (item 5) and smaller option edges (item 6). Every child
//! runs under a deadline and is killed when it passes it, so that a hang fails the test instead
//! of blocking the suite.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, riffle};

/// How long any one riffle run of these tests may take (each takes well under a second).
const DEADLINE: Duration = Duration::from_secs(30);

/// Waits for `child` until `deadline` has passed, then kills it and panics with `what`.
fn wait_with_deadline(mut child: Child, what: &str) -> Output {
    let start = Instant::now();
    // Drain the pipes on threads so that a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut buf);
        }
        buf
    });
    let err_t = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for riffle") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: riffle did not finish within {DEADLINE:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().expect("stdout reader"),
        stderr: err_t.join().expect("stderr reader"),
    }
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
/// and exited 0, and, in `--strict`, fails with the same message.
fn assert_malformed(dir: &Path, source: &str, name: &str, job: &[&str]) {
    let dead = dir.join(format!("{name}.dead.jsonl"));
    let dead_arg = dead.display().to_string();
    let mut args = job.to_vec();
    args.extend(["--source", source, "--dead-letter", &dead_arg]);
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
