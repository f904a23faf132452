//! `riffle nexmark` end to end: events written by `generate`, every query run by the binary
//! from that file and from its own generator, on 1 and 2 workers and on two processes, equal to
//! the batch computation of the query over the same events (sorted rows; for the updating q4,
//! the last row of each category).

use std::path::Path;
use std::process::{Output, Stdio};

use riffle_nexmark::{batch, Event, Query};

mod common;
use common::{free_port, riffle};

/// 40 K events at 1000 events/s: 40 s of event time, several windows of every query.
const GENERATOR: [&str; 4] = ["--events", "40000", "--rate", "1000"];

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn generate(path: &Path) -> Vec<Event> {
    let out = riffle()
        .args(["nexmark", "generate"])
        .args(GENERATOR)
        .output()
        .expect("riffle runs");
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(path, &out.stdout).expect("write events");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| Event::from_json(l).expect("generate writes events"))
        .collect()
}

/// Rows as the CLI prints them, sorted; for updating queries the last row of each key.
fn rows(query: Query, stdout: &[u8]) -> Vec<String> {
    let lines: Vec<String> = String::from_utf8_lossy(stdout).lines().map(str::to_string).collect();
    let mut rows = if query.updating() {
        let mut last = std::collections::BTreeMap::new();
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(&l).expect("JSON rows");
            last.insert(v["id"].as_u64().expect("an id"), l);
        }
        last.into_values().collect()
    } else {
        lines
    };
    rows.sort();
    rows
}

fn oracle(query: Query, events: &[Event]) -> Vec<String> {
    let mut lines: Vec<String> = batch::run(query, events)
        .into_iter()
        .map(|r| {
            let mut b = Vec::new();
            r.write_json(&mut b).expect("rows serialise");
            String::from_utf8(b).expect("utf-8").trim_end().to_string()
        })
        .collect();
    lines.sort();
    lines
}

fn run(args: &[&str]) -> Output {
    let o = riffle().args(args).output().expect("riffle runs");
    assert!(o.status.success(), "riffle {args:?}: {}", stderr(&o));
    o
}

#[test]
fn every_query_from_a_file_and_from_the_generator_equals_the_oracle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let events = generate(&path);
    let file = path.to_str().expect("utf-8 path");
    for query in Query::ALL {
        let want = oracle(query, &events);
        assert!(!want.is_empty(), "{query:?}: rows expected");
        for workers in ["1", "2"] {
            let q = query.name();
            let from_file = run(&["nexmark", "run", "--query", q, "--input", file, "--workers", workers]);
            assert_eq!(
                rows(query, &from_file.stdout),
                want,
                "{q} from the file on {workers} workers"
            );
            assert!(
                stderr(&from_file).contains("0 malformed, 0 late"),
                "{}",
                stderr(&from_file)
            );
            let mut args = vec!["nexmark", "run", "--query", q, "--workers", workers];
            args.extend(GENERATOR);
            let generated = run(&args);
            assert_eq!(
                rows(query, &generated.stdout),
                want,
                "{q} generated on {workers} workers"
            );
        }
    }
}

#[test]
fn two_processes_equal_the_oracle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let events = generate(&path);
    // Queries whose events and intermediate results cross processes: joins, sliding and
    // session windows, the updating q4.
    for query in [Query::Q3, Query::Q4, Query::Q5, Query::Q7, Query::Q8, Query::Q11] {
        let addresses = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
        let children: Vec<_> = ["0", "1"]
            .iter()
            .map(|p| {
                riffle()
                    .args(["nexmark", "run", "--query", query.name()])
                    .args(GENERATOR)
                    .args(["-w", "2", "-n", "2", "-p", p, "--addresses", &addresses])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("riffle starts")
            })
            .collect();
        let mut stdout = Vec::new();
        for child in children {
            let o = child.wait_with_output().expect("process ends");
            assert!(o.status.success(), "{}", stderr(&o));
            stdout.extend_from_slice(&o.stdout);
        }
        assert_eq!(rows(query, &stdout), oracle(query, &events), "{query:?} on 2 processes");
    }
}

#[test]
fn malformed_events_are_reported_with_their_line_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let events = generate(&path);
    let mut text = std::fs::read_to_string(&path).expect("read");
    // Line 3 becomes a bid without a price, and a line of garbage is appended.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.insert(
        2,
        r#"{"event_type":"bid","auction":1000,"bidder":1001,"date_time":1}"#.to_string(),
    );
    lines.push("not json".to_string());
    text = lines.join("\n") + "\n";
    std::fs::write(&path, text).expect("write");
    let dead = dir.path().join("dead.txt");
    let file = path.to_str().expect("utf-8 path");
    let o = run(&[
        "nexmark",
        "run",
        "--query",
        "q5",
        "--input",
        file,
        "--dead-letter",
        dead.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(rows(Query::Q5, &o.stdout), oracle(Query::Q5, &events));
    assert!(stderr(&o).contains("2 malformed"), "{}", stderr(&o));
    let dead = std::fs::read_to_string(&dead).expect("dead letters");
    assert!(dead.contains(":3") && dead.contains("price"), "{dead}");
    assert!(dead.contains(&format!(":{}", lines.len())), "{dead}");
    // --strict stops at the first one, naming it.
    let strict = riffle()
        .args(["nexmark", "run", "--query", "q0", "--input", file, "--strict"])
        .output()
        .expect("riffle runs");
    assert!(!strict.status.success());
    assert!(stderr(&strict).contains(":3"), "{}", stderr(&strict));
}

#[test]
fn the_same_configuration_generates_the_same_events() {
    let a = run(&["nexmark", "generate", "--events", "300"]).stdout;
    let b = run(&["nexmark", "generate", "--events", "300"]).stdout;
    assert_eq!(a, b);
    let shifted = run(&["nexmark", "generate", "--events", "300", "--first-event-id", "7"]).stdout;
    assert_ne!(a, shifted);
    let first: serde_json::Value =
        serde_json::from_slice(a.split(|b| *b == b'\n').next().expect("a line")).expect("JSON");
    assert_eq!(first["event_type"], "person");
    assert_eq!(first["date_time"], 1_700_000_000_000u64);
    let bad = riffle()
        .args(["nexmark", "run", "--query", "q6", "--events", "10"])
        .output()
        .expect("riffle runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("unknown Nexmark query 'q6'"), "{}", stderr(&bad));
}
