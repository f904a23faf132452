//! Joins of whole dataflows against nested-loop joins written plainly here.
//!
//! Two sources of random keyed records with arbitrary disorder, each in several splits, are
//! joined on 1, 2 and 4 workers. The oracle recomputes each record's arrival watermark (the
//! highest timestamp of its split's earlier chunks − out-of-orderness), decides lateness as
//! documented (interval and temporal joins: behind the watermark; window joins: all its
//! windows ended at or before the watermark, and a record joins only windows that end after
//! it) and joins the on-time records with nested loops.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use riffle_core::join::{Change, IntervalBounds, JoinKind};
use riffle_core::window::{SessionWindows, SlidingWindows, TimeWindows, TumblingWindows, Window};
use riffle_core::{EventTime, WatermarkStrategy};
use riffle_runtime::{execute, ExecutionConfig, JobContext, JoinResult, SystemClock};

type Rec = (u32, u64);
type Splits = Vec<Vec<(EventTime, Rec)>>;
/// (key, left value, right value, window).
type Row = (u32, Option<u64>, Option<u64>, Option<(i64, i64)>);
type Late = Vec<(EventTime, Rec)>;
type Collected = Arc<Mutex<Vec<(EventTime, JoinResult<u32, Rec, Rec>)>>>;
type Groups = BTreeMap<(i64, i64, u32), (Vec<Rec>, Vec<Rec>)>;

const KINDS: [JoinKind; 4] = [JoinKind::Inner, JoinKind::Left, JoinKind::Right, JoinKind::Full];

fn with_watermarks(splits: &Splits, chunk: usize, ooo: i64) -> Vec<(i64, EventTime, Rec)> {
    let mut out = Vec::new();
    for split in splits {
        let mut max_seen: Option<i64> = None;
        for records in split.chunks(chunk) {
            let wm = max_seen.map_or(i64::MIN, |m| m - ooo);
            out.extend(records.iter().map(|&(ts, r)| (wm, ts, r)));
            max_seen = records.iter().map(|r| r.0).chain(max_seen).max();
        }
    }
    out
}

/// Random splits; values are unique so rows identify their records.
fn arb_splits(tag: u64) -> impl Strategy<Value = Splits> {
    let record = (0i64..300, 0u32..4);
    proptest::collection::vec(proptest::collection::vec(record, 0..25), 1..3).prop_map(move |splits| {
        let mut n = tag;
        splits
            .into_iter()
            .map(|mut s| {
                let len = s.len();
                s[..len * 2 / 3].sort_unstable();
                s.into_iter()
                    .map(|(ts, k)| {
                        n += 2;
                        (ts, (k, n))
                    })
                    .collect()
            })
            .collect()
    })
}

enum Job {
    Interval(IntervalBounds, JoinKind),
    Window(TimeWindows, JoinKind),
    Temporal(bool),
}

fn to_change(rec: Rec) -> Change<Rec> {
    if rec.1.is_multiple_of(3) {
        Change::Delete
    } else {
        Change::Upsert(rec)
    }
}

fn run(job: &Job, left: &Splits, right: &Splits, chunk: usize, ooo: i64, workers: usize) -> (Vec<Row>, Late, Late) {
    let rows: Collected = Arc::default();
    let late_l: Arc<Mutex<Late>> = Arc::default();
    let late_r: Arc<Mutex<Late>> = Arc::default();
    let (o, ll, lr) = (Arc::clone(&rows), Arc::clone(&late_l), Arc::clone(&late_r));
    let (left, right) = (left.clone(), right.clone());
    let job = match job {
        Job::Interval(b, k) => Job::Interval(*b, *k),
        Job::Window(w, k) => Job::Window(*w, *k),
        Job::Temporal(outer) => Job::Temporal(*outer),
    };
    let ctx = Arc::new(JobContext::new(true, Arc::new(SystemClock)));
    execute(ExecutionConfig::threads(workers), ctx, move |env| {
        let s = WatermarkStrategy::bounded_out_of_orderness(ooo);
        let l = env.from_splits(left.clone(), chunk, s).key_by(|r: &Rec| r.0);
        let r = env.from_splits(right.clone(), chunk, s);
        match &job {
            Job::Interval(b, k) => {
                let j = l.interval_join(r.key_by(|r: &Rec| r.0), *b, *k);
                j.rows.collect_into(Arc::clone(&o));
                j.late_left.collect_into(Arc::clone(&ll));
                j.late_right.collect_into(Arc::clone(&lr));
            }
            Job::Window(w, k) => {
                let j = l.window_join(r.key_by(|r: &Rec| r.0), *w, *k);
                j.rows.collect_into(Arc::clone(&o));
                j.late_left.collect_into(Arc::clone(&ll));
                j.late_right.collect_into(Arc::clone(&lr));
            }
            Job::Temporal(outer) => {
                // The right side as a changelog: a value divisible by 3 deletes the key's row.
                let changelog = r.map(|rec: Rec| (rec.0, to_change(rec)));
                let j = l.temporal_join(changelog, *outer);
                j.rows.collect_into(Arc::clone(&o));
                j.late_left.collect_into(Arc::clone(&ll));
                j.late_right
                    .map(|(k, c): (u32, Change<Rec>)| match c {
                        Change::Upsert(rec) => rec,
                        Change::Delete => (k, u64::MAX),
                    })
                    .collect_into(Arc::clone(&lr));
            }
        }
    })
    .expect("job runs");
    let mut got: Vec<Row> = rows
        .lock()
        .expect("rows")
        .iter()
        .map(|(_, r)| {
            (
                r.key,
                r.left.map(|x| x.1),
                r.right.map(|x| x.1),
                r.window.map(|w| (w.start, w.end)),
            )
        })
        .collect();
    got.sort_unstable();
    let mut late_l = late_l.lock().expect("late").clone();
    late_l.sort_unstable();
    let mut late_r = late_r.lock().expect("late").clone();
    late_r.sort_unstable();
    (got, late_l, late_r)
}

