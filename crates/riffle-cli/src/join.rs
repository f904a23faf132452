//! `riffle join`: two streams of JSON lines joined by key, in windows or within an interval.

use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use riffle_connectors::json::{JsonKey, JsonRecord, JsonRecordFormat};
use riffle_connectors::{LineSink, SourceUri};
use riffle_core::duration::parse_millis;
use riffle_core::join::{IntervalBounds, JoinKind};
use riffle_core::window::{SessionWindows, TimeWindows};
use riffle_core::{Error, Result, WatermarkStrategy};
use riffle_runtime::source::RecordParser;
use riffle_runtime::{execute, JoinResult, Joined, TextSource};

use crate::options::{millis, ExecutionArgs, FixedWindowArgs, FormatArg, ResultSink};

/// Join kinds on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindArg {
    /// Matched pairs only.
    Inner,
    /// Also left records without a match.
    Left,
    /// Also right records without a match.
    Right,
    /// Also unmatched records of both sides.
    Full,
}

impl From<KindArg> for JoinKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Inner => JoinKind::Inner,
            KindArg::Left => JoinKind::Left,
            KindArg::Right => JoinKind::Right,
            KindArg::Full => JoinKind::Full,
        }
    }
}

/// Arguments of `riffle join`.
#[derive(clap::Args, Debug, Clone)]
pub struct JoinArgs {
    /// Left input (JSON lines): file://PATH, socket://HOST:PORT, - (stdin).
    #[arg(long)]
    pub left: String,
    /// Right input (JSON lines).
    #[arg(long)]
    pub right: String,
    /// Top-level field holding the join key (string, number or boolean).
    #[arg(long)]
    pub key_field: String,
    /// Top-level field holding the event time (unix millis, or an RFC 3339 string).
    #[arg(long)]
    pub time_field: String,
    /// How far records may be out of order and still be on time.
    #[arg(long, default_value = "0ms", allow_hyphen_values = true)]
    pub out_of_orderness: String,
    /// A split without records for this long stops holding the watermark back.
    #[arg(long, allow_hyphen_values = true)]
    pub idle_timeout: Option<String>,
    #[command(flatten)]
    pub windows: FixedWindowArgs,
    /// Session windows with this gap (over both sides' records of a key).
    #[arg(long, conflicts_with_all = ["window", "between"], allow_hyphen_values = true)]
    pub session_gap: Option<String>,
    /// Interval join: LOWER,UPPER such that left.ts + LOWER <= right.ts <= left.ts + UPPER
    /// (durations, LOWER may be negative, e.g. -5s,10s).
    #[arg(long, conflicts_with = "window", allow_hyphen_values = true)]
    pub between: Option<String>,
    /// Which unmatched records are also emitted.
    #[arg(long, value_enum, default_value_t = KindArg::Inner)]
    pub kind: KindArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Json)]
    pub format: FormatArg,
    /// Write results to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write results into part files of this directory (file://DIR), made visible when the
    /// job ends (joins do not checkpoint yet).
    #[arg(long)]
    pub sink: Option<String>,
    /// Write records too late to join here (JSON lines with their side).
    #[arg(long)]
    pub late_output: Option<PathBuf>,
    /// Also write malformed lines here.
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// Fail on the first malformed line.
    #[arg(long)]
    pub strict: bool,
    /// Fail (after writing the results) when more than this share of the input was malformed:
    /// a wrong input format or field name, rather than a few bad lines (1: never).
    #[arg(long, default_value_t = 0.5)]
    pub max_malformed_ratio: f64,
    /// Lines per chunk; the watermark advances between chunks.
    #[arg(long, default_value_t = 1024)]
    pub chunk_lines: usize,
    #[command(flatten)]
    pub execution: ExecutionArgs,
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Window(TimeWindows),
    Interval(IntervalBounds),
}

/// A signed duration: `-5s` is minus five seconds.
fn signed_millis(text: &str) -> Result<i64> {
    match text.trim().strip_prefix('-') {
        Some(rest) => Ok(-parse_millis(rest)?),
        None => parse_millis(text),
    }
}

fn shape(args: &JoinArgs) -> Result<Shape> {
    if let Some(between) = &args.between {
        let (lo, hi) = between
            .split_once(',')
            .ok_or_else(|| Error::Config(format!("--between: expected LOWER,UPPER, got '{between}'")))?;
        let bounds = IntervalBounds::new(
            signed_millis(lo).map_err(crate::options::flag_error("--between"))?,
            signed_millis(hi).map_err(crate::options::flag_error("--between"))?,
        )?;
        return Ok(Shape::Interval(bounds));
    }
    if let Some(gap) = millis("session-gap", &args.session_gap)? {
        return Ok(Shape::Window(SessionWindows::with_gap_millis(gap)?.into()));
    }
    if args.windows.window.is_none() {
        return Err(Error::Config(
            "riffle join needs --window W [--slide S], --session-gap G or --between LOWER,UPPER".into(),
        ));
    }
    Ok(Shape::Window(args.windows.windows()?))
}

