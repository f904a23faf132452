//! `riffle bench wordcount`: the engine against a hand-written single-threaded loop doing the
//! same job on the same data, in the same run, so that the framework's overhead is a measured
//! ratio. The engine splits lines with `riffle_core::text::words`, the loop with
//! `str::split_whitespace`: the same words, so the two counts are compared exactly.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use compact_str::CompactString;
use hashbrown::HashMap;
use riffle_connectors::generator::WordGenerator;
use riffle_connectors::SplitSpec;
use riffle_core::text::words;
use riffle_core::window::{GlobalWindows, SlidingWindows, TimeWindows, TumblingWindows};
use riffle_core::{Error, Result, WatermarkStrategy};
use riffle_runtime::source::leading_millis;
use riffle_runtime::{execute, ExecutionConfig, JobContext, TextSource};

/// Arguments of `riffle bench wordcount`.
#[derive(clap::Args, Debug)]
pub struct WordcountBenchArgs {
    /// Words to generate (10 per line, one line per millisecond of event time).
    #[arg(long, default_value_t = 5_000_000)]
    words: u64,
    /// Distinct words.
    #[arg(long, default_value_t = 100_000)]
    vocabulary: u64,
    /// Worker counts to run, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Use this file (event-time lines) instead of generating one.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Repetitions of each measurement; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

#[derive(Clone, Copy, Debug)]
enum Job {
    Total,
    Tumbling5s,
    Hop10s2s,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::Total => "total count",
            Job::Tumbling5s => "tumbling 5s",
            Job::Hop10s2s => "hop 10s/2s",
        }
    }
    fn windows(self) -> TimeWindows {
        match self {
            Job::Total => GlobalWindows.into(),
            Job::Tumbling5s => TumblingWindows { size: 5_000 }.into(),
            Job::Hop10s2s => SlidingWindows {
                size: 10_000,
                slide: 2_000,
            }
            .into(),
        }
    }
}

/// What a run produced: result rows and the sum of their counts (checked between engine and
/// loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Checksum {
    rows: u64,
    total: u64,
}

/// The hand-written loop: one thread, read lines, parse the timestamp, split words, count in
/// hash maps keyed by pane and word (no per-word allocation on hits), merge panes into
/// windows at the end.
fn hand_written(path: &Path, job: Job) -> Result<(u64, Checksum)> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        what: "cannot open",
        path: path.into(),
        source,
    })?;
    let mut reader = std::io::BufReader::with_capacity(1 << 18, file);
    let pane_len: i64 = match job {
        Job::Total => i64::MAX,
        Job::Tumbling5s => 5_000,
        Job::Hop10s2s => 2_000,
    };
    let mut panes: HashMap<i64, HashMap<CompactString, u64>> = HashMap::new();
    let mut line = Vec::new();
    let mut words_seen = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|source| Error::Io {
            what: "cannot read",
            path: path.into(),
            source,
        })?;
        if n == 0 {
            break;
        }
        let Ok(text) = std::str::from_utf8(&line) else { continue };
        let Ok((ts, rest)) = leading_millis(text.trim_end()) else {
            continue;
        };
        let pane = if pane_len == i64::MAX {
            0
        } else {
            ts - ts.rem_euclid(pane_len)
        };
        let counts = panes.entry(pane).or_default();
        for w in rest.split_whitespace() {
            words_seen += 1;
            match counts.get_mut(w) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(CompactString::from(w), 1);
                }
            }
        }
    }
    let mut sum = Checksum { rows: 0, total: 0 };
    match job {
        Job::Total | Job::Tumbling5s => {
            for counts in panes.values() {
                sum.rows += counts.len() as u64;
                sum.total += counts.values().sum::<u64>();
            }
        }
        Job::Hop10s2s => {
            let mut starts: Vec<i64> = panes.keys().flat_map(|p| (0..5).map(move |i| p - i * 2_000)).collect();
            starts.sort_unstable();
            starts.dedup();
            for s in starts {
                let mut window: HashMap<&CompactString, u64> = HashMap::new();
                for p in (0..5).map(|i| s + i * 2_000) {
                    if let Some(counts) = panes.get(&p) {
                        for (w, c) in counts {
                            *window.entry(w).or_insert(0) += c;
                        }
                    }
                }
                sum.rows += window.len() as u64;
                sum.total += window.values().sum::<u64>();
            }
        }
    }
    Ok((words_seen, sum))
}

