//! Restart strategies: whether a failed job is started again, after how long, and when to give
//! up. Flink's strategies with Flink's names and parameters (`fixed-delay`, `failure-rate`,
//! `none`), as plain decisions over failure times ([`RestartTracker`]), so that they are
//! tested without a job; [`run_with_restarts`] is the loop for jobs written in Rust (each run
//! restores from the newest checkpoint), and the CLI's `riffle supervise` applies the same
//! tracker to the processes of a job.
//!
//! ```
//! use riffle_runtime::restart::{RestartDecision, RestartStrategy, RestartTracker};
//! use std::time::Duration;
//!
//! let strategy: RestartStrategy = "fixed-delay:attempts=2,delay=1s".parse().unwrap();
//! let mut tracker = RestartTracker::new(strategy);
//! assert_eq!(tracker.on_failure(0), RestartDecision::Restart { after: Duration::from_secs(1) });
//! assert_eq!(tracker.on_failure(5_000), RestartDecision::Restart { after: Duration::from_secs(1) });
//! assert!(matches!(tracker.on_failure(9_000), RestartDecision::GiveUp { .. }));
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use riffle_core::{Error, Result};

/// When a failed job is restarted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartStrategy {
    /// Never: the first failure is the job's (Flink's `none`).
    None,
    /// Up to `attempts` restarts, each `delay` after the failure (Flink's `fixed-delay`).
    FixedDelay {
        /// Restarts before giving up.
        attempts: u32,
        /// Time between a failure and the restart.
        delay: Duration,
    },
    /// Restarts, each `delay` after the failure, until more than `max_failures` failures fall
    /// within one `interval` (Flink's `failure-rate`).
    FailureRate {
        /// Failures tolerated within `interval`.
        max_failures: u32,
        /// The window over which failures are counted.
        interval: Duration,
        /// Time between a failure and the restart.
        delay: Duration,
    },
}

impl Default for RestartStrategy {
    /// Flink's default for a job with checkpoints before 1.19: restart without end, 1 s apart.
    fn default() -> Self {
        RestartStrategy::FixedDelay {
            attempts: u32::MAX,
            delay: Duration::from_secs(1),
        }
    }
}

impl fmt::Display for RestartStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartStrategy::None => write!(f, "none"),
            RestartStrategy::FixedDelay { attempts, delay } => {
                write!(f, "fixed-delay:attempts={attempts},delay={}ms", delay.as_millis())
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
            } => write!(
                f,
                "failure-rate:max={max_failures},interval={}ms,delay={}ms",
                interval.as_millis(),
                delay.as_millis()
            ),
        }
    }
}

impl FromStr for RestartStrategy {
    type Err = Error;

    /// `none`, `fixed-delay:attempts=A,delay=D` or `failure-rate:max=M,interval=I,delay=D`
    /// (durations as `500ms`, `10s`, `1m`; a parameter left out takes Flink's default:
    /// attempts without end, max 1, interval 1m, delay 1s).
    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: String| {
            Error::Config(format!(
                "--restart-strategy '{text}': {why} (expected none, fixed-delay:attempts=A,delay=D or failure-rate:max=M,interval=I,delay=D)"
            ))
        };
        let (name, params) = text.split_once(':').unwrap_or((text, ""));
        let mut pairs = Vec::new();
        for pair in params.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("'{pair}' is not name=value")))?;
            pairs.push((k.trim(), v.trim()));
        }
        let duration = |v: &str| -> Result<Duration> {
            let ms = riffle_core::duration::parse_millis(v).map_err(|e| bad(e.to_string()))?;
            Ok(Duration::from_millis(ms.max(0) as u64))
        };
        let count = |v: &str| -> Result<u32> { v.parse().map_err(|_| bad(format!("'{v}' is not a count"))) };
        let unknown = |k: &str| bad(format!("{name} has no parameter '{k}'"));
        match name {
            "none" | "off" | "disable" => match pairs.first() {
                Some((k, _)) => Err(unknown(k)),
                None => Ok(RestartStrategy::None),
            },
            "fixed-delay" | "fixeddelay" => {
                let (mut attempts, mut delay) = (u32::MAX, Duration::from_secs(1));
                for (k, v) in pairs {
                    match k {
                        "attempts" => attempts = count(v)?,
                        "delay" => delay = duration(v)?,
                        _ => return Err(unknown(k)),
                    }
                }
                Ok(RestartStrategy::FixedDelay { attempts, delay })
            }
            "failure-rate" | "failurerate" => {
                let (mut max_failures, mut interval, mut delay) = (1, Duration::from_secs(60), Duration::from_secs(1));
                for (k, v) in pairs {
                    match k {
                        "max" | "max-failures-per-interval" => max_failures = count(v)?,
                        "interval" | "failure-rate-interval" => interval = duration(v)?,
                        "delay" => delay = duration(v)?,
                        _ => return Err(unknown(k)),
                    }
                }
                Ok(RestartStrategy::FailureRate {
                    max_failures,
                    interval,
                    delay,
                })
            }
            _ => Err(bad(format!("unknown strategy '{name}'"))),
        }
    }
}

