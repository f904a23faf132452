//! Window assigners: which windows a record with a given event time belongs to.
//!
//! Time windows are half-open intervals `[start, end)` of event time. Tumbling and sliding
//! windows are aligned to the Unix epoch (as Flink's, without offset). Sliding windows are
//! evaluated with **panes**: the time axis is cut into slices of `gcd(size, slide)`, each
//! record is added to exactly one pane, and a window is the merge of the panes it covers, so a
//! record is never copied into `size / slide` windows.
//!
//! Riffle has no separate processing-time clock inside operators: in processing-time mode a
//! source stamps each record with the wall-clock time at which it was read (Flink calls this
//! ingestion time) and advances the watermark with the clock. The `*ProcessingTimeWindows`
//! names are therefore the same assigners as the event-time ones, applied to those stamps.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::time::{floor_to, EventTime, MAX_DURATION};

/// A time window `[start, end)`, in milliseconds of event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond in the window.
    pub start: EventTime,
    /// First millisecond after the window.
    pub end: EventTime,
}

impl Window {
    /// The window holding all of time (the global window).
    pub const ALL: Window = Window {
        start: i64::MIN,
        end: i64::MAX,
    };

    /// The last event time in the window (`end - 1`), the timestamp of its results.
    pub fn max_timestamp(&self) -> EventTime {
        self.end.saturating_sub(1)
    }

    /// Whether this is the global window.
    pub fn is_global(&self) -> bool {
        *self == Window::ALL
    }
}

/// Assigns records to windows by event time.
pub trait WindowAssigner {
    /// Calls `f` with every window containing `ts`, or, when one of those windows cannot be
    /// represented in `i64` milliseconds (its start or end would overflow), calls `f` with
    /// none of them and returns [`Unrepresentable`]. It never panics or overflows, for any `ts`.
    fn assign(&self, ts: EventTime, f: &mut dyn FnMut(Window)) -> Result<(), Unrepresentable>;
}

/// A record's windows cannot be represented: `ts` is too close to `i64::MIN` or `i64::MAX`
/// for the window arithmetic. Sources avoid it by rejecting event times outside
/// [`crate::time::EVENT_TIME_MIN`]`..=`[`crate::time::EVENT_TIME_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unrepresentable {
    /// The event time.
    pub ts: EventTime,
}

impl std::fmt::Display for Unrepresentable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the windows of event time {} cannot be represented", self.ts)
    }
}

impl std::error::Error for Unrepresentable {}

/// `[start, end)` as a window if both fit in `i64` (computed in `i128`, which cannot
/// overflow for `i64` operands).
fn checked_window(start: i128, end: i128) -> Option<Window> {
    Some(Window {
        start: i64::try_from(start).ok()?,
        end: i64::try_from(end).ok()?,
    })
}

/// The largest multiple of `step` at or below `x`, in `i128`.
fn floor_wide(x: i128, step: i128) -> i128 {
    x - x.rem_euclid(step)
}

/// The start of the earliest window of `size` every `slide` that contains `t` (the smallest
/// multiple of `slide` above `t - size`), in `i128`.
fn first_start_wide(t: i128, size: i128, slide: i128) -> i128 {
    floor_wide(t - size, slide) + slide
}

/// `x` clamped into `i64`.
fn clamp_i64(x: i128) -> i64 {
    x.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn millis(d: Duration, what: &str) -> Result<i64> {
    let ms = i64::try_from(d.as_millis()).map_err(|_| Error::Config(format!("{what} too large")))?;
    if ms <= 0 {
        return Err(Error::Config(format!("{what} must be at least 1ms, got {d:?}")));
    }
    in_range(ms, what)
}

/// Checks that a duration of `ms` milliseconds is at most [`MAX_DURATION`].
fn in_range(ms: i64, what: &str) -> Result<i64> {
    if ms > MAX_DURATION {
        return Err(Error::Config(format!(
            "{what} of {ms}ms is too large (at most {MAX_DURATION}ms)"
        )));
    }
    Ok(ms)
}

/// Fixed-size, non-overlapping windows.
///
/// ```
/// use std::time::Duration;
/// use riffle_core::window::{TumblingWindows, WindowAssigner};
/// let w = TumblingWindows::of(Duration::from_secs(5));
/// let mut got = vec![];
/// w.assign(7_000, &mut |w| got.push((w.start, w.end))).unwrap();
/// assert_eq!(got, vec![(5_000, 10_000)]);
/// assert!(w.assign(i64::MAX, &mut |_| unreachable!()).is_err()); // [.., i64::MAX + 1)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TumblingWindows {
    /// Window length in ms.
    pub size: i64,
}

