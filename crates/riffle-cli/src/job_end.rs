//! How a job of the CLI ends: a clean stop on SIGINT/SIGTERM, the summary line, and the check
//! that the input was not mostly malformed.
//!
//! A streaming job runs until its input ends or someone stops it. The first SIGINT or SIGTERM
//! asks the job to stop cleanly ([`JobContext::request_stop`]): the sources record where they
//! are (the final checkpoint, with `--checkpoint-dir`), the sinks write and commit what was
//! produced, the summary is printed and the process exits 0, as Flink's stop-with-savepoint.
//! A second signal exits at once (130 for SIGINT, 143 for SIGTERM).
//!
//! A job that skipped most of its input as malformed has not done what was asked (a wrong
//! `--input-format`, a misspelt field name): it fails once the share of malformed records is
//! above `--max-malformed-ratio`, after its results are written.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use riffle_core::{Error, Result};
use riffle_runtime::context::MetricsSnapshot;
use riffle_runtime::JobContext;

/// The flag the signal handlers set, installed on first use.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The process's stop flag: set by the first SIGINT or SIGTERM. Installing the handlers also
/// makes a second signal exit at once.
pub fn stop_flag() -> Arc<AtomicBool> {
    Arc::clone(STOP.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for (signal, code) in [(signal_hook::consts::SIGINT, 130), (signal_hook::consts::SIGTERM, 143)] {
            // The conditional exit is registered first: it sees the flag as the previous
            // signal left it, so only a second signal exits.
            let installed = signal_hook::flag::register_conditional_shutdown(signal, code, Arc::clone(&flag))
                .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&flag)));
            if let Err(e) = installed {
                tracing::warn!("cannot handle signal {signal} ({e}): it will end the job without a clean stop");
            }
        }
        flag
    }))
}

/// A job's context for the CLI: strict or not, its malformed records also written to
/// `dead_letter`, stopped by the signals of [`stop_flag`]. Checks `--max-malformed-ratio`
/// (`max_malformed_ratio`), which [`finish`] applies, before creating the dead-letter file.
pub fn context(strict: bool, max_malformed_ratio: f64, dead_letter: Option<&std::path::Path>) -> Result<JobContext> {
    malformed_ratio(max_malformed_ratio)?;
    let ctx = JobContext::new(strict, Arc::new(riffle_runtime::SystemClock)).with_stop_flag(stop_flag());
    Ok(match dead_letter {
        Some(path) => ctx.with_dead_letter(riffle_connectors::LineSink::file(path)?),
        None => ctx,
    })
}

/// What a job reads and writes, for its summary: "records read, results" or "events read,
/// rows".
pub struct Nouns {
    /// What the input is made of.
    pub input: &'static str,
    /// What the output is made of.
    pub output: &'static str,
}

/// Records and results.
pub const RECORDS: Nouns = Nouns {
    input: "records",
    output: "results",
};

/// Prints the summary of a job that ran to its end or was stopped (on process 0 of several,
/// also the total of every process), then fails if more than `max_malformed_ratio` of the
/// records read were malformed.
pub fn finish(
    job: &str,
    nouns: Nouns,
    ctx: &JobContext,
    metrics: MetricsSnapshot,
    max_malformed_ratio: f64,
) -> Result<()> {
    let line = |m: &MetricsSnapshot| {
        format!(
            "{} {} read, {} {}, {} malformed, {} late",
            m.records_in, nouns.input, m.records_out, nouns.output, m.malformed, m.late
        )
    };
    let how = match ctx.stop_reason() {
        None => "done".to_string(),
        Some(reason) => {
            let kept = match ctx.checkpoints().and_then(|s| s.completed_epoch(u64::MAX)) {
                Some(epoch) => format!("open windows are kept in checkpoint {epoch}"),
                None => "open windows were not emitted (with --checkpoint-dir they would be kept)".to_string(),
            };
            format!("stopped ({reason}; {kept})")
        }
    };
    let total = ctx.job_total();
    match total {
        Some(_) => eprintln!("riffle: {job} {how}: this process: {}", line(&metrics)),
        None => eprintln!("riffle: {job} {how}: {}", line(&metrics)),
    }
    if let Some(total) = &total {
        eprintln!("riffle: {job} {how}: all processes: {}", line(total));
    }
    check_malformed(&total.unwrap_or(metrics), max_malformed_ratio)
}

/// Fails when more than `max_ratio` of the records read were malformed.
fn check_malformed(m: &MetricsSnapshot, max_ratio: f64) -> Result<()> {
    let read = m.records_in + m.malformed;
    if m.malformed == 0 || (m.malformed as f64) <= max_ratio * read as f64 {
        return Ok(());
    }
    Err(Error::Execution(format!(
        "{} of {read} input records ({:.0} %) were malformed, more than --max-malformed-ratio {max_ratio}: is the input format (--input-format, field names) right? The first ones are reported above",
        m.malformed,
        100.0 * m.malformed as f64 / read as f64
    )))
}

/// Checks `--max-malformed-ratio`.
pub fn malformed_ratio(value: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(Error::Config(format!(
            "--max-malformed-ratio must be between 0 and 1 (1: never fail), got {value}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(records_in: u64, malformed: u64) -> MetricsSnapshot {
        MetricsSnapshot {
            records_in,
            malformed,
            ..Default::default()
        }
    }

    #[test]
    fn a_mostly_malformed_input_fails_and_a_few_bad_lines_do_not() {
        assert!(check_malformed(&m(0, 0), 0.5).is_ok());
        assert!(check_malformed(&m(10, 10), 0.5).is_ok());
        assert!(check_malformed(&m(9, 11), 0.5).is_err());
        let e = check_malformed(&m(0, 3), 0.5).unwrap_err().to_string();
        assert!(e.contains("3 of 3") && e.contains("100 %"), "{e}");
        assert!(check_malformed(&m(0, 3), 1.0).is_ok());
        assert!(check_malformed(&m(1_000, 1), 0.0).is_err());
    }

    #[test]
    fn the_ratio_is_a_share() {
        assert!(malformed_ratio(0.5).is_ok());
        assert!(malformed_ratio(1.5).is_err());
        assert!(malformed_ratio(-0.1).is_err());
    }
}