/// What to do after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start the job again after this delay.
    Restart {
        /// The delay.
        after: Duration,
    },
    /// Do not: the job has failed. `reason` says which limit was reached.
    GiveUp {
        /// Why the strategy gives up.
        reason: String,
    },
}

/// A strategy applied to a job's failures as they happen.
#[derive(Clone, Debug)]
pub struct RestartTracker {
    strategy: RestartStrategy,
    restarts: u64,
    /// Failure times (ms on any monotonic clock) within the failure-rate interval.
    recent: VecDeque<u64>,
}

impl RestartTracker {
    /// A tracker that has seen no failure.
    pub fn new(strategy: RestartStrategy) -> Self {
        RestartTracker {
            strategy,
            restarts: 0,
            recent: VecDeque::new(),
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> &RestartStrategy {
        &self.strategy
    }

    /// Restarts decided so far.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The job failed at `now_ms` (a monotonic clock in milliseconds): restart or give up.
    pub fn on_failure(&mut self, now_ms: u64) -> RestartDecision {
        let decision = match &self.strategy {
            RestartStrategy::None => RestartDecision::GiveUp {
                reason: "the restart strategy is none".into(),
            },
            RestartStrategy::FixedDelay { attempts, delay } => {
                if self.restarts >= u64::from(*attempts) {
                    RestartDecision::GiveUp {
                        reason: format!("fixed-delay allows {attempts} restart(s), all used"),
                    }
                } else {
                    RestartDecision::Restart { after: *delay }
                }
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
            } => {
                let span = interval.as_millis() as u64;
                self.recent.push_back(now_ms);
                while self.recent.front().is_some_and(|&t| now_ms.saturating_sub(t) > span) {
                    self.recent.pop_front();
                }
                if self.recent.len() as u64 > u64::from(*max_failures) {
                    RestartDecision::GiveUp {
                        reason: format!(
                            "{} failures within {} ms, more than failure-rate's max of {max_failures}",
                            self.recent.len(),
                            span
                        ),
                    }
                } else {
                    RestartDecision::Restart { after: *delay }
                }
            }
        };
        if matches!(decision, RestartDecision::Restart { .. }) {
            self.restarts += 1;
        }
        decision
    }
}

/// Whether a failure is worth a restart: a configuration error or a fenced process (a newer
/// attempt runs) fails the same way again, as Flink's `SuppressRestartsException`.
pub fn suppresses_restart(error: &Error) -> bool {
    matches!(error, Error::Config(_) | Error::Fenced(_))
}

/// Runs `run` (a whole job: open the checkpoint store, build the context, execute) and, when it
/// fails, runs it again as `strategy` says, each run restoring from the newest checkpoint the
/// previous ones left. `run` gets the number of the run (0, 1, …). Each restart is logged with
/// its cause. Returns the first successful run's value, or the last error once the strategy
/// gives up (or at once for an error that [`suppresses_restart`]), saying why.
///
/// ```
/// use riffle_runtime::restart::{run_with_restarts, RestartStrategy};
/// let strategy: RestartStrategy = "fixed-delay:attempts=3,delay=0s".parse().unwrap();
/// let value = run_with_restarts(&strategy, |run| {
///     if run < 2 {
///         Err(riffle_core::Error::Execution(format!("run {run} crashed")))
///     } else {
///         Ok(run)
///     }
/// });
/// assert_eq!(value.unwrap(), 2);
/// ```
pub fn run_with_restarts<T>(strategy: &RestartStrategy, mut run: impl FnMut(u64) -> Result<T>) -> Result<T> {
    // A restart delay is wall time.
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    let mut tracker = RestartTracker::new(strategy.clone());
    let mut attempt = 0;
    loop {
        let error = match run(attempt) {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        if suppresses_restart(&error) {
            return Err(error);
        }
        match tracker.on_failure(start.elapsed().as_millis() as u64) {
            RestartDecision::Restart { after } => {
                tracing::warn!(
                    "run {attempt} of the job failed ({error}); restarting in {} ms from the newest checkpoint (restart {})",
                    after.as_millis(),
                    tracker.restarts()
                );
                std::thread::sleep(after);
                attempt += 1;
            }
            RestartDecision::GiveUp { reason } => {
                return Err(Error::Execution(format!(
                    "giving up after {} restart(s): {reason}; the last failure: {error}",
                    tracker.restarts()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_with_flinks_names_and_defaults() {
        let s = |t: &str| t.parse::<RestartStrategy>();
        assert_eq!(s("none").unwrap(), RestartStrategy::None);
        assert_eq!(
            s("fixed-delay:attempts=3,delay=500ms").unwrap(),
            RestartStrategy::FixedDelay {
                attempts: 3,
                delay: Duration::from_millis(500)
            }
        );
        assert_eq!(
            s("fixed-delay").unwrap(),
            RestartStrategy::FixedDelay {
                attempts: u32::MAX,
                delay: Duration::from_secs(1)
            }
        );
        assert_eq!(
            s("failure-rate:max=2,interval=1m,delay=2s").unwrap(),
            RestartStrategy::FailureRate {
                max_failures: 2,
                interval: Duration::from_secs(60),
                delay: Duration::from_secs(2)
            }
        );
        for bad in [
            "sometimes",
            "fixed-delay:tries=3",
            "fixed-delay:attempts=x",
            "none:delay=1s",
            "fixed-delay:attempts",
        ] {
            let e = s(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        // Display parses back to the same strategy.
        for t in [
            "none",
            "fixed-delay:attempts=3,delay=500ms",
            "failure-rate:max=2,interval=1m,delay=2s",
        ] {
            assert_eq!(s(&s(t).unwrap().to_string()).unwrap(), s(t).unwrap());
        }
    }

    #[test]
    fn none_gives_up_at_once_and_fixed_delay_after_its_attempts() {
        let mut none = RestartTracker::new(RestartStrategy::None);
        assert!(matches!(none.on_failure(0), RestartDecision::GiveUp { .. }));
        let mut fixed = RestartTracker::new("fixed-delay:attempts=3,delay=2s".parse().unwrap());
        for t in 0..3 {
            assert_eq!(
                fixed.on_failure(t * 1000),
                RestartDecision::Restart {
                    after: Duration::from_secs(2)
                }
            );
        }
        assert!(matches!(fixed.on_failure(10_000), RestartDecision::GiveUp { .. }));
        assert_eq!(fixed.restarts(), 3);
    }

    #[test]
    fn failure_rate_counts_failures_within_its_interval() {
        let mut rate = RestartTracker::new("failure-rate:max=2,interval=10s,delay=0s".parse().unwrap());
        let restarts = |d: RestartDecision| matches!(d, RestartDecision::Restart { .. });
        assert!(restarts(rate.on_failure(0)));
        assert!(restarts(rate.on_failure(5_000)));
        // 0 has left the interval by 10 001: two failures within it.
        assert!(restarts(rate.on_failure(10_001)));
        assert!(restarts(rate.on_failure(20_002)), "5 000 and 10 001 have left it");
        // Three within 10 s: 20 002, 21 000, 22 000.
        assert!(restarts(rate.on_failure(21_000)));
        assert!(matches!(rate.on_failure(22_000), RestartDecision::GiveUp { .. }));
    }

    #[test]
    fn the_loop_restarts_until_success_and_not_on_configuration_errors() {
        let strategy: RestartStrategy = "fixed-delay:attempts=1,delay=0s".parse().unwrap();
        let e = run_with_restarts(&strategy, |run| -> Result<()> {
            Err(Error::Execution(format!("crash {run}")))
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("giving up after 1 restart(s)") && e.contains("crash 1"),
            "{e}"
        );
        let mut runs = 0;
        let e = run_with_restarts(&strategy, |_| -> Result<()> {
            runs += 1;
            Err(Error::Config("bad window".into()))
        })
        .unwrap_err();
        assert_eq!(runs, 1, "a configuration error is not retried: {e}");
    }
}
