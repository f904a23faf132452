//! `riffle bench join`: interval and window joins on skewed keys, the engine against a
//! hand-written single-threaded symmetric hash join on the same data in the same run.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;
use riffle_core::join::{IntervalBounds, JoinKind};
use riffle_core::window::TumblingWindows;
use riffle_core::{Error, Result, WatermarkStrategy};
use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};

/// Arguments of `riffle bench join`.
#[derive(clap::Args, Debug)]
pub struct JoinBenchArgs {
    /// Records per side (one per millisecond of event time).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Distinct keys (Zipf-distributed, exponent 1.1).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Worker counts to run, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Repetitions; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

type Side = Vec<(i64, (u64, u64))>;

/// Zipf(1.1) keys by inverse transform over a precomputed CDF; deterministic.
fn zipf_side(n: u64, keys: u64, seed: u64) -> Side {
    let weights: Vec<f64> = (1..=keys).map(|i| 1.0 / (i as f64).powf(1.1)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut x = seed;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            (i as i64, (cdf.partition_point(|&c| c < u) as u64, i))
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Job {
    Interval,
    Tumbling,
}

const LOWER: i64 = -5;
const UPPER: i64 = 5;
const WINDOW: i64 = 100;

/// The hand-written symmetric hash join: both sides in time order, interleaved; each record
/// probes the other side's recent records of its key, is stored, and old ones are evicted.
fn hand_interval(left: &Side, right: &Side) -> u64 {
    let mut ls: HashMap<u64, VecDeque<(i64, u64)>> = HashMap::new();
    let mut rs: HashMap<u64, VecDeque<(i64, u64)>> = HashMap::new();
    let mut pairs = 0u64;
    let (mut i, mut j) = (0, 0);
    while i < left.len() || j < right.len() {
        let take_left = j == right.len() || (i < left.len() && left[i].0 <= right[j].0);
        if take_left {
            let (ts, (k, _)) = left[i];
            i += 1;
            let id = left[i - 1].1 .1;
            if let Some(q) = rs.get_mut(&k) {
                while q.front().is_some_and(|&(t, _)| t < ts + LOWER) {
                    q.pop_front();
                }
                for &(_, rid) in q.iter().take_while(|&&(t, _)| t <= ts + UPPER) {
                    pairs = pairs.wrapping_add(pair_sum(id, rid));
                }
            }
            ls.entry(k).or_default().push_back((ts, id));
        } else {
            let (ts, (k, _)) = right[j];
            j += 1;
            let id = right[j - 1].1 .1;
            if let Some(q) = ls.get_mut(&k) {
                while q.front().is_some_and(|&(t, _)| t < ts - UPPER) {
                    q.pop_front();
                }
                for &(_, lid) in q.iter().take_while(|&&(t, _)| t <= ts - LOWER) {
                    pairs = pairs.wrapping_add(pair_sum(lid, id));
                }
            }
            rs.entry(k).or_default().push_back((ts, id));
        }
    }
    pairs
}

/// The hand-written window join: per tumbling window, per key, every pair of ids.
fn hand_tumbling(left: &Side, right: &Side) -> u64 {
    let mut pairs = 0u64;
    let mut rows: HashMap<u64, (Vec<u64>, Vec<u64>)> = HashMap::new();
    let (mut i, mut j) = (0, 0);
    let mut window = 0i64;
    while i < left.len() || j < right.len() {
        while i < left.len() && left[i].0 < window + WINDOW {
            rows.entry(left[i].1 .0).or_default().0.push(left[i].1 .1);
            i += 1;
        }
        while j < right.len() && right[j].0 < window + WINDOW {
            rows.entry(right[j].1 .0).or_default().1.push(right[j].1 .1);
            j += 1;
        }
        for (ls, rs) in rows.values() {
            for &l in ls {
                for &r in rs {
                    pairs = pairs.wrapping_add(pair_sum(l, r));
                }
            }
        }
        rows.clear();
        window += WINDOW;
    }
    pairs
}

/// A pair's contribution to the checksum both the engine and the hand loops compute.
#[inline]
fn pair_sum(left_id: u64, right_id: u64) -> u64 {
    left_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ right_id
}

/// Counts pairs on one worker; adds them to the total when the job drops its operators.
struct PairCounter {
    local: u64,
    count: u64,
    total: Arc<AtomicU64>,
    pairs: Arc<AtomicU64>,
}

impl PairCounter {
    fn add(&mut self, pair: u64) {
        self.local = self.local.wrapping_add(pair);
        self.count += 1;
    }
}

impl Drop for PairCounter {
    fn drop(&mut self) {
        // Wrapping sums commute: the total is the same whatever the split over workers.
        let _ = self.total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
            Some(t.wrapping_add(self.local))
        });
        self.pairs.fetch_add(self.count, Ordering::Relaxed);
    }
}

/// Runs the join on the engine; returns (pair count, checksum).
fn engine(left: &Side, right: &Side, job: Job, workers: usize) -> Result<(u64, u64)> {
    let checksum = Arc::new(AtomicU64::new(0));
    let pairs = Arc::new(AtomicU64::new(0));
    let (p, n) = (Arc::clone(&checksum), Arc::clone(&pairs));
    // One split per worker per side, each covering the whole time range in order (as the
    // partitions of a topic do).
    let split = |side: &Side| -> Vec<Side> {
        let mut splits = vec![Vec::new(); workers];
        for (n, r) in side.iter().enumerate() {
            splits[n % workers].push(*r);
        }
        splits
    };
    let (l, r) = (split(left), split(right));
    let ctx = Arc::new(JobContext::new(false, Arc::new(SystemClock)));
    execute(ExecutionConfig::threads(workers), ctx, move |env| {
        let s = WatermarkStrategy::bounded_out_of_orderness(0);
        let ls = env.from_splits(l.clone(), 1024, s).key_by(|r: &(u64, u64)| r.0);
        let rs = env.from_splits(r.clone(), 1024, s).key_by(|r: &(u64, u64)| r.0);
        let joined = match job {
            Job::Interval => ls.interval_join(
                rs,
                IntervalBounds {
                    lower: LOWER,
                    upper: UPPER,
                },
                JoinKind::Inner,
            ),
            Job::Tumbling => ls.window_join(rs, TumblingWindows { size: WINDOW }, JoinKind::Inner),
        };
        let mut counter = PairCounter {
            local: 0,
            count: 0,
            total: Arc::clone(&p),
            pairs: Arc::clone(&n),
        };
        joined.rows.for_each(move |_, r| {
            if let (Some(l), Some(rr)) = (r.left, r.right) {
                counter.add(pair_sum(l.1, rr.1));
            }
        });
    })?;
    Ok((pairs.load(Ordering::Relaxed), checksum.load(Ordering::Relaxed)))
}

fn best<T>(repeat: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut secs = f64::INFINITY;
    let mut out = None;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let r = f()?;
        secs = secs.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    out.map(|r| (secs, r))
        .ok_or_else(|| Error::Execution("no repetition ran".into()))
}

/// Runs the benchmark.
pub fn run(args: JoinBenchArgs) -> Result<()> {
    let left = zipf_side(args.records, args.keys, 1);
    let right = zipf_side(args.records, args.keys, 2);
    let inputs = (left.len() + right.len()) as f64;
    println!(
        "riffle bench join: {} records per side, {} Zipf(1.1) keys, best of {}; interval [{LOWER}, {UPPER}] ms, tumbling {WINDOW} ms",
        args.records, args.keys, args.repeat
    );
    println!(
        "{:<10} {:>8} {:>13} {:>13} {:>15} {:>8}  check",
        "join", "workers", "engine in/s", "pairs/s", "hand loop in/s", "ratio"
    );
    for job in [Job::Interval, Job::Tumbling] {
        let (hand_secs, hand_sum) = best(args.repeat, || {
            Ok(match job {
                Job::Interval => hand_interval(&left, &right),
                Job::Tumbling => hand_tumbling(&left, &right),
            })
        })?;
        for &w in &args.workers {
            let (secs, (pairs, sum)) = best(args.repeat, || engine(&left, &right, job, w))?;
            let check = if sum == hand_sum { "ok" } else { "MISMATCH" };
            println!(
                "{:<10} {:>8} {:>11.2} M {:>11.2} M {:>13.2} M {:>7.2}x  {check} ({pairs} pairs)",
                match job {
                    Job::Interval => "interval",
                    Job::Tumbling => "tumbling",
                },
                w,
                inputs / secs / 1e6,
                pairs as f64 / secs / 1e6,
                inputs / hand_secs / 1e6,
                hand_secs.recip() / secs.recip()
            );
            if check != "ok" {
                return Err(Error::Execution(format!(
                    "pair checksums differ: engine {sum:#x} ({pairs} pairs), hand loop {hand_sum:#x}"
                )));
            }
        }
    }
    println!("ratio = hand-written loop time / engine time (below 1: the engine is faster)");
    Ok(())
}
