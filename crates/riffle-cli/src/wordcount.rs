//! `riffle wordcount`: the seed's job. Lines are split on whitespace into words; each word is
//! counted per key and window (or over the whole input without `--window`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use compact_str::CompactString;
use riffle_connectors::{LineSink, SourceUri};
use riffle_core::window::{GlobalWindows, SessionWindows, SlidingWindows, TimeWindows, TumblingWindows, Window};
use riffle_core::{Error, Result, WatermarkStrategy};
use riffle_runtime::{execute, JobContext, SystemClock, TextSource, WindowResult};

use crate::options::{millis, ExecutionArgs};

/// Time characteristic of the job.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeArg {
    /// Records are stamped with the wall clock when read.
    Processing,
    /// Records carry their own time: `<unix-millis><comma, tab or space><text>`.
    Event,
}

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    /// For people: `[start, end) word count`.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `riffle wordcount`.
#[derive(clap::Args, Debug, Clone)]
pub struct WordcountArgs {
    /// Input: socket://HOST:PORT, file://PATH (a file or a folder), - (stdin), generate://words?...
    #[arg(long)]
    pub source: String,
    /// Time characteristic.
    #[arg(long, value_enum, default_value_t = TimeArg::Processing)]
    pub time: TimeArg,
    /// Window size (e.g. 5s). Without it, counts over the whole input.
    #[arg(long)]
    pub window: Option<String>,
    /// Slide of sliding (hopping) windows (e.g. 2s).
    #[arg(long, requires = "window")]
    pub slide: Option<String>,
    /// Session windows with this inactivity gap instead of fixed windows.
    #[arg(long, conflicts_with_all = ["window", "count_window"])]
    pub session_gap: Option<String>,
    /// Count windows: one result per word every N occurrences.
    #[arg(long, conflicts_with = "window")]
    pub count_window: Option<u64>,
    /// Slide of sliding count windows (in occurrences).
    #[arg(long, requires = "count_window")]
    pub count_slide: Option<u64>,
    /// Event time: how far records may be out of order and still be on time.
    #[arg(long)]
    pub out_of_orderness: Option<String>,
    /// Event time: how long a window accepts late records after it fired (each updates it).
    #[arg(long)]
    pub lateness: Option<String>,
    /// Event time: a split without records for this long stops holding the watermark back.
    #[arg(long)]
    pub idle_timeout: Option<String>,
    /// Write records later than the allowed lateness here (JSON lines).
    #[arg(long)]
    pub late_output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
    /// Write results to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also write malformed lines here (JSON lines with origin, line number, error, raw text).
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// Fail on the first malformed line instead of counting and skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Lines per chunk; the watermark advances between chunks.
    #[arg(long, default_value_t = 1024)]
    pub chunk_lines: usize,
    #[command(flatten)]
    pub execution: ExecutionArgs,
}

/// Splits an owned line into words without allocating per word (short words are inline).
/// Words are what `str::split_whitespace` yields; ASCII lines take a byte-scanning path.
struct Words {
    line: String,
    pos: usize,
    ascii: bool,
}

/// `char::is_whitespace` restricted to ASCII (it includes the vertical tab, unlike
/// `u8::is_ascii_whitespace`).
#[inline]
fn ascii_space(b: u8) -> bool {
    b == b' ' || (b'\t'..=b'\r').contains(&b)
}

impl Iterator for Words {
    type Item = CompactString;
    #[inline]
    fn next(&mut self) -> Option<CompactString> {
        if self.ascii {
            let bytes = self.line.as_bytes();
            let mut i = self.pos;
            while i < bytes.len() && ascii_space(bytes[i]) {
                i += 1;
            }
            if i == bytes.len() {
                self.pos = i;
                return None;
            }
            let start = i;
            while i < bytes.len() && !ascii_space(bytes[i]) {
                i += 1;
            }
            self.pos = i;
            return Some(CompactString::from(&self.line[start..i]));
        }
        let rest = &self.line[self.pos..];
        let start = rest.find(|c: char| !c.is_whitespace())?;
        let rest = &rest[start..];
        let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        self.pos += start + len;
        Some(CompactString::from(&rest[..len]))
    }
}

/// Splits a line into its words.
pub fn words(line: String) -> impl Iterator<Item = CompactString> {
    let ascii = line.is_ascii();
    Words { line, pos: 0, ascii }
}