impl TumblingWindows {
    /// Tumbling windows of `size`. Panics if `size` is below one millisecond; use
    /// [`TumblingWindows::of_millis`] to get an error instead.
    #[track_caller]
    pub fn of(size: Duration) -> Self {
        match millis(size, "window size") {
            Ok(size) => TumblingWindows { size },
            Err(e) => panic!("{e}"),
        }
    }

    /// Tumbling windows of `size_ms` milliseconds.
    pub fn of_millis(size_ms: i64) -> Result<Self> {
        if size_ms <= 0 {
            return Err(Error::Config(format!(
                "window size must be at least 1ms, got {size_ms}ms"
            )));
        }
        Ok(TumblingWindows {
            size: in_range(size_ms, "window size")?,
        })
    }
}

impl WindowAssigner for TumblingWindows {
    fn assign(&self, ts: EventTime, f: &mut dyn FnMut(Window)) -> Result<(), Unrepresentable> {
        let start = floor_wide(i128::from(ts), i128::from(self.size));
        let w = checked_window(start, start + i128::from(self.size)).ok_or(Unrepresentable { ts })?;
        f(w);
        Ok(())
    }
}

/// Fixed-size windows that start every `slide` (hopping windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlidingWindows {
    /// Window length in ms.
    pub size: i64,
    /// Distance between window starts in ms.
    pub slide: i64,
}

impl SlidingWindows {
    /// Sliding windows of `size` starting every `slide`. Panics on durations below one
    /// millisecond; use [`SlidingWindows::of_millis`] to get an error instead.
    #[track_caller]
    pub fn of(size: Duration, slide: Duration) -> Self {
        match (millis(size, "window size"), millis(slide, "window slide")) {
            (Ok(size), Ok(slide)) => SlidingWindows { size, slide },
            (Err(e), _) | (_, Err(e)) => panic!("{e}"),
        }
    }

    /// Sliding windows of `size_ms` starting every `slide_ms` milliseconds.
    pub fn of_millis(size_ms: i64, slide_ms: i64) -> Result<Self> {
        if size_ms <= 0 || slide_ms <= 0 {
            return Err(Error::Config(format!(
                "window size and slide must be at least 1ms, got {size_ms}ms and {slide_ms}ms"
            )));
        }
        if slide_ms > size_ms {
            return Err(Error::Config(format!(
                "window slide ({slide_ms}ms) must not exceed the window size ({size_ms}ms)"
            )));
        }
        Ok(SlidingWindows {
            size: in_range(size_ms, "window size")?,
            slide: slide_ms,
        })
    }
}

impl WindowAssigner for SlidingWindows {
    fn assign(&self, ts: EventTime, f: &mut dyn FnMut(Window)) -> Result<(), Unrepresentable> {
        // Window starts are the multiples of `slide` in (ts - size, ts]. All of them are
        // checked before any is emitted, so that a record is counted in all its windows or
        // in none.
        let (t, size, slide) = (i128::from(ts), i128::from(self.size), i128::from(self.slide));
        let last_start = floor_wide(t, slide);
        let first_start = first_start_wide(t, size, slide);
        if checked_window(first_start, last_start + size).is_none() {
            return Err(Unrepresentable { ts });
        }
        let mut start = last_start;
        while start >= first_start {
            // Representable: first_start <= start <= last_start.
            f(Window {
                start: start as i64,
                end: (start + size) as i64,
            });
            start -= slide;
        }
        Ok(())
    }
}

/// Windows that close after `gap` without records for their key, merging as records arrive.
///
/// Each record opens the window `[ts, ts + gap)`; overlapping windows of a key merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionWindows {
    /// Inactivity gap in ms.
    pub gap: i64,
}

impl SessionWindows {
    /// Session windows with an inactivity `gap`. Panics on a gap below one millisecond.
    #[track_caller]
    pub fn with_gap(gap: Duration) -> Self {
        match millis(gap, "session gap") {
            Ok(gap) => SessionWindows { gap },
            Err(e) => panic!("{e}"),
        }
    }

    /// Session windows with an inactivity gap of `gap_ms` milliseconds.
    pub fn with_gap_millis(gap_ms: i64) -> Result<Self> {
        if gap_ms <= 0 {
            return Err(Error::Config(format!(
                "session gap must be at least 1ms, got {gap_ms}ms"
            )));
        }
        Ok(SessionWindows {
            gap: in_range(gap_ms, "session gap")?,
        })
    }
}

