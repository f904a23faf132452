//! `riffle wordcount` end to end: the real binary on files, folders, stdin, a TCP server and
//! two processes on loopback, checked against word counts computed plainly in the test.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::free_port;

/// One windowed result: (window start, window end, word, count).
type Row = (i64, i64, String, u64);

fn riffle() -> Command {
    Command::new(env!("CARGO_BIN_EXE_riffle"))
}

fn run(args: &[&str]) -> Output {
    riffle().args(args).output().expect("riffle starts")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parses `--format json` lines of windowed results, sorted.
fn json_rows(stdout: &[u8]) -> Vec<Row> {
    let mut rows: Vec<Row> = String::from_utf8(stdout.to_vec())
        .expect("utf-8 output")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"));
            (
                v["window_start"].as_i64().expect("window_start"),
                v["window_end"].as_i64().expect("window_end"),
                v["word"].as_str().expect("word").to_string(),
                v["count"].as_u64().expect("count"),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Parses `--format json` lines of whole-input counts.
fn json_totals(stdout: &[u8]) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for l in String::from_utf8(stdout.to_vec()).expect("utf-8 output").lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"));
        let word = v["word"].as_str().expect("word").to_string();
        assert!(v.get("window_start").is_none(), "no window without --window: {l}");
        let prev = totals.insert(word, v["count"].as_u64().expect("count"));
        assert!(prev.is_none(), "each word once: {l}");
    }
    totals
}

/// A small deterministic generator (the tests need no randomness crate).
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

/// Event-time lines `<ts>,<words>` whose timestamps drift upwards with disorder strictly
/// below `disorder` ms, so none is behind a watermark of out-of-orderness `disorder`.
fn event_lines(seed: u64, n: usize, disorder: u64) -> Vec<(i64, Vec<String>)> {
    let mut rng = Lcg(seed);
    let mut max = 1_700_000_000_000i64;
    (0..n)
        .map(|_| {
            let ts = max - rng.next(disorder) as i64;
            max += rng.next(40) as i64;
            let words = (0..1 + rng.next(5))
                .map(|_| {
                    // Skewed: small word numbers are the most frequent.
                    let range = 1 + rng.next(30);
                    format!("w{}", rng.next(range))
                })
                .collect();
            (ts, words)
        })
        .collect()
}

fn write_event_file(path: &Path, lines: &[(i64, Vec<String>)]) {
    let mut text = String::new();
    for (i, (ts, words)) in lines.iter().enumerate() {
        let sep = [",", "\t", " "][i % 3];
        text.push_str(&format!("{ts}{sep}{}\n", words.join(" ")));
    }
    std::fs::write(path, text).expect("write input");
}

/// The oracle: counts per (window, word) for windows of `size` every `slide` ms.
fn oracle_windows(lines: &[(i64, Vec<String>)], size: i64, slide: i64) -> Vec<Row> {
    let mut counts: BTreeMap<(i64, i64, String), u64> = BTreeMap::new();
    for (ts, words) in lines {
        let mut start = ts.div_euclid(slide) * slide;
        while start + size > *ts {
            for w in words {
                *counts.entry((start, start + size, w.clone())).or_default() += 1;
            }
            start -= slide;
        }
    }
    counts.into_iter().map(|((s, e, w), n)| (s, e, w, n)).collect()
}

fn oracle_totals<'a>(words: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for w in words {
        *totals.entry(w.clone()).or_default() += 1;
    }
    totals
}

/// Session windows per word: components of its timestamps at most `gap` apart.
fn oracle_sessions(lines: &[(i64, Vec<String>)], gap: i64) -> Vec<Row> {
    let mut by_word: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (ts, words) in lines {
        for w in words {
            by_word.entry(w).or_default().push(*ts);
        }
    }
    let mut rows = Vec::new();
    for (w, mut ts) in by_word {
        ts.sort_unstable();
        let (mut start, mut last, mut n) = (ts[0], ts[0], 0);
        for t in ts {
            if t > last + gap {
                rows.push((start, last + gap, w.to_string(), n));
                start = t;
                n = 0;
            }
            last = t;
            n += 1;
        }
        rows.push((start, last + gap, w.to_string(), n));
    }
    rows.sort();
    rows
}

