//! The state machines of the keyed time-window operators, free of any execution engine.
//!
//! # Semantics
//!
//! Each record reaches the window operator with the watermark `W` its source had emitted
//! before it (the time of the message that carries it). Relative to that watermark a record
//! is one of ([`Admission`]):
//!
//! * **on time**: none of its windows can have fired yet. It is added to its pane at once.
//! * **staged**: behind the watermark, but at least one of its windows is still within the
//!   allowed lateness (`window.end + lateness > W`). It is applied *in event order*: once
//!   every worker's watermark has passed `W`, after the windows ending at or before `W` fired.
//!   Each window it joins whose end is at or before `W` fires again with its updated
//!   result (Flink's default trigger does the same for late elements); windows still open
//!   simply include it when they fire.
//! * **late**: every window it belongs to is past its allowed lateness. It is not added; the
//!   runtime counts it and sends it to the late-data output.
//!
//! Because the admission of a record depends only on its event time and on the watermark of
//! its own source (not on how far other workers have got) and staged records are applied in
//! watermark order, the output is the same for any number of workers.
//!
//! Session windows follow Flink: each record opens `[ts, ts + gap)`, and windows that
//! intersect or touch merge. A session record is on time only when `ts > W` (it cannot touch
//! a session that already fired); it is late when its own window `[ts, ts + gap)` is past the
//! allowed lateness, even if it would have merged into a session that is not (Flink would
//! admit it there; Riffle decides without looking at state, which keeps the decision
//! independent of timing).
//!
//! State of a window is kept until the watermark passes `end + lateness`, then dropped.
//!
//! This file holds what the two state machines share: the admission rules ([`admit_sliced`],
//! [`admit_session`]) and the checkpoint type [`StagedUpdates`]. The state machines live in
//! `sliced.rs` ([`SlicedWindowState`]) and `session.rs` ([`SessionWindowState`]) and are
//! re-exported here.

use crate::time::{EventTime, Watermark};
use crate::window::{SessionWindows, Slicing};

mod session;
mod sliced;

pub use session::{Session, SessionPart, SessionWindowState};
pub use sliced::{SlicedPart, SlicedWindowState};

/// What happens to a record relative to the watermark it arrived with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Added to its pane at once.
    OnTime,
    /// Applied once the watermark has passed the record's arrival watermark.
    Staged,
    /// Not added: every window it belongs to is past its allowed lateness.
    Late,
}

/// Admission of a record at `ts`, arriving with watermark `wm`, into sliced windows.
///
/// ```
/// use riffle_core::window::{TimeWindows, TumblingWindows};
/// use riffle_core::window_state::{admit_sliced, Admission};
/// let TimeWindows::Sliced(s) = TumblingWindows::of_millis(10).unwrap().into() else { unreachable!() };
/// assert_eq!(admit_sliced(&s, 12, 15, 5), Admission::OnTime);  // [10,20) still open
/// assert_eq!(admit_sliced(&s, 5, 12, 5), Admission::Staged);   // [0,10) fired, within lateness
/// assert_eq!(admit_sliced(&s, 5, 15, 5), Admission::Late);     // [0,10) + 5 <= 15
/// ```
#[inline]
pub fn admit_sliced(slicing: &Slicing, ts: EventTime, wm: Watermark, lateness: i64) -> Admission {
    let pane = slicing.pane_of(ts);
    if slicing.first_window_end(pane) > wm {
        Admission::OnTime
    } else if slicing.last_window_end(pane).saturating_add(lateness) > wm {
        Admission::Staged
    } else {
        Admission::Late
    }
}

/// Admission of a record at `ts`, arriving with watermark `wm`, into session windows.
#[inline]
pub fn admit_session(sessions: &SessionWindows, ts: EventTime, wm: Watermark, lateness: i64) -> Admission {
    if ts > wm {
        Admission::OnTime
    } else if ts.saturating_add(sessions.gap).saturating_add(lateness) > wm {
        Admission::Staged
    } else {
        Admission::Late
    }
}

/// Staged updates (slot, key, partial aggregate) by the watermark they arrived with.
pub type StagedUpdates<K, Acc> = Vec<(Watermark, Vec<(EventTime, K, Acc)>)>;
