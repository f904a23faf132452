//! Windowed results of whole dataflows against a plain batch oracle.
//!
//! Random keyed records are split over several in-memory sources and run through
//! `from_splits → key_by → window → sum` on 1, 2 and 4 workers. The oracle below knows
//! nothing of timely, panes or staging: it recomputes, per record, the watermark its chunk
//! was read under (highest timestamp of the split's earlier chunks − out-of-orderness),
//! then derives every emission of every window from the documented semantics:
//!
//! * a record counts in window `w` on time when its watermark `W < w.end`;
//! * within the allowed lateness `L` (`w.end ≤ W < w.end + L`) it updates `w` after it fired,
//!   and `w` fires again with the new total, once per distinct arrival watermark;
//! * a record whose every window has `w.end + L ≤ W` is late: it leaves through the late
//!   stream and counts nowhere.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use riffle_core::aggregate::Sum;
use riffle_core::window::{GlobalWindows, SessionWindows, SlidingWindows, TimeWindows, TumblingWindows, Window};
use riffle_core::{EventTime, WatermarkStrategy};
use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock, WindowResult};

type Rec = (u32, u64);
type Splits = Vec<Vec<(EventTime, Rec)>>;
/// (window start, window end, key, sum), sorted.
type Rows = Vec<(i64, i64, u32, u64)>;
/// Where the job's sink puts its results.
type Collected = Arc<Mutex<Vec<(EventTime, WindowResult<u32, u64>)>>>;

/// Runs the keyed windowed sum on `workers` threads; returns results and late records, sorted.
fn run_engine(
    splits: &Splits,
    chunk: usize,
    ooo: i64,
    lateness: i64,
    windows: TimeWindows,
    workers: usize,
) -> (Rows, Vec<(EventTime, Rec)>) {
    let out: Collected = Arc::default();
    let late: Arc<Mutex<Vec<(EventTime, Rec)>>> = Arc::default();
    let (o, l, s) = (Arc::clone(&out), Arc::clone(&late), splits.clone());
    let ctx = Arc::new(JobContext::new(true, Arc::new(SystemClock)));
    execute(ExecutionConfig::threads(workers), ctx, move |env| {
        let stream = env.from_splits(s.clone(), chunk, WatermarkStrategy::bounded_out_of_orderness(ooo));
        let (results, late_records) = stream
            .key_by(|r: &Rec| r.0)
            .window(windows)
            .allowed_lateness(Duration::from_millis(lateness as u64))
            .aggregate_with_late(Sum::new(|r: &Rec| r.1));
        results.collect_into(Arc::clone(&o));
        late_records.collect_into(Arc::clone(&l));
    })
    .expect("job runs");
    let mut rows: Rows = out
        .lock()
        .expect("results")
        .iter()
        .map(|(_, r)| (r.window.start, r.window.end, r.key, r.value))
        .collect();
    rows.sort_unstable();
    let mut late = late.lock().expect("late records").clone();
    late.sort_unstable();
    (rows, late)
}

/// Every record with the watermark its chunk was read under.
fn with_watermarks(splits: &Splits, chunk: usize, ooo: i64) -> Vec<(i64, EventTime, Rec)> {
    let mut out = Vec::new();
    for split in splits {
        let mut max_seen: Option<i64> = None;
        for records in split.chunks(chunk) {
            let wm = max_seen.map_or(i64::MIN, |m| m - ooo);
            for &(ts, r) in records {
                out.push((wm, ts, r));
            }
            max_seen = records.iter().map(|r| r.0).chain(max_seen).max();
        }
    }
    out
}

/// The windows `[start, start + size)` with `start` a multiple of `slide` that hold `ts`;
/// `None` for the global window.
fn windows_of(ts: i64, size_slide: Option<(i64, i64)>) -> Vec<Window> {
    let Some((size, slide)) = size_slide else {
        return vec![Window {
            start: i64::MIN,
            end: i64::MAX,
        }];
    };
    let mut start = ts.div_euclid(slide) * slide;
    let mut out = Vec::new();
    while start + size > ts {
        out.push(Window {
            start,
            end: start + size,
        });
        start -= slide;
    }
    out
}

