//! `riffle join` end to end: JSON lines on both sides, every join kind, interval and window
//! joins, 1 and 2 workers, against a nested-loop join written plainly here.

use std::collections::BTreeMap;

mod common;
use common::run as riffle;

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

/// (ts, key, id): timestamps drift upwards with disorder below 300 ms; ids are unique.
fn side(seed: u64, n: usize, id_base: u64) -> Vec<(i64, u64, u64)> {
    let mut rng = Lcg(seed);
    let mut max = 1_000_000i64;
    (0..n)
        .map(|i| {
            let ts = max - rng.next(300) as i64;
            max += rng.next(60) as i64;
            // Skewed keys: a few hot ones.
            let range = 1 + rng.next(12);
            let key = rng.next(range);
            (ts, key, id_base + i as u64)
        })
        .collect()
}

fn write_side(path: &std::path::Path, recs: &[(i64, u64, u64)], rfc3339_every: usize) {
    let mut text = String::new();
    for (i, (ts, key, id)) in recs.iter().enumerate() {
        if i % rfc3339_every == 0 {
            // The same instant as an RFC 3339 string.
            let secs = ts.div_euclid(1000);
            let ms = ts.rem_euclid(1000);
            let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
            text.push_str(&format!(
                "{{\"k\": {key}, \"t\": \"1970-01-01T{h:02}:{m:02}:{s:02}.{ms:03}Z\", \"id\": {id}}}\n"
            ));
        } else {
            text.push_str(&format!("{{\"id\": {id}, \"k\": {key}, \"t\": {ts}}}\n"));
        }
    }
    std::fs::write(path, text).expect("write input");
}

/// (window, key, left id, right id), sorted.
type Row = (Option<(i64, i64)>, u64, Option<u64>, Option<u64>);

fn parse_rows(stdout: &[u8]) -> Vec<Row> {
    let mut rows: Vec<Row> = String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            let window = v
                .get("window_start")
                .map(|s| (s.as_i64().expect("start"), v["window_end"].as_i64().expect("end")));
            (
                window,
                v["key"].as_u64().expect("key"),
                v["left"]["id"].as_u64(),
                v["right"]["id"].as_u64(),
            )
        })
        .collect();
    rows.sort_unstable();
    rows
}

fn nested_loops(
    left: &[(i64, u64, u64)],
    right: &[(i64, u64, u64)],
    kind: &str,
    matches: impl Fn(i64, i64) -> bool,
) -> Vec<Row> {
    let mut out = Vec::new();
    for l in left {
        let mut m = false;
        for r in right {
            if l.1 == r.1 && matches(l.0, r.0) {
                out.push((None, l.1, Some(l.2), Some(r.2)));
                m = true;
            }
        }
        if !m && (kind == "left" || kind == "full") {
            out.push((None, l.1, Some(l.2), None));
        }
    }
    if kind == "right" || kind == "full" {
        for r in right {
            if !left.iter().any(|l| l.1 == r.1 && matches(l.0, r.0)) {
                out.push((None, r.1, None, Some(r.2)));
            }
        }
    }
    out.sort_unstable();
    out
}

fn windowed(left: &[(i64, u64, u64)], right: &[(i64, u64, u64)], kind: &str, size: i64, slide: i64) -> Vec<Row> {
    let windows_of = |ts: i64| {
        let mut s = ts.div_euclid(slide) * slide;
        let mut v = vec![];
        while s + size > ts {
            v.push((s, s + size));
            s -= slide;
        }
        v
    };
    type Groups = BTreeMap<((i64, i64), u64), (Vec<u64>, Vec<u64>)>;
    let mut groups: Groups = BTreeMap::new();
    for l in left {
        for w in windows_of(l.0) {
            groups.entry((w, l.1)).or_default().0.push(l.2);
        }
    }
    for r in right {
        for w in windows_of(r.0) {
            groups.entry((w, r.1)).or_default().1.push(r.2);
        }
    }
    let mut out = vec![];
    for ((w, k), (ls, rs)) in groups {
        if rs.is_empty() {
            if kind == "left" || kind == "full" {
                out.extend(ls.iter().map(|&l| (Some(w), k, Some(l), None)));
            }
        } else if ls.is_empty() {
            if kind == "right" || kind == "full" {
                out.extend(rs.iter().map(|&r| (Some(w), k, None, Some(r))));
            }
        } else {
            for &l in &ls {
                for &r in &rs {
                    out.push((Some(w), k, Some(l), Some(r)));
                }
            }
        }
    }
    out.sort_unstable();
    out
}