/// Splits each side's records into on-time and late (sorted late lists).
fn split_late(
    recs: Vec<(i64, EventTime, Rec)>,
    on_time: impl Fn(EventTime, i64) -> bool,
) -> (Vec<(i64, EventTime, Rec)>, Late) {
    let (ok, late): (Vec<_>, Vec<_>) = recs.into_iter().partition(|&(wm, ts, _)| on_time(ts, wm));
    let mut late: Late = late.into_iter().map(|(_, ts, r)| (ts, r)).collect();
    late.sort_unstable();
    (ok, late)
}

fn outer_rows(kind: JoinKind, lefts: &[Rec], rights: &[Rec], window: Option<(i64, i64)>, out: &mut Vec<Row>, key: u32) {
    if rights.is_empty() {
        if kind.keeps_left() {
            out.extend(lefts.iter().map(|l| (key, Some(l.1), None, window)));
        }
    } else if lefts.is_empty() {
        if kind.keeps_right() {
            out.extend(rights.iter().map(|r| (key, None, Some(r.1), window)));
        }
    } else {
        for l in lefts {
            for r in rights {
                out.push((key, Some(l.1), Some(r.1), window));
            }
        }
    }
}

fn oracle_interval(
    left: &Splits,
    right: &Splits,
    chunk: usize,
    ooo: i64,
    b: IntervalBounds,
    kind: JoinKind,
) -> (Vec<Row>, Late, Late) {
    let (l, late_l) = split_late(with_watermarks(left, chunk, ooo), |ts, wm| ts >= wm);
    let (r, late_r) = split_late(with_watermarks(right, chunk, ooo), |ts, wm| ts >= wm);
    let mut out = Vec::new();
    for &(_, lt, lr) in &l {
        let mut matched = false;
        for &(_, rt, rr) in &r {
            if lr.0 == rr.0 && b.matches(lt, rt) {
                out.push((lr.0, Some(lr.1), Some(rr.1), None));
                matched = true;
            }
        }
        if !matched && kind.keeps_left() {
            out.push((lr.0, Some(lr.1), None, None));
        }
    }
    if kind.keeps_right() {
        for &(_, rt, rr) in &r {
            if !l.iter().any(|&(_, lt, lr)| lr.0 == rr.0 && b.matches(lt, rt)) {
                out.push((rr.0, None, Some(rr.1), None));
            }
        }
    }
    out.sort_unstable();
    (out, late_l, late_r)
}

fn windows_of(ts: i64, size: i64, slide: i64) -> Vec<Window> {
    let mut start = ts.div_euclid(slide) * slide;
    let mut out = vec![];
    while start + size > ts {
        out.push(Window {
            start,
            end: start + size,
        });
        start -= slide;
    }
    out
}