impl WindowAssigner for SessionWindows {
    fn assign(&self, ts: EventTime, f: &mut dyn FnMut(Window)) -> Result<(), Unrepresentable> {
        let end = ts.checked_add(self.gap).ok_or(Unrepresentable { ts })?;
        f(Window { start: ts, end });
        Ok(())
    }
}

/// One window over all of time; it fires when the input ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalWindows;

impl WindowAssigner for GlobalWindows {
    fn assign(&self, _ts: EventTime, f: &mut dyn FnMut(Window)) -> Result<(), Unrepresentable> {
        f(Window::ALL);
        Ok(())
    }
}

/// Flink's name for tumbling windows over event time.
pub type TumblingEventTimeWindows = TumblingWindows;
/// Flink's name for tumbling windows over processing time (ingestion stamps, see module docs).
pub type TumblingProcessingTimeWindows = TumblingWindows;
/// Flink's name for sliding windows over event time.
pub type SlidingEventTimeWindows = SlidingWindows;
/// Flink's name for sliding windows over processing time (ingestion stamps, see module docs).
pub type SlidingProcessingTimeWindows = SlidingWindows;
/// Flink's name for session windows over event time.
pub type EventTimeSessionWindows = SessionWindows;
/// Flink's name for session windows over processing time (ingestion stamps, see module docs).
pub type ProcessingTimeSessionWindows = SessionWindows;

/// The time windows the window operator supports, as one value the runtime can dispatch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeWindows {
    /// Tumbling or sliding windows, evaluated with panes.
    Sliced(Slicing),
    /// Session windows.
    Session(SessionWindows),
}

impl From<TumblingWindows> for TimeWindows {
    fn from(w: TumblingWindows) -> Self {
        TimeWindows::Sliced(Slicing {
            size: w.size,
            slide: w.size,
            pane: w.size,
        })
    }
}
impl From<SlidingWindows> for TimeWindows {
    fn from(w: SlidingWindows) -> Self {
        TimeWindows::Sliced(Slicing {
            size: w.size,
            slide: w.slide,
            pane: gcd(w.size, w.slide),
        })
    }
}
impl From<SessionWindows> for TimeWindows {
    fn from(w: SessionWindows) -> Self {
        TimeWindows::Session(w)
    }
}
impl From<GlobalWindows> for TimeWindows {
    fn from(_: GlobalWindows) -> Self {
        TimeWindows::Sliced(Slicing::GLOBAL)
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Tumbling, sliding and global windows cut into panes of `gcd(size, slide)`.
///
/// ```
/// use riffle_core::window::{SlidingWindows, Slicing, TimeWindows};
/// let TimeWindows::Sliced(s) = TimeWindows::from(SlidingWindows::of_millis(10, 4).unwrap()) else { panic!() };
/// assert_eq!(s.pane, 2);
/// assert_eq!(s.pane_of(7), 6);
/// let mut ends = vec![];
/// s.windows_of_pane(6, &mut |w| ends.push(w.end));
/// assert_eq!(ends, vec![10, 14]); // windows [0, 10) and [4, 14)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slicing {
    /// Window length in ms (`i64::MAX` for the global window).
    pub size: i64,
    /// Distance between window starts in ms.
    pub slide: i64,
    /// Pane length in ms: `gcd(size, slide)`.
    pub pane: i64,
}

impl Slicing {
    /// The global window: one pane holding all of time.
    pub const GLOBAL: Slicing = Slicing {
        size: i64::MAX,
        slide: i64::MAX,
        pane: i64::MAX,
    };

    /// Whether this is the global window.
    pub fn is_global(&self) -> bool {
        self.size == i64::MAX
    }

    /// The start of the pane containing `ts`.
    #[inline]
    pub fn pane_of(&self, ts: EventTime) -> EventTime {
        if self.is_global() {
            i64::MIN
        } else {
            floor_to(ts, self.pane)
        }
    }

    /// The end of the pane starting at `pane_start`.
    #[inline]
    pub fn pane_end(&self, pane_start: EventTime) -> EventTime {
        if self.is_global() {
            i64::MAX
        } else {
            pane_start.saturating_add(self.pane)
        }
    }