fn format_row(format: FormatArg, r: &JoinResult<JsonKey, JsonRecord, JsonRecord>, out: &mut Vec<u8>) {
    let side = |rec: &Option<JsonRecord>| rec.as_ref().map_or("null", |x| x.json.as_str()).to_string();
    match format {
        FormatArg::Json => {
            out.push(b'{');
            if let Some(w) = r.window {
                let _ = write!(out, "\"window_start\":{},\"window_end\":{},", w.start, w.end);
            }
            out.extend_from_slice(b"\"key\":");
            r.key.write_json(out);
            let _ = writeln!(out, ",\"left\":{},\"right\":{}}}", side(&r.left), side(&r.right));
        }
        FormatArg::Text => {
            if let Some(w) = r.window {
                let _ = write!(out, "[{}, {}) ", w.start, w.end);
            }
            r.key.write_json(out);
            let _ = writeln!(out, " | {} | {}", side(&r.left), side(&r.right));
        }
    }
}

/// Runs `riffle join`.
pub fn run(args: JoinArgs) -> Result<()> {
    let exec = args.execution.config()?;
    let shape = shape(&args)?;
    let kind: JoinKind = args.kind.into();
    let left = SourceUri::parse(&args.left)?.splits()?;
    let right = SourceUri::parse(&args.right)?.splits()?;
    let ooo = crate::options::millis("out-of-orderness", &Some(args.out_of_orderness.clone()))?.unwrap_or(0);
    if args.chunk_lines == 0 {
        return Err(Error::Config("--chunk-lines must be at least 1".into()));
    }
    let mut strategy = WatermarkStrategy::bounded_out_of_orderness(ooo);
    if let Some(idle) = millis("idle-timeout", &args.idle_timeout)? {
        strategy = strategy.with_idleness(idle);
    }
    let late_sink = args.late_output.as_deref().map(LineSink::file).transpose()?;
    let ctx = crate::job_end::context(args.strict, args.max_malformed_ratio, args.dead_letter.as_deref())?;
    let ctx = Arc::new(ctx);
    let sink = ResultSink::new(&args.output, &args.sink, &ctx, &exec)?;
    let (format, chunk) = (sink.format(args.format), args.chunk_lines);
    let json = JsonRecordFormat::new(&args.key_field, &args.time_field);
    let (out_sink, late_out) = (sink.clone(), late_sink.clone());
    let metrics = execute(exec, Arc::clone(&ctx), move |env| {
        let json = json.clone();
        let parser: RecordParser<JsonRecord> = Rc::new(move |line: &str| json.parse(line));
        let source = |splits: &Vec<riffle_connectors::SplitSpec>| {
            TextSource::new(splits.clone()).event_time(strategy).chunk_lines(chunk)
        };
        let l = env
            .text_records(source(&left), Rc::clone(&parser))
            .key_by(|r: &JsonRecord| r.key.clone());
        let r = env
            .text_records(source(&right), parser)
            .key_by(|r: &JsonRecord| r.key.clone());
        let joined: Joined<'_, JsonKey, JsonRecord, JsonRecord> = match shape {
            Shape::Window(w) => l.window_join(r, w, kind),
            Shape::Interval(b) => l.interval_join(r, b, kind),
        };
        out_sink.write(
            joined.rows,
            |r, key| r.key.write_json(key),
            move |_, r, out| format_row(format, r, out),
        );
        if let Some(late) = &late_out {
            let late_line = |side: &'static str| {
                move |ts: i64, r: &JsonRecord, out: &mut Vec<u8>| {
                    let _ = writeln!(out, "{{\"side\":\"{side}\",\"timestamp\":{ts},\"record\":{}}}", r.json);
                }
            };
            joined.late_left.write_side_lines(late.clone(), late_line("left"));
            joined.late_right.write_side_lines(late.clone(), late_line("right"));
        }
    })?;
    sink.finish()?;
    ctx.flush()?;
    if let Some(late) = late_sink {
        late.flush()?;
    }
    crate::job_end::finish("join", crate::job_end::RECORDS, &ctx, metrics, args.max_malformed_ratio)
}
