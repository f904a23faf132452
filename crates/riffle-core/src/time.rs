//! Event time and watermarks.
//!
//! Every record carries its **event time**: milliseconds since the Unix epoch
//! ([`EventTime`]). A **watermark** `W` is a promise that no more records with event time
//! below `W` will arrive (records that do arrive below it are *behind the watermark*: see
//! [`crate::window_state`] for what happens to them). A window `[start, end)` is complete,
//! and fires, once the watermark reaches `end`.
//!
//! Riffle's watermark is Flink's plus one: Flink's bounded-out-of-orderness generator emits
//! `max_seen - ooo - 1` meaning "records at or below this are late"; Riffle's
//! [`WatermarkGenerator`] emits `max_seen - ooo` meaning "records below this are late". The
//! windows that fire and the records that are late are the same.
//!
//! Watermarks are generated per source split and advance *between chunks* of input (as
//! Flink emits them periodically rather than after every record), which makes them a pure
//! function of the input: the same file gives the same watermarks whatever the number of
//! workers.

use serde::{Deserialize, Serialize};

/// Event time: milliseconds since the Unix epoch.
pub type EventTime = i64;

/// A watermark: all records with an event time below it have arrived.
pub type Watermark = i64;

/// The watermark before any record has been seen.
pub const WATERMARK_MIN: Watermark = i64::MIN;
/// The watermark of a finished input: every window may fire.
pub const WATERMARK_MAX: Watermark = i64::MAX;

/// The earliest event time a record may carry: −2⁶² ms, about 146 million years before 1970.
///
/// Event times are `i64` milliseconds, but not every `i64` is usable: a window's end, its
/// cleanup time (end + allowed lateness) and the watermark derived from it must be
/// representable and must stay clear of [`WATERMARK_MIN`] and [`WATERMARK_MAX`], which mean
/// "nothing seen yet" and "input finished". Sources reject records outside
/// `[EVENT_TIME_MIN, EVENT_TIME_MAX]` as malformed (see [`check_event_time`]), and durations are
/// at most [`MAX_DURATION`], so that `ts ± size ± slide ± lateness` never overflows.
pub const EVENT_TIME_MIN: EventTime = -(1 << 62);
/// The latest event time a record may carry: 2⁶² − 1 ms (see [`EVENT_TIME_MIN`]).
pub const EVENT_TIME_MAX: EventTime = (1 << 62) - 1;
/// The longest duration a window size, slide, session gap, lateness or out-of-orderness may
/// have: 2⁶⁰ ms, about 36 million years. With event times in
/// `[EVENT_TIME_MIN, EVENT_TIME_MAX]`, window arithmetic on such durations cannot overflow.
pub const MAX_DURATION: i64 = 1 << 60;

/// Checks that `ts` lies in `[EVENT_TIME_MIN, EVENT_TIME_MAX]`; the error says why a record
/// with this event time cannot be windowed (sources report it as malformed).
///
/// ```
/// use riffle_core::time::{check_event_time, EVENT_TIME_MAX};
/// assert_eq!(check_event_time(1_700_000_000_000), Ok(1_700_000_000_000));
/// assert!(check_event_time(EVENT_TIME_MAX + 1).is_err());
/// assert!(check_event_time(i64::MIN).is_err());
/// ```
pub fn check_event_time(ts: EventTime) -> std::result::Result<EventTime, String> {
    if (EVENT_TIME_MIN..=EVENT_TIME_MAX).contains(&ts) {
        Ok(ts)
    } else {
        Err(format!(
            "event time {ts} is outside the supported range [{EVENT_TIME_MIN}, {EVENT_TIME_MAX}] \
             (its window or the watermark would not be representable)"
        ))
    }
}

/// How a source derives watermarks from the event times it sees.
///
/// ```
/// use riffle_core::WatermarkStrategy;
/// let s = WatermarkStrategy::bounded_out_of_orderness(1_000).with_idleness(5_000);
/// assert_eq!(s.out_of_orderness, 1_000);
/// assert_eq!(s.idle_timeout, Some(5_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkStrategy {
    /// How far (ms) a record may trail the highest event time seen and still be on time.
    pub out_of_orderness: i64,
    /// After this long (ms of wall-clock time) without records, a split is idle: it no
    /// longer holds the watermark of its worker back until it produces records again.
    pub idle_timeout: Option<i64>,
}

