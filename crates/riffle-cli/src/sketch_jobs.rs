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
use riffle_core::window::{TimeWindows, Window};
use riffle_core::{Error, Result};
use riffle_runtime::checkpoint::JobFingerprint;
use riffle_runtime::{execute, WindowResult};
use riffle_sketch::counting_bloom::BloomDistinct;
use riffle_sketch::{ApproxDistinct, ExactDistinct, TopK};

use crate::options::{json_str, output_format, FixedWindowArgs, FormatArg, ResultSink, SourceArgs, TextInput};
use crate::wordcount::words;

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
    /// HyperLogLog precision, 4 to 21.
    #[arg(long, default_value_t = 14)]
    pub precision: u8,
    /// Bloom: target false-positive rate at --expected-items.
    #[arg(long, default_value_t = 0.01)]
    pub fp_rate: f64,
    /// Bloom: distinct words expected per window (sizes the filter).
    #[arg(long, default_value_t = 100_000)]
    pub expected_items: u64,
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

/// Runs `riffle distinct`.
pub fn run_distinct(args: DistinctArgs) -> Result<()> {
    // The sketch's state depends on the method and its parameters.
    let job = JobFingerprint::new("riffle distinct").with("--method", args.method.name());
    let job = match args.method {
        DistinctMethod::Exact => job,
        DistinctMethod::Hll => job.with("--precision", args.precision),
        DistinctMethod::Bloom => job
            .with("--expected-items", args.expected_items)
            .with("--fp-rate", args.fp_rate),
    };
    let input = args.input.open(&None, args.windows.fingerprint(job)?)?;
    let windows = args.windows.windows()?;
    let (method, json) = (args.method, output_format(args.format, &args.sink) == FormatArg::Json);
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
            let agg = ApproxDistinct::new(args.precision, |w: &CompactString| w.as_str())
                .map_err(|e| config(format!("--precision: {e}")))?;
            run_words(input, (&args.output, &args.sink), "distinct", (windows, agg), format)
        }
        DistinctMethod::Bloom => {
            let agg = BloomDistinct::new(args.expected_items, args.fp_rate, |w: &CompactString| w.as_str())
                .map_err(|e| config(format!("--fp-rate/--expected-items: {e}")))?;
            run_words(input, (&args.output, &args.sink), "distinct", (windows, agg), format)
        }
    }
}

/// Runs `riffle topk`.
pub fn run_topk(args: TopkArgs) -> Result<()> {
    let job = JobFingerprint::new("riffle topk")
        .with("--k", args.k)
        .with("--map-size", args.map_size);
    let input = args.input.open(&None, args.windows.fingerprint(job)?)?;
    let windows = args.windows.windows()?;
    let agg = TopK::new(args.k, args.map_size, |w: &CompactString| w.as_str())
        .map_err(|e| Error::Config(format!("--k/--map-size: {e}")))?;
    let json = output_format(args.format, &args.sink) == FormatArg::Json;
    let format = move |r: &WindowResult<(), Vec<(String, u64)>>, out: &mut Vec<u8>| {
        if json {
            out.push(b'{');
            window_prefix(r.window, out);
            out.extend_from_slice(b"\"top\":[");
            for (i, (word, n)) in r.value.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"word\":");
                json_str(word, out);
                let _ = write!(out, ",\"count\":{n}}}");
            }
            out.extend_from_slice(b"]}\n");
        } else {
            let top: Vec<String> = r.value.iter().map(|(word, n)| format!("{word}:{n}")).collect();
            if r.window.is_global() {
                let _ = writeln!(out, "{}", top.join(" "));
            } else {
                let _ = writeln!(out, "[{}, {}) {}", r.window.start, r.window.end, top.join(" "));
            }
        }
    };
    run_words(input, (&args.output, &args.sink), "topk", (windows, agg), format)
}