enum Windowing {
    Time(TimeWindows),
    Count { size: u64, slide: u64 },
}

fn json_str(s: &str, out: &mut Vec<u8>) {
    // serde_json escapes exactly what JSON requires.
    let _ = serde_json::to_writer(&mut *out, s);
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

/// Runs the word count.
pub fn run(args: WordcountArgs) -> Result<()> {
    let exec = args.execution.config()?;
    let uri = SourceUri::parse(&args.source)?;
    // Fail fast, with the path, on a missing file (sockets are connected by the reader).
    let splits = uri.splits()?;
    let window = millis("window", &args.window)?;
    let slide = millis("slide", &args.slide)?;
    let gap = millis("session-gap", &args.session_gap)?;
    let ooo = millis("out-of-orderness", &args.out_of_orderness)?.unwrap_or(0);
    let lateness = millis("lateness", &args.lateness)?.unwrap_or(0);
    let idle = millis("idle-timeout", &args.idle_timeout)?;
    if args.time == TimeArg::Processing
        && (args.out_of_orderness.is_some() || args.lateness.is_some() || args.idle_timeout.is_some())
    {
        return Err(Error::Config(
            "--out-of-orderness, --lateness and --idle-timeout need --time event".into(),
        ));
    }
    let windowing = match (window, slide, gap, args.count_window) {
        (_, _, _, Some(size)) => {
            let slide = args.count_slide.unwrap_or(size);
            riffle_core::count_window::CountWindows::sliding(size, slide)?;
            Windowing::Count { size, slide }
        }
        (_, _, Some(gap), None) => Windowing::Time(SessionWindows::with_gap_millis(gap)?.into()),
        (Some(size), None, None, None) => Windowing::Time(TumblingWindows::of_millis(size)?.into()),
        (Some(size), Some(slide), None, None) => Windowing::Time(SlidingWindows::of_millis(size, slide)?.into()),
        (None, _, None, None) => Windowing::Time(GlobalWindows.into()),
    };
    let mut strategy = WatermarkStrategy::bounded_out_of_orderness(ooo);
    if let Some(idle) = idle {
        strategy = strategy.with_idleness(idle);
    }
    let sink = match &args.output {
        Some(path) => LineSink::file(path)?,
        None => LineSink::stdout(),
    };
    let late_sink = args.late_output.as_deref().map(LineSink::file).transpose()?;
    let late_flush = late_sink.clone();
    let mut ctx = JobContext::new(args.strict, Arc::new(SystemClock));
    if let Some(path) = &args.dead_letter {
        ctx = ctx.with_dead_letter(LineSink::file(path)?);
    }
    let ctx = Arc::new(ctx);
    let format = args.format;
    let time = args.time;
    let chunk_lines = args.chunk_lines;
    let lateness_d = std::time::Duration::from_millis(lateness as u64);
    let windowing = Arc::new(windowing);
    let out_sink = sink.clone();
    let metrics = execute(exec, Arc::clone(&ctx), move |env| {
        let mut source = TextSource::new(splits.clone()).chunk_lines(chunk_lines);
        if time == TimeArg::Event {
            source = source.event_time(strategy);
        }
        let keyed = env.text(source).flat_map(words).key_by(|w: &CompactString| w.clone());
        let results = match &*windowing {
            Windowing::Time(w) => {
                let (results, late) = keyed
                    .window(*w)
                    .allowed_lateness(lateness_d)
                    .aggregate_with_late(riffle_core::aggregate::Count);
                if let Some(late_sink) = &late_sink {
                    late.write_lines(late_sink.clone(), |ts, word, out| {
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
        results.write_lines(out_sink.clone(), move |_, r, out| format_result(format, r, out));
    })?;
    sink.flush()?;
    ctx.flush()?;
    if let Some(late) = late_flush {
        late.flush()?;
    }
    eprintln!(
        "riffle: wordcount done: {} records read, {} results, {} malformed, {} late",
        metrics.records_in, metrics.records_out, metrics.malformed, metrics.late
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_any_whitespace() {
        for line in ["  a bb\tccc  ", "x\u{0B}y\u{0C}z\r\n", "é  ü\u{2003}ß", "", "   "] {
            let got: Vec<_> = words(line.to_string()).collect();
            let expect: Vec<_> = line.split_whitespace().collect();
            assert_eq!(got, expect, "{line:?}");
        }
        assert_eq!(words(String::new()).count(), 0);
    }
}