#[test]
fn interval_and_window_joins_of_every_kind_equal_nested_loops_on_1_and_2_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (left, right) = (side(1, 800, 0), side(2, 700, 100_000));
    let (lp, rp) = (dir.path().join("left.jsonl"), dir.path().join("right.jsonl"));
    write_side(&lp, &left, 7);
    write_side(&rp, &right, 5);
    let (lu, ru) = (format!("file://{}", lp.display()), format!("file://{}", rp.display()));
    let base = |extra: &[&str], kind: &str, workers: &str| {
        let mut args = vec![
            "join",
            "--left",
            &lu,
            "--right",
            &ru,
            "--key-field",
            "k",
            "--time-field",
            "t",
            "--out-of-orderness",
            "300ms",
            "--kind",
            kind,
            "-w",
            workers,
            "--chunk-lines",
            "16",
        ];
        args.extend_from_slice(extra);
        let o = riffle(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("0 late"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        parse_rows(&o.stdout)
    };
    for kind in ["inner", "left", "right", "full"] {
        let interval = nested_loops(&left, &right, kind, |l, r| l - 50 <= r && r <= l + 120);
        let tumbling = windowed(&left, &right, kind, 1_000, 1_000);
        let sliding = windowed(&left, &right, kind, 2_000, 500);
        for workers in ["1", "2"] {
            assert_eq!(
                base(&["--between", "-50ms,120ms"], kind, workers),
                interval,
                "interval {kind} -w {workers}"
            );
            assert_eq!(
                base(&["--window", "1s"], kind, workers),
                tumbling,
                "tumbling {kind} -w {workers}"
            );
            assert_eq!(
                base(&["--window", "2s", "--slide", "500ms"], kind, workers),
                sliding,
                "sliding {kind} -w {workers}"
            );
        }
    }
}

#[test]
fn bad_json_is_reported_with_its_position_and_late_records_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (lp, rp) = (dir.path().join("left.jsonl"), dir.path().join("right.jsonl"));
    std::fs::write(
        &lp,
        concat!(
            "{\"k\": 1, \"t\": 100, \"id\": 1}\n",
            "{\"k\": 1, \"t\": 100\n",                 // line 2: malformed JSON
            "{\"t\": 100, \"id\": 3}\n",               // line 3: no key
            "{\"k\": 1, \"id\": 4}\n",                 // line 4: no time
            "{\"k\": [1], \"t\": 100, \"id\": 5}\n",   // line 5: a key of another type
            "{\"k\": \"1\", \"t\": 100, \"id\": 6}\n", // a string key: does not join the number 1
            "{\"k\": 1, \"t\": 5000, \"id\": 7}\n",
            "{\"k\": 1, \"t\": 90, \"id\": 8}\n", // behind the watermark (5000): late
        ),
    )
    .expect("write left");
    std::fs::write(
        &rp,
        "{\"k\": 1, \"t\": 110, \"id\": 10}\n{\"k\": 1, \"t\": 5010, \"id\": 11}\n",
    )
    .expect("write right");
    let late = dir.path().join("late.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let o = riffle(&[
        "join",
        "--left",
        &format!("file://{}", lp.display()),
        "--right",
        &format!("file://{}", rp.display()),
        "--key-field",
        "k",
        "--time-field",
        "t",
        "--between",
        "0ms,50ms",
        "--chunk-lines",
        "1",
        "--late-output",
        late.to_str().expect("path"),
        "--dead-letter",
        dead.to_str().expect("path"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for (line, what) in [
        (2, "invalid JSON"),
        (3, "key field 'k' is missing"),
        (4, "time field 't' is missing"),
        (5, "got an array"),
    ] {
        assert!(
            err.contains(&format!("left.jsonl:{line}: ")) && err.contains(what),
            "line {line} ({what}): {err}"
        );
    }
    assert!(err.contains("4 malformed") && err.contains("1 late"), "{err}");
    assert_eq!(
        parse_rows(&o.stdout),
        vec![(None, 1, Some(1), Some(10)), (None, 1, Some(7), Some(11))]
    );
    let late = std::fs::read_to_string(&late).expect("late output");
    assert!(
        late.contains("\"side\":\"left\"") && late.contains("\"id\": 8"),
        "{late}"
    );
    assert_eq!(std::fs::read_to_string(&dead).expect("dead letters").lines().count(), 4);

    // --strict: the first malformed line fails the job, naming it.
    let o = riffle(&[
        "join",
        "--left",
        &format!("file://{}", lp.display()),
        "--right",
        &format!("file://{}", rp.display()),
        "--key-field",
        "k",
        "--time-field",
        "t",
        "--window",
        "1s",
        "--strict",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("left.jsonl:2"));

    // No window, no interval: a configuration error.
    let o = riffle(&[
        "join",
        "--left",
        "-",
        "--right",
        "-",
        "--key-field",
        "k",
        "--time-field",
        "t",
    ]);
    assert_eq!(o.status.code(), Some(2));
}
