//! What the workers of one process share while a job runs: counters, errors, the clock, and
//! the two ways a job ends before its input does.
//!
//! * **Failure** ([`JobContext::fail`]): an error (a malformed record in strict mode, a broken
//!   connection). Sources stop, no checkpoint completes after it, and the job returns the error.
//! * **Stop** ([`JobContext::request_stop`]): SIGINT/SIGTERM or a reader that closed stdout.
//!   Sources record where they are (a final checkpoint when the job checkpoints), sinks write
//!   and commit what was produced, and the job ends normally, as Flink's stop-with-savepoint.
//!
//! Either way the input has not ended: windows that are still open are not fired as if they
//! were complete ([`JobContext::is_halted`]); with checkpoints they stay in the final one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use riffle_core::Error;

/// A source of wall-clock time, injected so that tests can control it.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the wall clock itself, injected everywhere else
    fn now_millis(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to, for tests.
///
/// ```
/// use riffle_runtime::context::{Clock, ManualClock};
/// let c = ManualClock::new(1_000);
/// c.advance(500);
/// assert_eq!(c.now_millis(), 1_500);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `now` ms.
    pub fn new(now: i64) -> Self {
        ManualClock(AtomicU64::new(now as u64))
    }
    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst) as i64
    }
}

/// Counters of a job, summed over the workers of this process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records produced by sources.
    pub records_in: AtomicU64,
    /// Input lines or records that could not be parsed.
    pub malformed: AtomicU64,
    /// Records dropped by windows because they were later than the allowed lateness.
    pub late: AtomicU64,
    /// Records written by sinks.
    pub records_out: AtomicU64,
}

/// A snapshot of [`Metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetricsSnapshot {
    /// Records produced by sources.
    pub records_in: u64,
    /// Input lines or records that could not be parsed.
    pub malformed: u64,
    /// Records dropped as too late.
    pub late: u64,
    /// Records written by sinks.
    pub records_out: u64,
}

impl MetricsSnapshot {
    /// The counters of two processes together.
    pub fn merge(self, other: MetricsSnapshot) -> MetricsSnapshot {
        MetricsSnapshot {
            records_in: self.records_in + other.records_in,
            malformed: self.malformed + other.malformed,
            late: self.late + other.late,
            records_out: self.records_out + other.records_out,
        }
    }
}

/// How many malformed records are reported one by one before only counting.
const MALFORMED_REPORT_LIMIT: u64 = 20;

/// State shared by the workers of a process for one job.
pub struct JobContext {
    metrics: Metrics,
    errors: Mutex<Vec<Error>>,
    cancelled: AtomicBool,
    /// Set to stop the job cleanly; shared with whoever may ask for it (a signal handler).
    stop: Arc<AtomicBool>,
    /// Why the job was asked to stop, when it was by [`JobContext::request_stop`].
    stop_reason: Mutex<Option<String>>,
    /// Workers of this process that have finished the job's dataflow.
    finished_workers: std::sync::atomic::AtomicUsize,
    /// The counters summed over every process (on process 0 of a multi-process job).
    job_total: Mutex<Option<MetricsSnapshot>>,
    strict: bool,
    clock: Arc<dyn Clock>,
    dead_letter: Option<riffle_connectors::LineSink>,
    state: Mutex<std::collections::BTreeMap<String, Arc<StateGauge>>>,
    checkpoints: Option<Arc<crate::checkpoint::CheckpointStore>>,
    /// Per source operator: the highest watermark a worker of this process with active splits
    /// has reached (see `source::split_source` on idleness).
    source_watermarks: Mutex<std::collections::BTreeMap<String, Arc<std::sync::atomic::AtomicI64>>>,
}

/// The state size of one stateful operator, in rows, summed over this process's workers:
/// now and at its highest.
#[derive(Debug, Default)]
pub struct StateGauge {
    current: std::sync::atomic::AtomicI64,
    peak: std::sync::atomic::AtomicI64,
}

impl StateGauge {
    /// Records that one worker's state changed from `before` to `after` rows.
    pub fn update(&self, before: usize, after: usize) {
        if before == after {
            return;
        }
        let delta = after as i64 - before as i64;
        let now = self.current.fetch_add(delta, Ordering::Relaxed) + delta;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Rows held now.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Relaxed).max(0) as u64
    }

    /// The most rows held at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed).max(0) as u64
    }
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("metrics", &self.metrics)
            .field("strict", &self.strict)
            .finish()
    }
}

impl Default for JobContext {
    fn default() -> Self {
        JobContext::new(false, Arc::new(SystemClock))
    }
}

