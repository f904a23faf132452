//! `riffle wordcount`: the seed's job. Lines are split on whitespace into words (by
//! `riffle_core::text::words`); each word is counted per key and window (or over the whole
//! input without `--window`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use compact_str::CompactString;
use riffle_connectors::LineSink;
use riffle_core::text::words;
use riffle_core::window::{SessionWindows, TimeWindows, Window};
use riffle_core::Result;
use riffle_runtime::checkpoint::JobFingerprint;
use riffle_runtime::{execute, WindowResult};

use crate::options::{duration_field, json_str, millis, FixedWindowArgs, FormatArg, ResultSink, SourceArgs};

/// Arguments of `riffle wordcount`.
#[derive(clap::Args, Debug, Clone)]
pub struct WordcountArgs {
    #[command(flatten)]
    pub input: SourceArgs,
    #[command(flatten)]
    pub windows: FixedWindowArgs,
    /// Session windows with this inactivity gap instead of fixed windows.
    #[arg(long, conflicts_with_all = ["window", "count_window"], allow_hyphen_values = true)]
    pub session_gap: Option<String>,
    /// Count windows: one result per word every N occurrences.
    #[arg(long, conflicts_with = "window")]
    pub count_window: Option<u64>,
    /// Slide of sliding count windows (in occurrences).
    #[arg(long, requires = "count_window")]
    pub count_slide: Option<u64>,
    /// Event time: how long a window accepts late records after it fired (each updates it).
    /// Applies to time windows (--window or --session-gap).
    #[arg(long, allow_hyphen_values = true)]
    pub lateness: Option<String>,
    /// Write records later than the allowed lateness here (JSON lines).
    #[arg(long)]
    pub late_output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
    /// Write results to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write results exactly once into part files of this directory (file://DIR), committed
    /// with each checkpoint.
    #[arg(long)]
    pub sink: Option<String>,
}

enum Windowing {
    Time(TimeWindows),
    Count { size: u64, slide: u64 },
}

/// Appends one result line.
pub fn format_result(format: FormatArg, r: &WindowResult<CompactString, u64>, out: &mut Vec<u8>) {
    let w: Window = r.window;
    match (format, w.is_global()) {
        (FormatArg::Json, false) => {
            let _ = write!(out, "{{\"window_start\":{},\"window_end\":{},\"word\":", w.start, w.end);
            json_str(&r.key, out);
            let _ = writeln!(out, ",\"count\":{}}}", r.value);
        }
        (FormatArg::Json, true) => {
            out.extend_from_slice(b"{\"word\":");
            json_str(&r.key, out);
            let _ = writeln!(out, ",\"count\":{}}}", r.value);
        }
        (FormatArg::Text, false) => {
            let _ = writeln!(out, "[{}, {}) {} {}", w.start, w.end, r.key, r.value);
        }
        (FormatArg::Text, true) => {
            let _ = writeln!(out, "{} {}", r.key, r.value);
        }
    }
}

/// What the word count's state depends on besides its input: its windows and lateness.
fn fingerprint(args: &WordcountArgs) -> Result<JobFingerprint> {
    let job = args.windows.fingerprint(JobFingerprint::new("riffle wordcount"))?;
    let count_slide = args.count_slide.or(args.count_window);
    Ok(job
        .with_opt("--session-gap", duration_field("session-gap", &args.session_gap)?)
        .with_opt("--count-window", args.count_window)
        .with_opt("--count-slide", count_slide)
        .with_opt("--lateness", duration_field("lateness", &args.lateness)?))
}

/// Runs the word count.
pub fn run(args: WordcountArgs) -> Result<()> {
    if args.lateness.is_some() && args.windows.window.is_none() && args.session_gap.is_none() {
        // Without time windows nothing fires before the input ends, so nothing can be late.
        return Err(riffle_core::Error::Config(
            "--lateness applies to time windows: use it with --window or --session-gap".into(),
        ));
    }
    let input = args.input.open(&args.lateness, fingerprint(&args)?)?;
    let gap = millis("session-gap", &args.session_gap)?;
    let lateness = millis("lateness", &args.lateness)?.unwrap_or(0);
    let windowing = match (gap, args.count_window) {
        (_, Some(size)) => {
            let slide = args.count_slide.unwrap_or(size);
            riffle_core::count_window::CountWindows::sliding(size, slide)?;
            Windowing::Count { size, slide }
        }
        (Some(gap), None) => Windowing::Time(SessionWindows::with_gap_millis(gap)?.into()),
        (None, None) => Windowing::Time(args.windows.windows()?),
    };
    let sink = ResultSink::new(&args.output, &args.sink, &input.ctx, &input.exec)?;
    let late_sink = args.late_output.as_deref().map(LineSink::file).transpose()?;
    let late_flush = late_sink.clone();
    let ctx = Arc::clone(&input.ctx);
    let format = sink.format(args.format);
    let lateness_d = std::time::Duration::from_millis(lateness as u64);
    let windowing = Arc::new(windowing);
    let out_sink = sink.clone();
    let exec = input.exec.clone();
    let metrics = execute(exec, Arc::clone(&ctx), move |env| {
        let keyed = input.lines(env).flat_map(words).key_by(|w: &CompactString| w.clone());
        let results = match &*windowing {
            Windowing::Time(w) => {
                let (results, late) = keyed
                    .window(*w)
                    .allowed_lateness(lateness_d)
                    .aggregate_with_late(riffle_core::aggregate::Count);
                if let Some(late_sink) = &late_sink {
                    late.write_side_lines(late_sink.clone(), |ts, word, out| {
                        let _ = write!(out, "{{\"timestamp\":{ts},\"word\":");
                        json_str(word, out);
                        out.extend_from_slice(b"}\n");
                    });
                }
                results
            }
            Windowing::Count { size, slide } => match keyed.count_window_sliding(*size, *slide) {
                Ok(w) => w.aggregate(riffle_core::aggregate::Count),
                Err(e) => {
                    env.context().fail(e);
                    return;
                }
            },
        };
        out_sink.write(
            results,
            |r, key| key.extend_from_slice(r.key.as_bytes()),
            move |_, r, out| format_result(format, r, out),
        );
    })?;
    sink.finish()?;
    ctx.flush()?;
    if let Some(late) = late_flush {
        late.flush()?;
    }
    crate::job_end::finish(
        "wordcount",
        crate::job_end::RECORDS,
        &ctx,
        metrics,
        args.input.max_malformed_ratio,
    )
}
