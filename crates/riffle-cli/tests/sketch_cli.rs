//! `riffle distinct` and `riffle topk` end to end on generated data, against exact answers
//! computed in the test from the same file.

use std::collections::{BTreeMap, HashMap, HashSet};

mod common;
use common::run as riffle;

use common::ok_stdout;

/// Generates `<ts> words...` lines with disorder below 1 s; returns the path and the lines.
fn generated(dir: &std::path::Path) -> (String, Vec<(i64, Vec<String>)>) {
    let text = ok_stdout(riffle(&[
        "generate",
        "words",
        "--lines",
        "30000",
        "--vocabulary",
        "2500",
        "--step",
        "3",
        "--disorder",
        "500",
        "--words-per-line",
        "4",
    ]));
    let path = dir.join("words.txt");
    std::fs::write(&path, &text).expect("write input");
    let lines = text
        .lines()
        .map(|l| {
            let mut it = l.split_whitespace();
            let ts = it.next().expect("timestamp").parse().expect("numeric timestamp");
            (ts, it.map(str::to_string).collect())
        })
        .collect();
    (format!("file://{}", path.display()), lines)
}

/// Words per 10 s tumbling window.
fn by_window(lines: &[(i64, Vec<String>)]) -> BTreeMap<i64, Vec<&str>> {
    let mut windows: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for (ts, words) in lines {
        windows
            .entry(ts.div_euclid(10_000) * 10_000)
            .or_default()
            .extend(words.iter().map(String::as_str));
    }
    windows
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// `window_start → distinct` from `riffle distinct --format json`.
fn distinct_rows(text: &str) -> BTreeMap<i64, u64> {
    json_lines(text)
        .iter()
        .map(|v| {
            (
                v["window_start"].as_i64().expect("start"),
                v["distinct"].as_u64().expect("distinct"),
            )
        })
        .collect()
}

fn distinct(uri: &str, method: &str, workers: &str) -> String {
    ok_stdout(riffle(&[
        "distinct",
        "--source",
        uri,
        "--time",
        "event",
        "--out-of-orderness",
        "1s",
        "--window",
        "10s",
        "--method",
        method,
        "--format",
        "json",
        "-w",
        workers,
    ]))
}

#[test]
fn distinct_exact_hll_and_bloom_against_the_truth_on_1_and_2_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (uri, lines) = generated(dir.path());
    let truth: BTreeMap<i64, u64> = by_window(&lines)
        .into_iter()
        .map(|(w, words)| (w, words.into_iter().collect::<HashSet<_>>().len() as u64))
        .collect();
    for workers in ["1", "2"] {
        assert_eq!(
            distinct_rows(&distinct(&uri, "exact", workers)),
            truth,
            "exact, {workers} workers"
        );
        let hll = distinct_rows(&distinct(&uri, "hll", workers));
        let bloom = distinct_rows(&distinct(&uri, "bloom", workers));
        assert_eq!(hll.keys().collect::<Vec<_>>(), truth.keys().collect::<Vec<_>>());
        for (w, &n) in &truth {
            // p = 14: standard error 1.04/128 = 0.8 %; 3 standard errors, at least 1.
            let tolerance = (n as f64 * 3.0 * 1.04 / 128.0).max(1.0);
            assert!(
                (hll[w] as f64 - n as f64).abs() <= tolerance,
                "hll window {w}: {} vs {n}",
                hll[w]
            );
            assert!(
                (bloom[w] as f64 - n as f64).abs() <= n as f64 * 0.03 + 1.0,
                "bloom window {w}: {} vs {n}",
                bloom[w]
            );
        }
    }
    // Sketches merge the same registers whatever the number of workers: identical answers.
    let sorted = |s: String| {
        let mut v: Vec<String> = s.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(distinct(&uri, "hll", "1")), sorted(distinct(&uri, "hll", "2")));

    // Without --window: one line for the whole input.
    let all = json_lines(&ok_stdout(riffle(&[
        "distinct", "--source", &uri, "--time", "event", "--method", "exact", "--format", "json",
    ])));
    let every: HashSet<&String> = lines.iter().flat_map(|l| &l.1).collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["distinct"].as_u64(), Some(every.len() as u64));
    assert!(all[0].get("window_start").is_none());
}

#[test]
fn topk_equals_the_exact_top_k_on_1_and_2_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (uri, lines) = generated(dir.path());
    let expected: BTreeMap<i64, Vec<(String, u64)>> = by_window(&lines)
        .into_iter()
        .map(|(w, words)| {
            let mut counts: HashMap<&str, u64> = HashMap::new();
            for word in words {
                *counts.entry(word).or_default() += 1;
            }
            let mut top: Vec<(String, u64)> = counts.into_iter().map(|(w, n)| (w.to_string(), n)).collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(5);
            (w, top)
        })
        .collect();
    for workers in ["1", "2"] {
        let out = ok_stdout(riffle(&[
            "topk",
            "--source",
            &uri,
            "--time",
            "event",
            "--out-of-orderness",
            "1s",
            "--window",
            "10s",
            "--k",
            "5",
            "--format",
            "json",
            "-w",
            workers,
        ]));
        let got: BTreeMap<i64, Vec<(String, u64)>> = json_lines(&out)
            .iter()
            .map(|v| {
                let top = v["top"]
                    .as_array()
                    .expect("top")
                    .iter()
                    .map(|e| {
                        (
                            e["word"].as_str().expect("word").to_string(),
                            e["count"].as_u64().expect("count"),
                        )
                    })
                    .collect();
                (v["window_start"].as_i64().expect("start"), top)
            })
            .collect();
        assert_eq!(got, expected, "{workers} workers");
    }
}

#[test]
fn bad_sketch_options_are_configuration_errors() {
    for args in [
        ["distinct", "--source", "-", "--method", "hll", "--precision", "30"],
        ["distinct", "--source", "-", "--method", "bloom", "--fp-rate", "1.5"],
        ["topk", "--source", "-", "--k", "0", "--map-size", "64"],
    ] {
        let o = riffle(&args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stderr).trim_end().lines().count(), 1);
    }
}