fn engine(path: &Path, job: Job, workers: usize) -> Result<Checksum> {
    let rows = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let (r, t) = (Arc::clone(&rows), Arc::clone(&total));
    let split = SplitSpec::new(riffle_connectors::FileSplit::new(path));
    execute(
        ExecutionConfig::threads(workers),
        Arc::new(JobContext::default()),
        move |env| {
            let source =
                TextSource::new(vec![split.clone()]).event_time(WatermarkStrategy::bounded_out_of_orderness(0));
            let (r, t) = (Arc::clone(&r), Arc::clone(&t));
            env.text(source)
                .flat_map(words)
                .key_by(|w: &CompactString| w.clone())
                .window(job.windows())
                .count()
                .for_each(move |_, res| {
                    r.fetch_add(1, Ordering::Relaxed);
                    t.fetch_add(res.value, Ordering::Relaxed);
                });
        },
    )?;
    Ok(Checksum {
        rows: rows.load(Ordering::Relaxed),
        total: total.load(Ordering::Relaxed),
    })
}

fn best_of<T>(repeat: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..repeat.max(1) {
        let start = Instant::now();
        let out = f()?;
        best = best.min(start.elapsed().as_secs_f64());
        last = Some(out);
    }
    last.map(|out| (best, out))
        .ok_or_else(|| Error::Execution("no repetition ran".into()))
}

/// Runs the benchmark and prints a table.
pub fn run(args: WordcountBenchArgs) -> Result<()> {
    let tmp;
    let path = match &args.file {
        Some(p) => p.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("riffle-bench-words-{}-{}.txt", args.words, args.vocabulary));
            if !tmp.exists() {
                let gen = WordGenerator {
                    lines: args.words.div_ceil(10),
                    words_per_line: 10,
                    vocabulary: args.vocabulary,
                    seed: 7,
                    start: 1_700_000_000_000,
                    step: 1,
                    disorder: 0,
                    timestamps: true,
                    rate: None,
                    cyclic: false,
                };
                let f = std::fs::File::create(&tmp).map_err(|source| Error::Io {
                    what: "cannot create",
                    path: tmp.clone(),
                    source,
                })?;
                let mut out = std::io::BufWriter::new(f);
                gen.write_all(&mut out).map_err(|source| Error::Io {
                    what: "cannot write",
                    path: tmp.clone(),
                    source,
                })?;
            }
            tmp.clone()
        }
    };
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "riffle bench wordcount: {} ({:.1} MB), best of {} runs",
        path.display(),
        bytes as f64 / 1e6,
        args.repeat
    );
    println!(
        "{:<14} {:>8} {:>14} {:>14} {:>10}  check",
        "job", "workers", "engine w/s", "hand loop w/s", "ratio"
    );
    for job in [Job::Total, Job::Tumbling5s, Job::Hop10s2s] {
        let (hand_secs, (words, hand_sum)) = best_of(args.repeat, || hand_written(&path, job))?;
        let hand_rate = words as f64 / hand_secs;
        for &w in &args.workers {
            let (secs, sum) = best_of(args.repeat, || engine(&path, job, w))?;
            let rate = words as f64 / secs;
            let check = if sum == hand_sum { "ok" } else { "MISMATCH" };
            println!(
                "{:<14} {:>8} {:>12.2} M {:>12.2} M {:>9.2}x  {check} ({} rows)",
                job.name(),
                w,
                rate / 1e6,
                hand_rate / 1e6,
                hand_rate / rate,
                sum.rows
            );
            if check != "ok" {
                return Err(Error::Execution(format!(
                    "{}: engine {:?}, hand loop {:?}",
                    job.name(),
                    sum,
                    hand_sum
                )));
            }
        }
    }
    println!("ratio = hand-written loop time / engine time on the same data (below 1 means the engine is faster)");
    Ok(())
}