impl WatermarkStrategy {
    /// Watermark = highest event time seen − `out_of_orderness_ms`.
    pub fn bounded_out_of_orderness(out_of_orderness_ms: i64) -> Self {
        WatermarkStrategy {
            out_of_orderness: out_of_orderness_ms.max(0),
            idle_timeout: None,
        }
    }

    /// Watermark = highest event time seen (records must arrive in order to be on time).
    pub fn monotonous() -> Self {
        Self::bounded_out_of_orderness(0)
    }

    /// Marks a split idle after `idle_timeout_ms` of wall-clock time without records.
    pub fn with_idleness(mut self, idle_timeout_ms: i64) -> Self {
        self.idle_timeout = Some(idle_timeout_ms.max(0));
        self
    }

    /// A new generator following this strategy.
    pub fn generator(&self) -> WatermarkGenerator {
        WatermarkGenerator {
            strategy: *self,
            max_seen: None,
        }
    }
}

/// Tracks the highest event time of one split and derives its watermark.
///
/// ```
/// use riffle_core::{WatermarkGenerator, WatermarkStrategy};
/// let mut g = WatermarkStrategy::bounded_out_of_orderness(100).generator();
/// assert_eq!(g.current(), i64::MIN);
/// g.observe(1_000);
/// g.observe(900); // out of order: does not move the watermark back
/// assert_eq!(g.current(), 900);
/// ```
#[derive(Clone, Debug)]
pub struct WatermarkGenerator {
    strategy: WatermarkStrategy,
    max_seen: Option<EventTime>,
}

impl WatermarkGenerator {
    /// Records that a record with event time `ts` was read.
    #[inline]
    pub fn observe(&mut self, ts: EventTime) {
        self.max_seen = Some(self.max_seen.map_or(ts, |m| m.max(ts)));
    }

    /// The current watermark: highest event time seen − out-of-orderness.
    pub fn current(&self) -> Watermark {
        match self.max_seen {
            None => WATERMARK_MIN,
            Some(m) => m.saturating_sub(self.strategy.out_of_orderness),
        }
    }

    /// The highest event time seen (what a checkpoint stores to resume the same watermarks).
    pub fn max_seen(&self) -> Option<EventTime> {
        self.max_seen
    }

    /// Resumes from a checkpointed [`max_seen`](Self::max_seen).
    pub fn restore(&mut self, max_seen: Option<EventTime>) {
        self.max_seen = max_seen;
    }

    /// The strategy this generator follows.
    pub fn strategy(&self) -> &WatermarkStrategy {
        &self.strategy
    }
}

/// Floor division for event times, correct for negative times. Saturates at `i64::MIN`
/// when the multiple of `step` below `ts` is not representable; `step` must be positive.
///
/// ```
/// assert_eq!(riffle_core::time::floor_to(-1, 5), -5);
/// assert_eq!(riffle_core::time::floor_to(7, 5), 5);
/// ```
#[inline]
pub fn floor_to(ts: EventTime, step: i64) -> EventTime {
    // `ts - rem` underflows only for `ts` within `step` of `i64::MIN`.
    ts.checked_sub(ts.rem_euclid(step)).unwrap_or(i64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_trails_the_maximum_by_the_out_of_orderness() {
        let mut g = WatermarkStrategy::bounded_out_of_orderness(1_000).generator();
        assert_eq!(g.current(), WATERMARK_MIN, "no records, no watermark");
        let mut expected_max = i64::MIN;
        for ts in [5_000, 4_000, 7_500, 7_000, 2_000, 9_000] {
            g.observe(ts);
            expected_max = expected_max.max(ts);
            assert_eq!(g.current(), expected_max - 1_000);
        }
    }

    #[test]
    fn watermark_never_overflows() {
        let mut g = WatermarkStrategy::bounded_out_of_orderness(10).generator();
        g.observe(i64::MIN);
        assert_eq!(g.current(), i64::MIN);
        let mut m = WatermarkStrategy::monotonous().generator();
        m.observe(i64::MAX);
        assert_eq!(m.current(), i64::MAX);
    }

    #[test]
    fn negative_out_of_orderness_is_clamped() {
        let s = WatermarkStrategy::bounded_out_of_orderness(-5).with_idleness(-1);
        assert_eq!((s.out_of_orderness, s.idle_timeout), (0, Some(0)));
    }

    #[test]
    fn floor_to_is_floor_division() {
        for ts in -50..50 {
            for step in [1, 3, 7, 10] {
                let f = floor_to(ts, step);
                assert!(f <= ts && ts < f + step && f.rem_euclid(step) == 0);
            }
        }
    }
}
