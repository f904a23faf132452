//! The timely timestamp of Riffle dataflows: `(epoch, watermark)`.
//!
//! Timely timestamps are coarse: a source stamps a whole chunk of records with one
//! [`Time`], never one time per record. Records carry their own event time in the data.
//!
//! * `watermark` is the watermark the source had emitted before the chunk (see
//!   `riffle_core::time`). When every element of an operator's input frontier has a
//!   watermark of at least `W`, no more records stamped below `W` can arrive, so windows
//!   ending at or before `W` can fire. Timely's progress tracking thereby turns per-source
//!   watermarks into one watermark every worker and process agrees on: the minimum.
//! * `epoch` numbers checkpoint epochs. Sources advance it at each checkpoint; when no
//!   element of an operator's frontier has an epoch at or below `e`, every record of epoch
//!   `e` has passed the operator, which is the consistent cut a checkpoint needs (see
//!   `docs/architecture.md`). Without checkpoints it stays 0.
//!
//! The order is the product order: `(e1, w1) <= (e2, w2)` iff `e1 <= e2` and `w1 <= w2`. A
//! lexicographic order would let a source at a later epoch emit a lower watermark than the
//! frontier shows. Timely 0.32's `Product` cannot be the timestamp of a dataflow's root
//! scope (it does not implement `Refines<()>`), hence this type.

use serde::{Deserialize, Serialize};
use timely::order::PartialOrder;
use timely::progress::timestamp::{PathSummary, Refines, Timestamp};

/// The timely timestamp of Riffle dataflows.
///
/// ```
/// use riffle_runtime::time::Time;
/// use timely::order::PartialOrder;
/// let a = Time::new(0, 10);
/// assert!(a.less_equal(&Time::new(1, 10)));
/// assert!(!Time::new(1, 5).less_equal(&a) && !a.less_equal(&Time::new(1, 5)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time {
    /// Checkpoint epoch.
    pub epoch: u64,
    /// Source watermark (ms of event time).
    pub watermark: i64,
}

impl Time {
    /// A time.
    pub const fn new(epoch: u64, watermark: i64) -> Self {
        Time { epoch, watermark }
    }

    /// The least upper bound of two times.
    pub fn join(&self, other: &Time) -> Time {
        Time {
            epoch: self.epoch.max(other.epoch),
            watermark: self.watermark.max(other.watermark),
        }
    }
}

impl PartialOrder for Time {
    #[inline]
    fn less_equal(&self, other: &Self) -> bool {
        self.epoch <= other.epoch && self.watermark <= other.watermark
    }
}

impl Timestamp for Time {
    type Summary = TimeSummary;
    fn minimum() -> Self {
        Time {
            epoch: 0,
            watermark: i64::MIN,
        }
    }
}

impl Refines<()> for Time {
    fn to_inner(_: ()) -> Self {
        Self::minimum()
    }
    fn to_outer(self) {}
    fn summarize(_: TimeSummary) {}
}

/// How a path through the dataflow advances a [`Time`]: by adding to each part. Riffle's
/// dataflows have no cycles, so every path's summary is zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeSummary {
    /// Added to the epoch.
    pub epoch: u64,
    /// Added to the watermark.
    pub watermark: i64,
}

impl PartialOrder for TimeSummary {
    fn less_equal(&self, other: &Self) -> bool {
        self.epoch <= other.epoch && self.watermark <= other.watermark
    }
}

impl PathSummary<Time> for TimeSummary {
    fn results_in(&self, src: &Time) -> Option<Time> {
        Some(Time {
            epoch: src.epoch.checked_add(self.epoch)?,
            watermark: src.watermark.checked_add(self.watermark)?,
        })
    }
    fn followed_by(&self, other: &Self) -> Option<Self> {
        Some(TimeSummary {
            epoch: self.epoch.checked_add(other.epoch)?,
            watermark: self.watermark.checked_add(other.watermark)?,
        })
    }
}

pub use crate::progress::frontier_watermark;
