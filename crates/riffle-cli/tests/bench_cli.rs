//! `riffle bench` end to end on small inputs: the benchmarks live in the `riffle-bench` crate,
//! and these check that the binary still dispatches to them and that their engine and
//! hand-written runs agree (each benchmark fails on a mismatch).

mod common;
use common::run as riffle;

use common::ok_stdout;

#[test]
fn bench_wordcount_checks_the_engine_against_the_loop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("words.txt");
    let text = ok_stdout(riffle(&[
        "generate",
        "words",
        "--lines",
        "2000",
        "--step",
        "1",
        "--vocabulary",
        "300",
    ]));
    std::fs::write(&input, text).expect("write input");
    let out = ok_stdout(riffle(&[
        "bench",
        "wordcount",
        "--file",
        input.to_str().expect("utf-8 path"),
        "--workers",
        "1,2",
        "--repeat",
        "1",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("riffle bench wordcount: "), "{out}");
    // Three jobs on two worker counts, each checked.
    let rows: Vec<&&str> = lines.iter().filter(|l| l.contains(" ok (")).collect();
    assert_eq!(rows.len(), 6, "{out}");
    assert!(lines.last().is_some_and(|l| l.starts_with("ratio = ")), "{out}");
}

#[test]
fn bench_checkpoint_restores_every_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ok_stdout(riffle(&[
        "bench",
        "checkpoint",
        "--sizes-mb",
        "1",
        "--dir",
        dir.path().to_str().expect("utf-8 path"),
    ]));
    // The benchmark fails unless the restore finds every key it snapshotted.
    let row = out.lines().nth(2).expect("a row per size");
    assert!(row.trim_start().starts_with("1 MB"), "{out}");
    assert_eq!(row.split_whitespace().nth(2), Some("31250"), "{out}");
}

#[test]
fn bench_store_checks_every_append_and_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ok_stdout(riffle(&[
        "bench",
        "store",
        "--writers",
        "1,4",
        "--async-writers",
        "3",
        "--appends-per-writer",
        "20",
        "--read-events",
        "3000",
        "--latency-rates",
        "200",
        "--latency-intervals",
        "5,20",
        "--latency-secs",
        "0.2",
        "--dir",
        dir.path().to_str().expect("utf-8 path"),
    ]));
    // The benchmark fails unless every version and every event read back is the expected one,
    // and unless the read model reaches every append of the latency runs.
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("riffle bench store: "), "{out}");
    let appends: Vec<Vec<&str>> = lines[2..5]
        .iter()
        .map(|l| l.split_whitespace().take(2).collect())
        .collect();
    assert_eq!(appends, [["1", "20"], ["4", "80"], ["3-async", "60"]], "{out}");
    assert_eq!(lines[7].split_whitespace().next(), Some("3000"), "{out}");
    assert!(lines[9].starts_with("append -> read-model visible"), "{out}");
    let latency: Vec<Vec<&str>> = lines[11..13]
        .iter()
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(latency, [["200", "5", "40"], ["200", "20", "40"]], "{out}");
    // It cleans up after itself.
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0, "{out}");
}

#[test]
fn bench_recovery_times_a_restart_under_the_supervisor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ok_stdout(riffle(&[
        "bench",
        "recovery",
        "--state-mb",
        "1",
        "--rate",
        "100000",
        "--dir",
        dir.path().to_str().expect("utf-8 path"),
    ]));
    let row = out.lines().nth(2).expect("a row per size");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.get(1), Some(&"45454"), "keys for 1 MB: {out}");
    // restarted ≤ restored ≤ processing, all measured.
    let secs = |i: usize| cells[i].trim_end_matches('s').parse::<f64>().expect("seconds");
    assert!(secs(2) <= secs(3) && secs(3) <= secs(4), "{out}");
    assert_eq!(
        std::fs::read_dir(dir.path()).map_or(0, |d| d.count()),
        0,
        "cleaned up: {out}"
    );
}

#[test]
fn every_benchmark_has_its_subcommand() {
    for bench in [
        "wordcount",
        "sketches",
        "join",
        "checkpoint",
        "kafka",
        "store",
        "recovery",
    ] {
        let out = ok_stdout(riffle(&["bench", bench, "--help"]));
        assert!(out.contains(&format!("bench {bench} [OPTIONS]")), "{bench}: {out}");
    }
}