/// The batch oracle for tumbling, sliding and global windows with lateness.
fn oracle_sliced(
    splits: &Splits,
    chunk: usize,
    ooo: i64,
    lateness: i64,
    size_slide: Option<(i64, i64)>,
) -> (Rows, Vec<(EventTime, Rec)>) {
    use std::collections::BTreeMap;
    // (window, key) → (sum of on-time values, late updates by arrival watermark)
    #[derive(Default)]
    struct Emissions {
        on_time: Option<u64>,
        updates: BTreeMap<i64, u64>,
    }
    let mut per_window: BTreeMap<(i64, i64, u32), Emissions> = BTreeMap::new();
    let mut late = Vec::new();
    for (wm, ts, (key, value)) in with_watermarks(splits, chunk, ooo) {
        let mut counted = false;
        for w in windows_of(ts, size_slide) {
            let e = per_window.entry((w.start, w.end, key)).or_default();
            if wm < w.end {
                *e.on_time.get_or_insert(0) += value;
                counted = true;
            } else if wm < w.end.saturating_add(lateness) {
                *e.updates.entry(wm).or_insert(0) += value;
                counted = true;
            }
        }
        if !counted {
            late.push((ts, (key, value)));
        }
    }
    let mut rows = Vec::new();
    for ((start, end, key), e) in per_window {
        let mut total = e.on_time;
        if let Some(t) = total {
            rows.push((start, end, key, t));
        }
        for (_, v) in e.updates {
            let t = total.get_or_insert(0);
            *t += v;
            rows.push((start, end, key, *t));
        }
    }
    rows.sort_unstable();
    late.sort_unstable();
    (rows, late)
}

/// Session windows of records that are all on time: per key, the connected components of
/// timestamps at most `gap` apart (touching sessions merge, as Flink's).
fn oracle_sessions(splits: &Splits, gap: i64) -> Rows {
    let mut by_key: std::collections::BTreeMap<u32, Vec<(i64, u64)>> = Default::default();
    for &(ts, (k, v)) in splits.iter().flatten() {
        by_key.entry(k).or_default().push((ts, v));
    }
    let mut rows = Vec::new();
    for (k, mut recs) in by_key {
        recs.sort_unstable();
        let (mut start, mut last, mut sum) = (recs[0].0, recs[0].0, 0);
        for (ts, v) in recs {
            if ts > last + gap {
                rows.push((start, last + gap, k, sum));
                start = ts;
                sum = 0;
            }
            last = ts;
            sum += v;
        }
        rows.push((start, last + gap, k, sum));
    }
    rows.sort_unstable();
    rows
}

/// Splits of records whose timestamps drift upwards with arbitrary disorder.
fn arb_splits(max_ts: i64) -> impl Strategy<Value = Splits> {
    let record = (0..max_ts, 0u32..4, 1u64..10).prop_map(|(ts, k, v)| (ts, (k, v)));
    proptest::collection::vec(proptest::collection::vec(record, 0..40), 1..4).prop_map(|mut splits| {
        // Sort most of each split so the watermark makes progress, keeping some disorder.
        for s in &mut splits {
            let n = s.len();
            s[..n * 2 / 3].sort_unstable_by_key(|r| r.0);
        }
        splits
    })
}

/// Splits whose disorder stays strictly below `d`: every record is later than any earlier
/// record of its split minus `d`.
fn arb_bounded_disorder(d: i64) -> impl Strategy<Value = Splits> {
    let step = (-(d - 1)..30i64, 0u32..3, 1u64..10);
    proptest::collection::vec(proptest::collection::vec(step, 0..40), 1..4).prop_map(move |splits| {
        splits
            .into_iter()
            .map(|steps| {
                let mut max = 0i64;
                steps
                    .into_iter()
                    .map(|(delta, k, v)| {
                        let ts = (max + delta).max(max - (d - 1)).max(0);
                        max = max.max(ts);
                        (ts, (k, v))
                    })
                    .collect()
            })
            .collect()
    })
}

