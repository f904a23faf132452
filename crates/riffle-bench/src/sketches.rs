//! `riffle bench sketches`: inserts per second of each distinct-counting and frequency
//! structure, one thread, against an exact hash set on the same data in the same run.

use std::hint::black_box;
use std::time::Instant;

use hashbrown::HashSet;
use riffle_connectors::generator::WordGenerator;
use riffle_core::{Error, Result};
use riffle_sketch::{CountMinSketch, CountingBloomFilter, HyperLogLog, TopKSketch};

/// Arguments of `riffle bench sketches`.
#[derive(clap::Args, Debug)]
pub struct SketchBenchArgs {
    /// Items per data set.
    #[arg(long, default_value_t = 5_000_000)]
    items: u64,
    /// Distinct words of the word data set.
    #[arg(long, default_value_t = 100_000)]
    vocabulary: u64,
    /// HyperLogLog precision.
    #[arg(long, default_value_t = 12)]
    precision: u8,
    /// Repetitions; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

fn best(repeat: usize, mut f: impl FnMut() -> u64) -> (f64, u64) {
    let mut secs = f64::INFINITY;
    let mut answer = 0;
    for _ in 0..repeat.max(1) {
        let start = Instant::now();
        answer = black_box(f());
        secs = secs.min(start.elapsed().as_secs_f64());
    }
    (secs, answer)
}

fn report(name: &str, n: usize, (secs, answer): (f64, u64), baseline: f64) {
    let rate = n as f64 / secs;
    println!(
        "{name:<34} {:>9.1} M/s {:>7.2} ns {:>8.2}x  answer {answer}",
        rate / 1e6,
        secs * 1e9 / n as f64,
        baseline / secs
    );
}

/// Runs the benchmark on `items` distinct `u64`s and on `items` Zipf-distributed words.
pub fn run(args: SketchBenchArgs) -> Result<()> {
    let n = args.items as usize;
    let mut text = Vec::new();
    WordGenerator {
        lines: args.items.div_ceil(10),
        words_per_line: 10,
        vocabulary: args.vocabulary,
        seed: 11,
        start: 0,
        step: 1,
        disorder: 0,
        timestamps: false,
        rate: None,
        cyclic: false,
    }
    .write_all(&mut text)
    .map_err(|e| Error::Execution(format!("cannot generate words: {e}")))?;
    let text = String::from_utf8(text).map_err(|e| Error::Execution(format!("generated words: {e}")))?;
    let words: Vec<&str> = text.split_ascii_whitespace().take(n).collect();
    let numbers: Vec<u64> = (0..args.items).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let p = args.precision;
    let hll = HyperLogLog::new(p).map_err(|e| Error::Config(e.to_string()))?;
    println!(
        "riffle bench sketches: best of {}, one thread; ratio = exact hash set time / structure time",
        args.repeat
    );
    println!(
        "{:<34} {:>13} {:>10} {:>9}",
        "structure", "inserts/s", "per insert", "ratio"
    );

    println!("-- {n} distinct u64 --");
    let exact = best(args.repeat, || {
        let mut s = HashSet::with_capacity(1024);
        for x in &numbers {
            s.insert(*x);
        }
        s.len() as u64
    });
    report("exact hash set (hand loop)", n, exact, exact.0);
    report(
        &format!("HyperLogLog p={p}"),
        n,
        best(args.repeat, || {
            let mut h = hll.clone();
            for x in &numbers {
                h.insert_hash(*x);
            }
            h.estimate().round() as u64
        }),
        exact.0,
    );
    let bloom = CountingBloomFilter::with_rate(args.items, 0.01).map_err(|e| Error::Config(e.to_string()))?;
    report(
        "counting Bloom 4-bit, 1 % at n",
        n,
        best(args.repeat, || {
            let mut f = bloom.clone();
            for x in &numbers {
                f.insert_hash(*x);
            }
            f.estimate_distinct().round() as u64
        }),
        exact.0,
    );

    println!("-- {} words, {} distinct, skewed --", words.len(), args.vocabulary);
    let n = words.len();
    let exact = best(args.repeat, || {
        let mut s: HashSet<&str> = HashSet::with_capacity(1024);
        for w in &words {
            s.insert(w);
        }
        s.len() as u64
    });
    report("exact hash set (hand loop)", n, exact, exact.0);
    report(
        "stable hash only (XXH3, all below)",
        n,
        best(args.repeat, || {
            words
                .iter()
                .fold(0u64, |a, w| a ^ riffle_core::key_group::stable_hash(*w))
        }),
        exact.0,
    );
    report(
        &format!("HyperLogLog p={p}"),
        n,
        best(args.repeat, || {
            let mut h = hll.clone();
            for w in &words {
                h.insert(*w);
            }
            h.estimate().round() as u64
        }),
        exact.0,
    );
    let bloom = CountingBloomFilter::with_rate(args.vocabulary, 0.01).map_err(|e| Error::Config(e.to_string()))?;
    report(
        "counting Bloom 4-bit, 1 % at vocab.",
        n,
        best(args.repeat, || {
            let mut f = bloom.clone();
            for w in &words {
                f.insert(*w);
            }
            f.estimate_distinct().round() as u64
        }),
        exact.0,
    );
    let cm = CountMinSketch::with_error(0.0001, 0.01).map_err(|e| Error::Config(e.to_string()))?;
    report(
        "Count-Min e=1e-4 d=0.01",
        n,
        best(args.repeat, || {
            let mut c = cm.clone();
            for w in &words {
                c.insert(*w, 1);
            }
            c.estimate(words[0])
        }),
        exact.0,
    );
    let top = TopKSketch::new(10, 4096).map_err(|e| Error::Config(e.to_string()))?;
    report(
        "top-10, 4096-slot frequent items",
        n,
        best(args.repeat, || {
            let mut t = top.clone();
            for w in &words {
                t.insert(w);
            }
            t.top().first().map_or(0, |r| r.1)
        }),
        exact.0,
    );
    Ok(())
}