impl JobContext {
    /// A context. With `strict`, a malformed record fails the job instead of being skipped.
    pub fn new(strict: bool, clock: Arc<dyn Clock>) -> Self {
        JobContext {
            metrics: Metrics::default(),
            errors: Mutex::new(Vec::new()),
            cancelled: AtomicBool::new(false),
            stop: Arc::new(AtomicBool::new(false)),
            stop_reason: Mutex::new(None),
            finished_workers: std::sync::atomic::AtomicUsize::new(0),
            job_total: Mutex::new(None),
            strict,
            clock,
            dead_letter: None,
            state: Mutex::new(std::collections::BTreeMap::new()),
            checkpoints: None,
            source_watermarks: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// The watermark that the workers of this process with active splits of source `name`
    /// have reached (the highest of them), shared by those workers.
    pub(crate) fn source_watermark(&self, name: &str) -> Arc<std::sync::atomic::AtomicI64> {
        let mut map = self.source_watermarks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry(name.to_string())
                .or_insert_with(|| Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN))),
        )
    }

    /// Takes consistent checkpoints into `store` (and restores from it: the store has already
    /// loaded its newest intact checkpoint).
    pub fn with_checkpoints(mut self, store: crate::checkpoint::CheckpointStore) -> Self {
        self.checkpoints = Some(Arc::new(store));
        self
    }

    /// The checkpoint store, when the job checkpoints.
    pub fn checkpoints(&self) -> Option<&Arc<crate::checkpoint::CheckpointStore>> {
        self.checkpoints.as_ref()
    }

    /// The state gauge of the operator named `name` (shared by its instances on every worker
    /// of this process).
    pub fn state_gauge(&self, name: &str) -> Arc<StateGauge> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(state.entry(name.to_string()).or_default())
    }

    /// Every stateful operator's state size: (name, rows now, peak rows).
    pub fn state_sizes(&self) -> Vec<(String, u64, u64)> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.iter().map(|(n, g)| (n.clone(), g.current(), g.peak())).collect()
    }

    /// Also writes every malformed record to `sink`, one JSON object per line:
    /// `{"origin":…,"line":…,"error":…,"raw":…}` (the raw bytes decoded lossily as UTF-8).
    pub fn with_dead_letter(mut self, sink: riffle_connectors::LineSink) -> Self {
        self.dead_letter = Some(sink);
        self
    }

    /// Flushes the dead-letter output, if any.
    pub fn flush(&self) -> riffle_core::Result<()> {
        self.dead_letter.as_ref().map_or(Ok(()), |s| s.flush())
    }

    /// The job's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let m = &self.metrics;
        MetricsSnapshot {
            records_in: m.records_in.load(Ordering::Relaxed),
            malformed: m.malformed.load(Ordering::Relaxed),
            late: m.late.load(Ordering::Relaxed),
            records_out: m.records_out.load(Ordering::Relaxed),
        }
    }

    /// The wall clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Records a failure and asks every source to stop.
    pub fn fail(&self, error: Error) {
        tracing::debug!("job failed: {error}");
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).push(error);
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether the job has failed: sources stop and no checkpoint completes any more.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Stops the job when `flag` is set (by a signal handler, say), as
    /// [`request_stop`](Self::request_stop) does.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use riffle_runtime::JobContext;
    /// let flag = Arc::new(AtomicBool::new(false));
    /// let ctx = JobContext::default().with_stop_flag(Arc::clone(&flag));
    /// assert!(!ctx.stop_requested());
    /// flag.store(true, Ordering::SeqCst);
    /// assert!(ctx.stop_requested() && ctx.is_halted() && !ctx.is_cancelled());
    /// ```
    pub fn with_stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = flag;
        self
    }

    /// Asks the job to stop cleanly, for `reason` (shown in the log and the summary): every
    /// source records where it is and ends (with checkpoints, that is the final checkpoint),
    /// sinks write and commit what was produced, open windows are kept, not fired.
    pub fn request_stop(&self, reason: &str) {
        {
            let mut r = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
            if r.is_none() {
                tracing::info!("stopping: {reason}");
                *r = Some(reason.to_string());
            }
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether the job was asked to stop before its input ends.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Why the job stopped before its input ended, if it did.
    pub fn stop_reason(&self) -> Option<String> {
        if !self.stop_requested() {
            return None;
        }
        let r = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
        Some(r.clone().unwrap_or_else(|| "interrupted by a signal".to_string()))
    }

    /// Whether the job ends before its input does (it failed or was stopped): an empty
    /// frontier then does not mean that every window is complete.
    pub fn is_halted(&self) -> bool {
        self.is_cancelled() || self.stop_requested()
    }

    /// Counts a worker that has finished the dataflow; true for the last one of `workers`.
    pub(crate) fn worker_finished(&self, workers: usize) -> bool {
        self.finished_workers.fetch_add(1, Ordering::AcqRel) + 1 == workers
    }

    /// Records the counters summed over every process of the job.
    pub(crate) fn set_job_total(&self, total: MetricsSnapshot) {
        *self.job_total.lock().unwrap_or_else(|p| p.into_inner()) = Some(total);
    }

    /// The counters summed over every process of a multi-process job, on process 0 once the
    /// job has ended (`None` elsewhere and for one process).
    pub fn job_total(&self) -> Option<MetricsSnapshot> {
        *self.job_total.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the recorded errors.
    pub fn take_errors(&self) -> Vec<Error> {
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Counts a malformed record, reports it with its position (the first few one by one),
    /// writes it to the dead-letter output if there is one, and in strict mode fails the job.
    pub fn malformed(&self, origin: &str, line: u64, message: &str, raw: &[u8]) {
        let n = self.metrics.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(sink) = &self.dead_letter {
            let record = serde_json::json!({
                "origin": origin,
                "line": line,
                "error": message,
                "raw": String::from_utf8_lossy(raw),
            });
            if let Err(e) = sink.write_batch(format!("{record}\n").as_bytes()) {
                self.fail(e);
            }
        }
        let error = Error::Malformed {
            origin: origin.to_string(),
            line,
            message: message.to_string(),
        };
        if self.strict {
            self.fail(error);
        } else if n <= MALFORMED_REPORT_LIMIT {
            tracing::warn!("skipped malformed record: {error}");
            if n == MALFORMED_REPORT_LIMIT {
                tracing::warn!("further malformed records are counted but not reported one by one");
            }
        }
    }
}