    /// Calls `f` with every window covering the pane that starts at `pane_start`, in order
    /// of increasing end. Windows whose start is below `i64::MIN` are left out and ends are
    /// clamped at `i64::MAX` (only possible for event times outside
    /// [`crate::time::EVENT_TIME_MIN`]`..=`[`crate::time::EVENT_TIME_MAX`], which sources
    /// reject); the arithmetic is done in `i128` so that it never overflows or loops.
    pub fn windows_of_pane(&self, pane_start: EventTime, f: &mut dyn FnMut(Window)) {
        if self.is_global() {
            return f(Window::ALL);
        }
        // Window starts are multiples of `slide` in (pane_start - size, pane_start].
        let (p, size, slide) = (i128::from(pane_start), i128::from(self.size), i128::from(self.slide));
        let last = floor_wide(p, slide);
        let mut start = first_start_wide(p, size, slide);
        while start <= last {
            if start >= i128::from(i64::MIN) {
                f(Window {
                    start: start as i64,
                    end: clamp_i64(start + size),
                });
            }
            start += slide;
        }
    }

    /// The end of the earliest-ending window that covers the pane at `pane_start`.
    pub fn first_window_end(&self, pane_start: EventTime) -> EventTime {
        if self.is_global() {
            return i64::MAX;
        }
        let (p, size, slide) = (i128::from(pane_start), i128::from(self.size), i128::from(self.slide));
        clamp_i64(first_start_wide(p, size, slide) + size)
    }

    /// The end of the latest-ending window that covers the pane at `pane_start`.
    pub fn last_window_end(&self, pane_start: EventTime) -> EventTime {
        if self.is_global() {
            return i64::MAX;
        }
        clamp_i64(floor_wide(i128::from(pane_start), i128::from(self.slide)) + i128::from(self.size))
    }

    /// The panes a window covers: `[window.start, window.end)` in steps of `pane`.
    pub fn panes_of_window(&self, window: Window) -> impl Iterator<Item = EventTime> + '_ {
        let step = self.pane;
        let global = self.is_global();
        let mut next = Some(if global { i64::MIN } else { window.start });
        std::iter::from_fn(move || {
            let p = next?;
            next = if global {
                None
            } else {
                p.checked_add(step).filter(|&n| n < window.end)
            };
            Some(p)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_assignment_matches_definition() {
        for (size, slide) in [(10, 2), (10, 4), (6, 6), (7, 3)] {
            let w = SlidingWindows::of_millis(size, slide).unwrap();
            for ts in -30..30 {
                let mut got = vec![];
                w.assign(ts, &mut |w| got.push(w)).unwrap();
                let mut expect = vec![];
                for start in (-100..100).filter(|s: &i64| s.rem_euclid(slide) == 0) {
                    if start <= ts && ts < start + size {
                        expect.push(Window {
                            start,
                            end: start + size,
                        });
                    }
                }
                got.sort();
                assert_eq!(got, expect, "size {size} slide {slide} ts {ts}");
            }
        }
    }

    #[test]
    fn panes_partition_windows() {
        for (size, slide) in [(10, 2), (10, 4), (6, 6), (7, 3), (9, 6)] {
            let TimeWindows::Sliced(s) = TimeWindows::from(SlidingWindows::of_millis(size, slide).unwrap()) else {
                unreachable!()
            };
            let assigner = SlidingWindows::of_millis(size, slide).unwrap();
            for ts in -40..40 {
                let pane = s.pane_of(ts);
                let mut via_pane = vec![];
                s.windows_of_pane(pane, &mut |w| via_pane.push(w));
                let mut direct = vec![];
                assigner.assign(ts, &mut |w| direct.push(w)).unwrap();
                direct.sort();
                assert_eq!(via_pane, direct, "size {size} slide {slide} ts {ts}");
                assert_eq!(s.last_window_end(pane), direct.iter().map(|w| w.end).max().unwrap());
                for w in direct {
                    assert!(s.panes_of_window(w).any(|p| p == pane));
                }
            }
        }
    }

    /// Windows containing `ts` by definition: starts that are multiples of `slide` in
    /// `(ts - size, ts]`, in `i128`.
    fn expected_starts(ts: i64, size: i64, slide: i64) -> Vec<i128> {
        let (t, size, slide) = (i128::from(ts), i128::from(size), i128::from(slide));
        let first = floor_wide(t - size, slide) + slide;
        (0..).map(|i| first + i * slide).take_while(|s| *s <= t).collect()
    }

    fn fits(x: i128) -> bool {
        i64::try_from(x).is_ok()
    }

    /// Event times anywhere in `i64`, biased towards both ends where the arithmetic overflows.
    fn any_ts() -> impl proptest::strategy::Strategy<Value = i64> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i64>(),
            (0i64..100_000).prop_map(|d| i64::MIN + d),
            (0i64..100_000).prop_map(|d| i64::MAX - d),
            -100_000i64..100_000,
        ]
    }

    fn durations() -> impl proptest::strategy::Strategy<Value = (i64, i64)> {
        use proptest::prelude::*;
        (1i64..50_000, 1i64..50).prop_map(|(slide, k)| (slide * k, slide))
    }

