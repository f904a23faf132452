//! `riffle distinct` and `riffle topk`: distinct words and heavy hitters per window, with the
//! exact set, HyperLogLog or a counting Bloom filter, and with the frequent-items sketch.
//!
//! Every word goes to one key (the window's single result), but each worker first folds the
//! words it reads into one partial sketch per pane, so only sketches cross the exchange.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use compact_str::CompactString;
use riffle_core::aggregate::Aggregate;
use riffle_core::text::words;
use riffle_core::window::{TimeWindows, Window};
use riffle_core::{Error, Result};
use riffle_runtime::checkpoint::JobFingerprint;
use riffle_runtime::{execute, WindowResult};
use riffle_sketch::counting_bloom::BloomDistinct;
use riffle_sketch::{ApproxDistinct, ExactDistinct, TopK};

use crate::options::{json_str, output_format, FixedWindowArgs, FormatArg, ResultSink, SourceArgs, TextInput};

/// How `riffle distinct` counts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistinctMethod {
    /// A hash set of the words: exact, memory grows with the distinct words.
    Exact,
    /// HyperLogLog (`--precision`): about 1.04/√2^p relative error, 2^p bytes.
    Hll,
    /// A counting Bloom filter sized by `--expected-items` and `--fp-rate`; fill-ratio estimate.
    Bloom,
}

impl DistinctMethod {
    fn name(self) -> &'static str {
        match self {
            DistinctMethod::Exact => "exact",
            DistinctMethod::Hll => "hll",
            DistinctMethod::Bloom => "bloom",
        }
    }
}

/// Arguments of `riffle distinct`.
#[derive(clap::Args, Debug, Clone)]
pub struct DistinctArgs {
    #[command(flatten)]
    pub input: SourceArgs,
    #[command(flatten)]
    pub windows: FixedWindowArgs,
    /// Counting method.
    #[arg(long, value_enum, default_value_t = DistinctMethod::Hll)]
    pub method: DistinctMethod,
    /// HyperLogLog precision, 4 to 21 [default: 14]; only with --method hll.
    #[arg(long)]
    pub precision: Option<u8>,
    /// Bloom: target false-positive rate at --expected-items [default: 0.01]; only with
    /// --method bloom.
    #[arg(long)]
    pub fp_rate: Option<f64>,
    /// Bloom: distinct words expected per window, sizes the filter [default: 100000]; only
    /// with --method bloom.
    #[arg(long)]
    pub expected_items: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
    /// Write results to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write results exactly once into part files of this directory (file://DIR).
    #[arg(long)]
    pub sink: Option<String>,
}

/// Arguments of `riffle topk`.
#[derive(clap::Args, Debug, Clone)]
pub struct TopkArgs {
    #[command(flatten)]
    pub input: SourceArgs,
    #[command(flatten)]
    pub windows: FixedWindowArgs,
    /// How many of the most frequent words to report per window.
    #[arg(long, default_value_t = 10)]
    pub k: u32,
    /// Slots of the frequent-items sketch (a power of two): counts are exact while a window
    /// has fewer distinct words than 3/4 of it.
    #[arg(long, default_value_t = 4096)]
    pub map_size: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
    /// Write results to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write results exactly once into part files of this directory (file://DIR).
    #[arg(long)]
    pub sink: Option<String>,
}

fn window_prefix(w: Window, out: &mut Vec<u8>) {
    if !w.is_global() {
        let _ = write!(out, "\"window_start\":{},\"window_end\":{},", w.start, w.end);
    }
}