#[test]
fn sliding_event_time_file_equals_the_oracle_on_1_and_2_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.txt");
    let lines = event_lines(1, 3000, 1000);
    write_event_file(&path, &lines);
    let uri = format!("file://{}", path.display());
    let expected = oracle_windows(&lines, 10_000, 2_000);
    for workers in ["1", "2"] {
        let o = run(&[
            "wordcount",
            "--source",
            &uri,
            "--time",
            "event",
            "--window",
            "10s",
            "--slide",
            "2s",
            "--out-of-orderness",
            "1s",
            "--lateness",
            "0s",
            "--workers",
            workers,
            "--format",
            "json",
            "--chunk-lines",
            "7",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(json_rows(&o.stdout), expected, "workers {workers}");
        assert!(stderr(&o).contains("3000 records read"), "{}", stderr(&o));
        assert!(stderr(&o).contains("0 late"), "{}", stderr(&o));
    }
}

#[test]
fn two_processes_on_loopback_equal_the_oracle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.txt");
    let lines = event_lines(2, 2000, 500);
    write_event_file(&path, &lines);
    let uri = format!("file://{}", path.display());
    let addresses = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let children: Vec<_> = ["0", "1"]
        .iter()
        .map(|p| {
            riffle()
                .args([
                    "wordcount",
                    "--source",
                    &uri,
                    "--time",
                    "event",
                    "--window",
                    "5s",
                    "--out-of-orderness",
                    "500ms",
                    "--format",
                    "json",
                    "-w",
                    "2",
                    "-n",
                    "2",
                    "-p",
                    p,
                    "--addresses",
                    &addresses,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("riffle starts")
        })
        .collect();
    let mut stdout = Vec::new();
    let mut summaries = Vec::new();
    for child in children {
        let o = child.wait_with_output().expect("process ends");
        assert!(o.status.success(), "{}", stderr(&o));
        stdout.extend_from_slice(&o.stdout);
        summaries.push(stderr(&o));
    }
    let expected = oracle_windows(&lines, 5_000, 5_000);
    assert_eq!(json_rows(&stdout), expected);
    // Process 0 also prints the total of both processes.
    let total = format!("all processes: 2000 records read, {} results", expected.len());
    assert!(summaries[0].contains(&total), "{}", summaries[0]);
    assert!(!summaries[1].contains("all processes"), "{}", summaries[1]);
}

#[test]
fn a_folder_of_files_on_two_workers_equals_the_oracle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all = Vec::new();
    for i in 0..3 {
        let lines = event_lines(10 + i, 700, 300);
        write_event_file(&dir.path().join(format!("part-{i}.txt")), &lines);
        all.extend(lines);
    }
    let uri = format!("file://{}", dir.path().display());
    let o = run(&[
        "wordcount",
        "--source",
        &uri,
        "--time",
        "event",
        "--window",
        "3s",
        "--out-of-orderness",
        "300ms",
        "-w",
        "2",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_rows(&o.stdout), oracle_windows(&all, 3_000, 3_000));
}

#[test]
fn session_and_count_windows_equal_their_oracles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.txt");
    // Sparse enough that sessions end inside the input.
    let lines: Vec<_> = event_lines(3, 1500, 200)
        .into_iter()
        .enumerate()
        .map(|(i, (ts, w))| (ts + (i as i64 / 100) * 60_000, w))
        .collect();
    write_event_file(&path, &lines);
    let uri = format!("file://{}", path.display());
    let o = run(&[
        "wordcount",
        "--source",
        &uri,
        "--time",
        "event",
        "--session-gap",
        "2s",
        "--out-of-orderness",
        "200ms",
        "-w",
        "2",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_rows(&o.stdout), oracle_sessions(&lines, 2_000));

    // Count windows of 3 words per word, every 2: counts are 3 except the first window (2),
    // and their number follows from each word's total.
    let o = run(&[
        "wordcount",
        "--source",
        &uri,
        "--time",
        "event",
        "--count-window",
        "3",
        "--count-slide",
        "2",
        "--out-of-orderness",
        "200ms",
        "-w",
        "2",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json_rows(&o.stdout);
    let totals = oracle_totals(lines.iter().flat_map(|l| &l.1));
    let mut fired: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, _, w, n) in rows {
        fired.entry(w).or_default().push(n);
    }
    for (w, total) in totals {
        let mut counts = fired.remove(&w).unwrap_or_default();
        counts.sort_unstable();
        let mut expect: Vec<u64> = (0..total / 2).map(|i| if i == 0 { 2 } else { 3 }).collect();
        expect.sort_unstable();
        assert_eq!(counts, expect, "word {w} seen {total} times");
    }
    assert!(fired.is_empty());
}

#[test]
fn socket_source_counts_what_the_server_sends() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut rng = Lcg(4);
    let lines: Vec<String> = (0..2000)
        .map(|_| {
            (0..1 + rng.next(6))
                .map(|_| format!("w{}", rng.next(50)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let expected = oracle_totals(
        lines
            .iter()
            .flat_map(|l| l.split(' ').map(str::to_string))
            .collect::<Vec<_>>()
            .iter(),
    );
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut conn, _) = listener.accept().expect("accept");
            for chunk in lines.chunks(100) {
                conn.write_all((chunk.join("\n") + "\n").as_bytes()).expect("send");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // Dropping the connection ends the job's input.
        }
    });
    let uri = format!("socket://{addr}");
    // Whole-input counts.
    let o = run(&["wordcount", "--source", &uri, "--format", "json", "-w", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_totals(&o.stdout), expected);
    // Processing-time windows: how words fall into windows depends on the clock, but every
    // word is counted once, in windows of the requested size.
    let o = run(&["wordcount", "--source", &uri, "--window", "100ms", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    for (start, end, w, n) in json_rows(&o.stdout) {
        assert_eq!(end - start, 100);
        assert_eq!(start % 100, 0);
        *sums.entry(w).or_default() += n;
    }
    assert_eq!(sums, expected);
    server.join().expect("server thread");
}

#[test]
fn stdin_is_a_source() {
    let mut child = riffle()
        .args(["wordcount", "--source", "-", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riffle starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"to be or not to be\nthat is the question\n\n  be  \n")
        .expect("write stdin");
    drop(stdin);
    let o = child.wait_with_output().expect("process ends");
    assert!(o.status.success(), "{}", stderr(&o));
    let expected: BTreeMap<String, u64> = [
        ("to", 2),
        ("be", 3),
        ("or", 1),
        ("not", 1),
        ("that", 1),
        ("is", 1),
        ("the", 1),
        ("question", 1),
    ]
    .into_iter()
    .map(|(w, n)| (w.to_string(), n))
    .collect();
    assert_eq!(json_totals(&o.stdout), expected);
}

#[test]
fn late_records_refire_within_lateness_and_go_to_the_late_output_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("late.txt");
    // One line per chunk, so each line's watermark is the highest earlier timestamp.
    std::fs::write(&input, "0 a\n5 a\n12 b\n3 a\n30 c\n4 a\n").expect("write input");
    let late = dir.path().join("late.jsonl");
    let uri = format!("file://{}", input.display());
    let o = run(&[
        "wordcount",
        "--source",
        &uri,
        "--time",
        "event",
        "--window",
        "10ms",
        "--lateness",
        "5ms",
        "--chunk-lines",
        "1",
        "--late-output",
        late.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // `3 a` arrives at watermark 12, within the lateness of [0, 10): the window fires again.
    // `4 a` arrives at watermark 30, past it: late.
    let row = |s, e, w: &str, n| (s, e, w.to_string(), n);
    assert_eq!(
        json_rows(&o.stdout),
        vec![
            row(0, 10, "a", 2),
            row(0, 10, "a", 3),
            row(10, 20, "b", 1),
            row(30, 40, "c", 1)
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&late).expect("late output"),
        "{\"timestamp\":4,\"word\":\"a\"}\n"
    );
    // The late record went to the late output: it is not one of the 4 results.
    assert!(stderr(&o).contains("4 results, 0 malformed, 1 late"), "{}", stderr(&o));

    // Without lateness both are late; nothing is lost: counted and written out.
    let o = run(&[
        "wordcount",
        "--source",
        &uri,
        "--time",
        "event",
        "--window",
        "10ms",
        "--chunk-lines",
        "1",
        "--late-output",
        late.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_rows(&o.stdout).len(), 3);
    let mut late_lines: Vec<String> = std::fs::read_to_string(&late)
        .expect("late output")
        .lines()
        .map(str::to_string)
        .collect();
    late_lines.sort();
    assert_eq!(
        late_lines,
        ["{\"timestamp\":3,\"word\":\"a\"}", "{\"timestamp\":4,\"word\":\"a\"}"]
    );
    assert!(stderr(&o).contains("2 late"), "{}", stderr(&o));
}

#[test]
fn malformed_lines_are_reported_with_their_position_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("mixed.txt");
    let mut bytes = b"1000,good words\nno timestamp here\n2000,more good\n".to_vec();
    bytes.extend_from_slice(b"3000,bad \xff\xfe utf8\n4000 last\n");
    std::fs::write(&input, &bytes).expect("write input");
    let uri = format!("file://{}", input.display());
    let dead = dir.path().join("dead.txt");
    let o = run(&[
        "wordcount",
        "--source",
        &uri,
        "--time",
        "event",
        "--format",
        "json",
        "--dead-letter",
        dead.to_str().expect("utf-8 path"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("mixed.txt:2"),
        "position of the line without timestamp: {err}"
    );
    assert!(err.contains("mixed.txt:4"), "position of the invalid UTF-8 line: {err}");
    assert!(err.contains("2 malformed"), "{err}");
    let expected: BTreeMap<String, u64> = [("good", 2), ("words", 1), ("more", 1), ("last", 1)]
        .into_iter()
        .map(|(w, n)| (w.to_string(), n))
        .collect();
    assert_eq!(json_totals(&o.stdout), expected);
    let dead_letters = std::fs::read_to_string(&dead).expect("dead letters");
    assert_eq!(dead_letters.lines().count(), 2, "{dead_letters}");
    assert!(dead_letters.contains("no timestamp here"), "{dead_letters}");

    // --strict: the first malformed line fails the job.
    let o = run(&["wordcount", "--source", &uri, "--time", "event", "--strict"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("mixed.txt:2"), "{}", stderr(&o));
}

#[test]
fn empty_input_and_binary_garbage_do_not_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, b"").expect("write input");
    let o = run(&[
        "wordcount",
        "--source",
        &format!("file://{}", empty.display()),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("0 records read"), "{}", stderr(&o));

    let garbage = dir.path().join("garbage.bin");
    let mut rng = Lcg(5);
    let bytes: Vec<u8> = (0..200_000).map(|_| rng.next(256) as u8).collect();
    std::fs::write(&garbage, &bytes).expect("write input");
    for time in ["processing", "event"] {
        let o = run(&[
            "wordcount",
            "--source",
            &format!("file://{}", garbage.display()),
            "--time",
            time,
            "--window",
            "1s",
            "--format",
            "json",
        ]);
        // Not a crash: whatever was counted is written as well-formed JSON, and the job then
        // fails because nearly all of its input was malformed (--max-malformed-ratio).
        assert_eq!(o.status.code(), Some(1), "{time}: {}", stderr(&o));
        assert!(stderr(&o).contains("were malformed"), "{}", stderr(&o));
        json_rows(&o.stdout);
    }
}

#[test]
fn unusable_sources_and_options_fail_with_one_clear_line() {
    // A refused connection: a port that was just free.
    let port = free_port();
    let o = run(&["wordcount", "--source", &format!("socket://127.0.0.1:{port}")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let o = run(&["wordcount", "--source", "file:///no/such/file.txt"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/no/such/file.txt"), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));

    let o = run(&["wordcount", "--source", "-", "--window", "5 parsecs"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("window"), "{}", stderr(&o));

    let o = run(&["wordcount", "--source", "-", "--out-of-orderness", "1s"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "processing time takes no out-of-orderness: {}",
        stderr(&o)
    );
}

#[test]
fn text_format_is_for_people() {
    let mut child = riffle()
        .args(["wordcount", "--source", "-", "--time", "event", "--window", "10ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riffle starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"1 x y\n2 x\n")
        .expect("write stdin");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    assert!(child.wait().expect("process ends").success());
    let mut lines: Vec<_> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["[0, 10) x 2", "[0, 10) y 1"]);
}