    proptest::proptest! {
        #[test]
        fn tumbling_assigns_its_one_window_or_refuses(ts in any_ts(), size in 1i64..1_000_000) {
            let w = TumblingWindows::of_millis(size).unwrap();
            let mut got = vec![];
            let r = w.assign(ts, &mut |w| got.push(w));
            let start = floor_wide(i128::from(ts), i128::from(size));
            if fits(start) && fits(start + i128::from(size)) {
                proptest::prop_assert!(r.is_ok());
                proptest::prop_assert_eq!(got.len(), 1);
                proptest::prop_assert!(got[0].start <= ts && ts < got[0].end);
            } else {
                proptest::prop_assert!(r.is_err() && got.is_empty());
            }
        }

        #[test]
        fn sliding_assigns_every_window_or_none(ts in any_ts(), (size, slide) in durations()) {
            let w = SlidingWindows::of_millis(size, slide).unwrap();
            let mut got = vec![];
            let r = w.assign(ts, &mut |w| got.push(w));
            let starts = expected_starts(ts, size, slide);
            let representable = starts.iter().all(|&s| fits(s) && fits(s + i128::from(size)));
            if representable {
                proptest::prop_assert!(r.is_ok());
                // size is a multiple of slide here: exactly size / slide windows.
                proptest::prop_assert_eq!(got.len() as i64, size / slide);
                for w in &got {
                    proptest::prop_assert!(w.start <= ts && ts < w.end && w.start < w.end);
                    proptest::prop_assert_eq!(w.end - w.start, size);
                }
            } else {
                proptest::prop_assert!(r.is_err() && got.is_empty());
            }
        }

        #[test]
        fn session_assigns_one_window_or_refuses(ts in any_ts(), gap in 1i64..1_000_000) {
            let w = SessionWindows::with_gap_millis(gap).unwrap();
            let mut got = vec![];
            match w.assign(ts, &mut |w| got.push(w)) {
                Ok(()) => proptest::prop_assert!(got.len() == 1 && got[0].start == ts && ts < got[0].end),
                Err(_) => proptest::prop_assert!(ts.checked_add(gap).is_none() && got.is_empty()),
            }
        }

        /// The pane arithmetic the window operator uses never panics or loops, and agrees
        /// with the assigner wherever the assigner can represent the windows.
        #[test]
        fn slicing_never_overflows(ts in any_ts(), (size, slide) in durations()) {
            let TimeWindows::Sliced(s) = TimeWindows::from(SlidingWindows::of_millis(size, slide).unwrap()) else {
                unreachable!()
            };
            let pane = s.pane_of(ts);
            proptest::prop_assert!(pane <= ts);
            let _ = s.pane_end(pane);
            let mut via_pane = vec![];
            s.windows_of_pane(pane, &mut |w| via_pane.push(w));
            let (first, last) = (s.first_window_end(pane), s.last_window_end(pane));
            proptest::prop_assert!(first <= last);
            for w in &via_pane {
                proptest::prop_assert!(w.start <= w.end);
                proptest::prop_assert!(s.panes_of_window(*w).take(100_000).count() <= 100_000);
            }
            let mut direct = vec![];
            if SlidingWindows::of_millis(size, slide).unwrap().assign(ts, &mut |w| direct.push(w)).is_ok() {
                direct.sort();
                proptest::prop_assert_eq!(via_pane, direct);
            }
        }

        #[test]
        fn representable_range_has_representable_windows(
            ts in crate::time::EVENT_TIME_MIN..=crate::time::EVENT_TIME_MAX,
            (size, slide) in durations(),
        ) {
            let w = SlidingWindows::of_millis(size, slide).unwrap();
            proptest::prop_assert!(w.assign(ts, &mut |_| ()).is_ok());
            proptest::prop_assert!(TumblingWindows::of_millis(size).unwrap().assign(ts, &mut |_| ()).is_ok());
            proptest::prop_assert!(SessionWindows::with_gap_millis(size).unwrap().assign(ts, &mut |_| ()).is_ok());
        }
    }

    #[test]
    fn extreme_durations_are_refused() {
        assert!(TumblingWindows::of_millis(i64::MAX).is_err());
        assert!(SessionWindows::with_gap_millis(MAX_DURATION + 1).is_err());
        assert!(TumblingWindows::of_millis(MAX_DURATION).is_ok());
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(TumblingWindows::of_millis(0).is_err());
        assert!(SlidingWindows::of_millis(10, 20).is_err());
        assert!(SessionWindows::with_gap_millis(-1).is_err());
    }
}