/// Runs a job over the words of `input`, formats each window's result with `format`.
fn run_words<A, F>(
    input: TextInput,
    (output, sink): (&Option<PathBuf>, &Option<String>),
    job: &'static str,
    (windows, agg): (TimeWindows, A),
    format: F,
) -> Result<()>
where
    A: Aggregate<CompactString>,
    A::Output: riffle_runtime::stream::Data,
    F: Fn(&WindowResult<(), A::Output>, &mut Vec<u8>) + Clone + Send + Sync + 'static,
{
    let sink = ResultSink::new(output, sink, &input.ctx, &input.exec)?;
    let out_sink = sink.clone();
    let ctx = Arc::clone(&input.ctx);
    let exec = input.exec.clone();
    let max_malformed_ratio = input.max_malformed_ratio;
    let metrics = execute(exec, Arc::clone(&ctx), move |env| {
        let words = input.lines(env).flat_map(words);
        let format = format.clone();
        // One key: each window's single result, from per-worker partial aggregates.
        let results = words.key_by(|_| ()).window(windows).aggregate(agg.clone());
        out_sink.write(results, |_, _| {}, move |_, r, out| format(r, out));
    })?;
    sink.finish()?;
    ctx.flush()?;
    crate::job_end::finish(job, crate::job_end::RECORDS, &ctx, metrics, max_malformed_ratio)
}

/// `--precision` when not given.
const DEFAULT_PRECISION: u8 = 14;
/// `--expected-items` when not given.
const DEFAULT_EXPECTED_ITEMS: u64 = 100_000;
/// `--fp-rate` when not given.
const DEFAULT_FP_RATE: f64 = 0.01;

/// Refuses the sizing options of the methods `method` does not use: they would be ignored.
fn check_method_options(args: &DistinctArgs) -> Result<()> {
    let method = args.method;
    let ignored = |set: bool, flag: &str, wanted: DistinctMethod| {
        if set && method != wanted {
            return Err(Error::Config(format!(
                "{flag} applies to --method {}, not --method {}",
                wanted.name(),
                method.name()
            )));
        }
        Ok(())
    };
    ignored(args.precision.is_some(), "--precision", DistinctMethod::Hll)?;
    ignored(args.fp_rate.is_some(), "--fp-rate", DistinctMethod::Bloom)?;
    ignored(args.expected_items.is_some(), "--expected-items", DistinctMethod::Bloom)?;
    if args.expected_items == Some(0) {
        return Err(Error::Config("--expected-items must be at least 1".into()));
    }
    Ok(())
}

/// Runs `riffle distinct`.
pub fn run_distinct(args: DistinctArgs) -> Result<()> {
    check_method_options(&args)?;
    // The sketch's state depends on the method and its parameters.
    let job = JobFingerprint::new("riffle distinct").with("--method", args.method.name());
    let job = match args.method {
        DistinctMethod::Exact => job,
        DistinctMethod::Hll => job.with("--precision", args.precision.unwrap_or(DEFAULT_PRECISION)),
        DistinctMethod::Bloom => job
            .with(
                "--expected-items",
                args.expected_items.unwrap_or(DEFAULT_EXPECTED_ITEMS),
            )
            .with("--fp-rate", args.fp_rate.unwrap_or(DEFAULT_FP_RATE)),
    };
    let input = args.input.open(&None, args.windows.fingerprint(job)?)?;
    let windows = args.windows.windows()?;
    let (method, json) = (args.method, output_format(args.format, &args.sink)? == FormatArg::Json);
    let name = method.name();
    let format = move |r: &WindowResult<(), u64>, out: &mut Vec<u8>| {
        if json {
            out.push(b'{');
            window_prefix(r.window, out);
            let _ = writeln!(out, "\"distinct\":{},\"method\":\"{name}\"}}", r.value);
        } else if r.window.is_global() {
            let _ = writeln!(out, "{} distinct ({name})", r.value);
        } else {
            let _ = writeln!(
                out,
                "[{}, {}) {} distinct ({name})",
                r.window.start, r.window.end, r.value
            );
        }
    };
    let config = |e: String| Error::Config(e);
    match method {
        DistinctMethod::Exact => {
            let agg = ExactDistinct::new(|w: CompactString| w);
            run_words(input, (&args.output, &args.sink), "distinct", (windows, agg), format)
        }
        DistinctMethod::Hll => {
            let agg = ApproxDistinct::new(args.precision.unwrap_or(DEFAULT_PRECISION), |w: &CompactString| {
                w.as_str()
            })
            .map_err(|e| config(format!("--precision: {e}")))?;
            run_words(input, (&args.output, &args.sink), "distinct", (windows, agg), format)
        }
        DistinctMethod::Bloom => {
            let (items, rate) = (
                args.expected_items.unwrap_or(DEFAULT_EXPECTED_ITEMS),
                args.fp_rate.unwrap_or(DEFAULT_FP_RATE),
            );
            let agg = BloomDistinct::new(items, rate, |w: &CompactString| w.as_str())
                .map_err(|e| config(format!("--fp-rate/--expected-items: {e}")))?;
            run_words(input, (&args.output, &args.sink), "distinct", (windows, agg), format)
        }
    }
}