fn oracle_sliced(
    left: &Splits,
    right: &Splits,
    chunk: usize,
    ooo: i64,
    size: i64,
    slide: i64,
    kind: JoinKind,
) -> (Vec<Row>, Late, Late) {
    // On time: some window of the record ends after its watermark; it joins those windows.
    let on_time = |ts: EventTime, wm: i64| windows_of(ts, size, slide).iter().any(|w| w.end > wm);
    let (l, late_l) = split_late(with_watermarks(left, chunk, ooo), on_time);
    let (r, late_r) = split_late(with_watermarks(right, chunk, ooo), on_time);
    let mut groups: Groups = BTreeMap::new();
    for &(wm, ts, rec) in &l {
        for w in windows_of(ts, size, slide).into_iter().filter(|w| w.end > wm) {
            groups.entry((w.start, w.end, rec.0)).or_default().0.push(rec);
        }
    }
    for &(wm, ts, rec) in &r {
        for w in windows_of(ts, size, slide).into_iter().filter(|w| w.end > wm) {
            groups.entry((w.start, w.end, rec.0)).or_default().1.push(rec);
        }
    }
    let mut out = Vec::new();
    for ((s, e, k), (ls, rs)) in groups {
        outer_rows(kind, &ls, &rs, Some((s, e)), &mut out, k);
    }
    out.sort_unstable();
    (out, late_l, late_r)
}

fn oracle_sessions(
    left: &Splits,
    right: &Splits,
    chunk: usize,
    ooo: i64,
    gap: i64,
    kind: JoinKind,
) -> (Vec<Row>, Late, Late) {
    let (l, late_l) = split_late(with_watermarks(left, chunk, ooo), |ts, wm| ts > wm);
    let (r, late_r) = split_late(with_watermarks(right, chunk, ooo), |ts, wm| ts > wm);
    let mut by_key: BTreeMap<u32, Vec<(i64, bool, Rec)>> = BTreeMap::new();
    for &(_, ts, rec) in &l {
        by_key.entry(rec.0).or_default().push((ts, true, rec));
    }
    for &(_, ts, rec) in &r {
        by_key.entry(rec.0).or_default().push((ts, false, rec));
    }
    let mut out = Vec::new();
    for (k, mut recs) in by_key {
        recs.sort_unstable();
        let mut i = 0;
        while i < recs.len() {
            let (mut j, mut last) = (i + 1, recs[i].0);
            while j < recs.len() && recs[j].0 <= last + gap {
                last = recs[j].0;
                j += 1;
            }
            let ls: Vec<Rec> = recs[i..j].iter().filter(|x| x.1).map(|x| x.2).collect();
            let rs: Vec<Rec> = recs[i..j].iter().filter(|x| !x.1).map(|x| x.2).collect();
            outer_rows(kind, &ls, &rs, Some((recs[i].0, last + gap)), &mut out, k);
            i = j;
        }
    }
    out.sort_unstable();
    (out, late_l, late_r)
}

fn oracle_temporal(left: &Splits, right: &Splits, chunk: usize, ooo: i64, outer: bool) -> (Vec<Row>, Late, Late) {
    let (l, late_l) = split_late(with_watermarks(left, chunk, ooo), |ts, wm| ts >= wm);
    let (r, late_r) = split_late(with_watermarks(right, chunk, ooo), |ts, wm| ts >= wm);
    let late_r: Late = late_r
        .into_iter()
        .map(|(ts, rec)| (ts, if rec.1 % 3 == 0 { (rec.0, u64::MAX) } else { rec }))
        .collect();
    let mut out = Vec::new();
    for &(_, ts, rec) in &l {
        // The change of the key with the greatest (time, value) at or before ts; values order
        // changes at the same time only in this oracle: the test avoids such ties.
        let current = r
            .iter()
            .filter(|c| c.2 .0 == rec.0 && c.1 <= ts)
            .max_by_key(|c| c.1)
            .and_then(|c| if c.2 .1 % 3 == 0 { None } else { Some(c.2 .1) });
        if current.is_some() || outer {
            out.push((rec.0, Some(rec.1), current, None));
        }
    }
    let mut late_r = late_r;
    late_r.sort_unstable();
    out.sort_unstable();
    (out, late_l, late_r)
}