fn sliced_windows(size: i64, slide: i64) -> TimeWindows {
    if size == slide {
        TumblingWindows::of_millis(size).expect("size > 0").into()
    } else {
        SlidingWindows::of_millis(size, slide)
            .expect("0 < slide <= size")
            .into()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Tumbling and sliding windows with random disorder and lateness equal the oracle,
    /// results and late records, on 1, 2 and 4 workers.
    #[test]
    fn tumbling_and_sliding_equal_the_oracle(
        splits in arb_splits(400),
        chunk in 1usize..6,
        ooo in 0i64..60,
        lateness in prop_oneof![Just(0i64), 1i64..80],
        slide in prop_oneof![Just(10i64), Just(20), Just(25)],
        factor in 1i64..4,
    ) {
        let size = slide * factor;
        let expected = oracle_sliced(&splits, chunk, ooo, lateness, Some((size, slide)));
        for workers in [1, 2, 4] {
            let got = run_engine(&splits, chunk, ooo, lateness, sliced_windows(size, slide), workers);
            prop_assert_eq!(&got, &expected, "workers {}", workers);
        }
    }

    /// The global window (a count over the whole input) sees every record once.
    #[test]
    fn global_window_sums_everything(splits in arb_splits(400), chunk in 1usize..6, ooo in 0i64..60) {
        let expected = oracle_sliced(&splits, chunk, ooo, 0, None);
        for workers in [1, 3] {
            let got = run_engine(&splits, chunk, ooo, 0, GlobalWindows.into(), workers);
            prop_assert_eq!(&got, &expected, "workers {}", workers);
        }
    }

    /// With disorder inside the out-of-orderness nothing is late and each window fires once,
    /// whatever the lateness.
    #[test]
    fn disorder_within_bound_is_never_late(
        (ooo, splits) in (1i64..40).prop_flat_map(|d| (Just(d), arb_bounded_disorder(d))),
        chunk in 1usize..6,
        lateness in 0i64..50,
    ) {
        let (rows, late) = oracle_sliced(&splits, chunk, ooo, lateness, Some((20, 10)));
        prop_assert!(late.is_empty());
        let got = run_engine(&splits, chunk, ooo, lateness, sliced_windows(20, 10), 2);
        prop_assert_eq!(&got.0, &rows);
        prop_assert!(got.1.is_empty());
        // Each (window, key) once: no re-firing without late data.
        let mut keys: Vec<_> = rows.iter().map(|r| (r.0, r.1, r.2)).collect();
        keys.dedup();
        prop_assert_eq!(keys.len(), rows.len());
    }

    /// Session windows of on-time records are the per-key components of their timestamps.
    #[test]
    fn sessions_equal_components(
        (ooo, splits) in (1i64..40).prop_flat_map(|d| (Just(d), arb_bounded_disorder(d))),
        chunk in 1usize..6,
        gap in 1i64..30,
    ) {
        let expected = oracle_sessions(&splits, gap);
        for workers in [1, 2, 4] {
            let windows: TimeWindows = SessionWindows::with_gap_millis(gap).expect("gap > 0").into();
            let (rows, late) = run_engine(&splits, chunk, ooo, 0, windows, workers);
            prop_assert_eq!(&rows, &expected, "workers {}", workers);
            prop_assert!(late.is_empty());
        }
    }
}

/// Count windows: per key, records in order of event time (all distinct here) cut into runs
/// of `size`, firing every `slide` records with the last `size`.
fn oracle_count(splits: &Splits, size: usize, slide: usize) -> Rows {
    let mut by_key: std::collections::BTreeMap<u32, Vec<(i64, u64)>> = Default::default();
    for &(ts, (k, v)) in splits.iter().flatten() {
        by_key.entry(k).or_default().push((ts, v));
    }
    let mut rows = Vec::new();
    for (k, mut recs) in by_key {
        recs.sort_unstable();
        let mut i = slide;
        while i <= recs.len() {
            let window = &recs[i.saturating_sub(size)..i];
            let lo = window.iter().map(|r| r.0).min().unwrap_or(0);
            let hi = window.iter().map(|r| r.0).max().unwrap_or(0);
            rows.push((lo, hi + 1, k, window.iter().map(|r| r.1).sum()));
            i += slide;
        }
    }
    rows.sort_unstable();
    rows
}

fn run_count(splits: &Splits, chunk: usize, ooo: i64, size: u64, slide: u64, workers: usize) -> Rows {
    let out: Collected = Arc::default();
    let (o, s) = (Arc::clone(&out), splits.clone());
    let ctx = Arc::new(JobContext::new(true, Arc::new(SystemClock)));
    execute(ExecutionConfig::threads(workers), ctx, move |env| {
        env.from_splits(s.clone(), chunk, WatermarkStrategy::bounded_out_of_orderness(ooo))
            .key_by(|r: &Rec| r.0)
            .count_window_sliding(size, slide)
            .expect("valid count window")
            .sum(|r: &Rec| r.1)
            .collect_into(Arc::clone(&o));
    })
    .expect("job runs");
    let mut rows: Rows = out
        .lock()
        .expect("results")
        .iter()
        .map(|(_, r)| (r.window.start, r.window.end, r.key, r.value))
        .collect();
    rows.sort_unstable();
    rows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Count windows of on-time records with distinct timestamps equal the oracle on any
    /// number of workers (records are taken in event-time order, not arrival order).
    #[test]
    fn count_windows_equal_the_oracle(
        (ooo, splits) in (1i64..40).prop_flat_map(|d| (Just(d), arb_bounded_disorder(d))),
        chunk in 1usize..6,
        size in 1u64..6,
        slide_pick in 0u64..6,
    ) {
        // Distinct timestamps: spread them out keeping their order and disorder bound.
        let splits: Splits = splits
            .into_iter()
            .enumerate()
            .map(|(s, recs)| {
                recs.into_iter()
                    .enumerate()
                    .map(|(i, (ts, r))| (ts * 1000 + (s * 100 + i) as i64 % 1000, r))
                    .collect()
            })
            .collect();
        let slide = 1 + slide_pick % size;
        let expected = oracle_count(&splits, size as usize, slide as usize);
        for workers in [1, 2, 4] {
            let got = run_count(&splits, chunk, ooo * 1000, size, slide, workers);
            prop_assert_eq!(&got, &expected, "workers {}", workers);
        }
    }
}

/// Deduplication: per key, records in sequence order (`max(ts, arrival watermark)`, then ts)
/// are kept when the key's previous record is at least `within` ms of sequence time older.
fn oracle_dedup(splits: &Splits, chunk: usize, ooo: i64, within: i64) -> Vec<(EventTime, Rec)> {
    let mut recs: Vec<(i64, i64, Rec)> = with_watermarks(splits, chunk, ooo)
        .into_iter()
        .map(|(wm, ts, r)| (ts.max(wm), ts, r))
        .collect();
    recs.sort_by_key(|r| (r.0, r.1));
    let mut last: std::collections::HashMap<u32, i64> = Default::default();
    let mut kept = Vec::new();
    for (seq, ts, r) in recs {
        // Sequence times never go back per key group; the operator clamps them to be monotone.
        if last.get(&r.0).is_none_or(|&t| t <= seq - within) {
            kept.push((ts, r));
        }
        last.insert(r.0, seq);
    }
    kept.sort_unstable();
    kept
}

fn run_dedup(splits: &Splits, chunk: usize, ooo: i64, within: i64, workers: usize) -> Vec<(EventTime, Rec)> {
    let out: Arc<Mutex<Vec<(EventTime, Rec)>>> = Arc::default();
    let (o, s) = (Arc::clone(&out), splits.clone());
    let ctx = Arc::new(JobContext::new(true, Arc::new(SystemClock)));
    execute(ExecutionConfig::threads(workers), ctx, move |env| {
        env.from_splits(s.clone(), chunk, WatermarkStrategy::bounded_out_of_orderness(ooo))
            .key_by(|r: &Rec| r.0)
            .dedup(Duration::from_millis(within as u64), 1_000_000, 1e-9)
            .expect("valid dedup")
            .collect_into(Arc::clone(&o));
    })
    .expect("job runs");
    let mut kept = out.lock().expect("results").clone();
    kept.sort_unstable();
    kept
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Deduplication within an interval equals the exact rule on 1, 2 and 4 workers, with
    /// arbitrary disorder (late records are sequenced at their arrival watermark).
    #[test]
    fn dedup_equals_the_exact_rule(splits in arb_splits(400), chunk in 1usize..6, ooo in 0i64..60, within in 1i64..150) {
        // Distinct timestamps per key so that sequence order has no ties.
        let splits: Splits = splits
            .into_iter()
            .enumerate()
            .map(|(s, recs)| recs.into_iter().enumerate().map(|(i, (ts, r))| (ts * 1000 + (s * 100 + i) as i64, r)).collect())
            .collect();
        let expected = oracle_dedup(&splits, chunk, ooo * 1000, within * 1000);
        for workers in [1, 2, 4] {
            let got = run_dedup(&splits, chunk, ooo * 1000, within * 1000, workers);
            prop_assert_eq!(&got, &expected, "workers {}", workers);
        }
    }
}