/// Slots of the frequent-items map per reported item below which `topk` warns: with fewer,
/// a window's distinct words soon exceed the map (it holds `0.75 · map_size` counters), purges
/// start, and the counts reported are only upper bounds off by up to `3.5 · N / map_size` for
/// `N` words in the window (the DataSketches frequent-items guarantee). The same rule as
/// `TopKSketch::map_size_for`.
const SLOTS_PER_ITEM: usize = 32;

/// A window's top words with their counts, and the sketch's maximum error (0: exact).
type TopWithError = (Vec<(String, u64)>, u64);

/// `TopK` that also reports the sketch's error bound: `(top, maximum error)`, the maximum
/// error being 0 while the counts are exact.
#[derive(Clone)]
struct TopKWithError<F>(TopK<F>);

impl<F> Aggregate<CompactString> for TopKWithError<F>
where
    F: for<'a> Fn(&'a CompactString) -> &'a str + Clone + Send + Sync + 'static,
{
    type Acc = riffle_sketch::TopKSketch;
    type Output = TopWithError;

    fn create(&self) -> Self::Acc {
        self.0.create()
    }
    fn add(&self, acc: &mut Self::Acc, value: CompactString) {
        self.0.add(acc, value)
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        self.0.merge(acc, other)
    }
    fn result(&self, acc: &Self::Acc) -> Self::Output {
        (self.0.result(acc), acc.maximum_error())
    }
}

/// Runs `riffle topk`.
pub fn run_topk(args: TopkArgs) -> Result<()> {
    let job = JobFingerprint::new("riffle topk")
        .with("--k", args.k)
        .with("--map-size", args.map_size);
    let input = args.input.open(&None, args.windows.fingerprint(job)?)?;
    let windows = args.windows.windows()?;
    if args.map_size < SLOTS_PER_ITEM.saturating_mul(args.k as usize) {
        tracing::warn!(
            "--map-size {} is below {SLOTS_PER_ITEM} slots per reported item (--k {}: {}): once a window holds \
             more than {} distinct words the counts are estimates, too high by up to the error bound printed \
             with each result (±N)",
            args.map_size,
            args.k,
            SLOTS_PER_ITEM * args.k as usize,
            args.map_size * 3 / 4
        );
    }
    let agg = TopK::new(args.k, args.map_size, |w: &CompactString| w.as_str())
        .map_err(|e| Error::Config(format!("--k/--map-size: {e}")))?;
    let agg = TopKWithError(agg);
    let json = output_format(args.format, &args.sink)? == FormatArg::Json;
    let format = move |r: &WindowResult<(), TopWithError>, out: &mut Vec<u8>| {
        let (top, max_error) = (&r.value.0, r.value.1);
        if json {
            out.push(b'{');
            window_prefix(r.window, out);
            out.extend_from_slice(b"\"top\":[");
            for (i, (word, n)) in top.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"word\":");
                json_str(word, out);
                let _ = write!(out, ",\"count\":{n}}}");
            }
            out.push(b']');
            // Only when the counts are estimates: exact results keep their shape.
            if max_error > 0 {
                let _ = write!(out, ",\"max_error\":{max_error}");
            }
            out.extend_from_slice(b"}\n");
        } else {
            let mut line: Vec<String> = top.iter().map(|(word, n)| format!("{word}:{n}")).collect();
            if max_error > 0 {
                line.push(format!("(counts ±{max_error})"));
            }
            if r.window.is_global() {
                let _ = writeln!(out, "{}", line.join(" "));
            } else {
                let _ = writeln!(out, "[{}, {}) {}", r.window.start, r.window.end, line.join(" "));
            }
        }
    };
    run_words(input, (&args.output, &args.sink), "topk", (windows, agg), format)
}
