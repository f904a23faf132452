//! Stream joins, engine-agnostic: interval joins, window joins and temporal (stream-table)
//! joins, each as a state machine that the runtime feeds records and watermarks.
//!
//! All three free their state as the watermark advances, so that on an endless stream with a
//! bounded interval or window the state stays bounded; each reports its size in rows.
//!
//! **Lateness.** A record is on time when its event time is not behind the watermark it
//! arrived with (for windows: when some window it belongs to has not fired). Late records do
//! not join; the runtime sends them to a late-data stream. This makes the joined output a
//! function of the input alone, not of arrival order or worker count, which the tests check
//! against nested-loop joins.

pub mod interval;
pub mod temporal;
pub mod window;

pub use interval::{IntervalBounds, IntervalJoinState};
pub use temporal::{Change, TemporalJoinState, VersionedTable};
pub use window::WindowJoinState;

/// Which unmatched rows a join also emits (with the other side missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum JoinKind {
    /// Only matched pairs.
    #[default]
    Inner,
    /// Matched pairs and unmatched left rows.
    Left,
    /// Matched pairs and unmatched right rows.
    Right,
    /// Matched pairs and unmatched rows of both sides.
    Full,
}

impl JoinKind {
    /// Whether unmatched left rows are emitted.
    pub fn keeps_left(self) -> bool {
        matches!(self, JoinKind::Left | JoinKind::Full)
    }

    /// Whether unmatched right rows are emitted.
    pub fn keeps_right(self) -> bool {
        matches!(self, JoinKind::Right | JoinKind::Full)
    }
}

impl std::str::FromStr for JoinKind {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "inner" => Ok(JoinKind::Inner),
            "left" => Ok(JoinKind::Left),
            "right" => Ok(JoinKind::Right),
            "full" => Ok(JoinKind::Full),
            other => Err(crate::Error::Config(format!(
                "join kind must be inner, left, right or full, got '{other}'"
            ))),
        }
    }
}