fn kind_of(i: usize) -> JoinKind {
    KINDS[i % 4]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn interval_joins_equal_nested_loops(left in arb_splits(1), right in arb_splits(2), chunk in 1usize..5, ooo in 0i64..50,
                                         lower in -40i64..40, width in 0i64..60, kind in 0usize..4) {
        let b = IntervalBounds::new(lower, lower + width).expect("bounds");
        let expected = oracle_interval(&left, &right, chunk, ooo, b, kind_of(kind));
        for workers in [1, 2, 4] {
            prop_assert_eq!(&run(&Job::Interval(b, kind_of(kind)), &left, &right, chunk, ooo, workers), &expected, "workers {}", workers);
        }
    }

    #[test]
    fn window_joins_equal_nested_loops(left in arb_splits(1), right in arb_splits(2), chunk in 1usize..5, ooo in 0i64..50,
                                       slide in prop_oneof![Just(10i64), Just(25)], factor in 1i64..4, kind in 0usize..4) {
        let size = slide * factor;
        let windows: TimeWindows = if factor == 1 {
            TumblingWindows::of_millis(size).expect("size").into()
        } else {
            SlidingWindows::of_millis(size, slide).expect("slide").into()
        };
        let expected = oracle_sliced(&left, &right, chunk, ooo, size, slide, kind_of(kind));
        for workers in [1, 2, 4] {
            prop_assert_eq!(&run(&Job::Window(windows, kind_of(kind)), &left, &right, chunk, ooo, workers), &expected, "workers {}", workers);
        }
    }

    #[test]
    fn session_joins_equal_nested_loops(left in arb_splits(1), right in arb_splits(2), chunk in 1usize..5, ooo in 0i64..50,
                                        gap in 1i64..30, kind in 0usize..4) {
        let windows: TimeWindows = SessionWindows::with_gap_millis(gap).expect("gap").into();
        let expected = oracle_sessions(&left, &right, chunk, ooo, gap, kind_of(kind));
        for workers in [1, 2, 4] {
            prop_assert_eq!(&run(&Job::Window(windows, kind_of(kind)), &left, &right, chunk, ooo, workers), &expected, "workers {}", workers);
        }
    }

    #[test]
    fn temporal_joins_equal_a_changelog_scan(left in arb_splits(1), right in arb_splits(2), chunk in 1usize..5, ooo in 0i64..50,
                                             outer in any::<bool>()) {
        // Changes of a key at distinct times (ties would make "the version at ts" ambiguous).
        let mut seen = std::collections::HashSet::new();
        let right: Splits = right
            .into_iter()
            .map(|s| s.into_iter().filter(|(ts, r)| seen.insert((*ts, r.0))).collect())
            .collect();
        let expected = oracle_temporal(&left, &right, chunk, ooo, outer);
        for workers in [1, 2, 4] {
            prop_assert_eq!(&run(&Job::Temporal(outer), &left, &right, chunk, ooo, workers), &expected, "workers {}", workers);
        }
    }
}

/// State rows of an interval join over `n` records per side, one per millisecond: the median
/// of samples taken at every joined row, and the peak.
fn interval_join_state(n: i64) -> (u64, u64, usize) {
    let side = |offset: i64| -> Splits { vec![(0..n).map(|i| (i + offset, ((i % 97) as u32, i as u64))).collect()] };
    let (left, right) = (side(0), side(3));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let peak = Arc::new(Mutex::new(0u64));
    let (smp, pk) = (Arc::clone(&samples), Arc::clone(&peak));
    let ctx = Arc::new(JobContext::new(true, Arc::new(SystemClock)));
    execute(ExecutionConfig::threads(2), ctx, move |env| {
        let s = WatermarkStrategy::bounded_out_of_orderness(20);
        let l = env.from_splits(left.clone(), 16, s).key_by(|r: &Rec| r.0);
        let r = env.from_splits(right.clone(), 16, s).key_by(|r: &Rec| r.0);
        let joined = l.interval_join(r, IntervalBounds::new(-100, 100).expect("bounds"), JoinKind::Inner);
        let (gauge, smp, pk) = (Arc::clone(&joined.state), Arc::clone(&smp), Arc::clone(&pk));
        joined.rows.for_each(move |_, _| {
            smp.lock().expect("samples").push(gauge.current());
            *pk.lock().expect("peak") = gauge.peak();
        });
    })
    .expect("job runs");
    let mut samples = samples.lock().expect("samples").clone();
    samples.sort_unstable();
    let median = samples.get(samples.len() / 2).copied().unwrap_or(0);
    let peak = *peak.lock().expect("peak");
    (median, peak, samples.len())
}

#[test]
fn interval_join_state_levels_off_on_a_long_stream() {
    let (short_median, short_peak, short_pairs) = interval_join_state(20_000);
    let (long_median, long_peak, long_pairs) = interval_join_state(200_000);
    eprintln!(
        "state rows: 20 000 records per side: median {short_median}, peak {short_peak}; \
         200 000: median {long_median}, peak {long_peak}"
    );
    assert!(long_pairs > short_pairs * 9, "{short_pairs} then {long_pairs} pairs");
    // Ten times the input, not ten times the state. In steady state the join holds the rows of
    // the interval (±100 ms at 1 record/ms per side) and the disorder, plus what the sources
    // read ahead of the slower side's watermark (timely has no backpressure; scheduling
    // dependent, hence the median and a loose bound). Never the stream.
    // 10 000 held on a quiet machine; 22 916 was seen once in the full suite on 2 busy cores,
    // so the bound is a tenth of the stream: far from holding it, loose enough for scheduling.
    assert!(
        long_median < 40_000,
        "median state {long_median} rows of 400 000 records"
    );
    assert!(long_peak < 200_000, "peak state {long_peak} rows of 400 000 records");
}
