//! The epoch protocol, in one place: how an operator reads its input frontier of
//! `(epoch, watermark)` times ([`Time`]) and which capabilities it keeps.
//!
//! Every operator of Riffle follows the same rules, and they live here so that an operator
//! cannot get one of them subtly wrong:
//!
//! * **the watermark** of an input is the least watermark of its frontier
//!   ([`frontier_watermark`]); once the job has halted, operators get none
//!   ([`input_watermark`]) and fire nothing as complete;
//! * **the open epoch** is the lowest epoch of the frontier ([`open_epoch`]): every record of an
//!   earlier epoch has arrived, so that epoch can be snapshotted (stateful operators) or
//!   pre-committed (sinks);
//! * **alignment**: records of epochs after the one an operator has reached wait in an
//!   [`EpochAligner`] until the epochs before them close, so that a snapshot of epoch `e`
//!   holds exactly the records of epochs `<= e`;
//! * **capabilities**: an operator holds capabilities at its input frontier
//!   ([`hold_frontier`]), lowered to the watermark its state has fired to
//!   ([`hold_frontier_fired`]), and emits results in the open epoch ([`emit_capability`]).

use std::collections::BTreeMap;

use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::AntichainRef;

use crate::time::Time;

/// The time of the message a capability came with. Riffle sends every message with a
/// single capability, so the stamp has one element.
pub(crate) fn message_time(cap: &InputCapability<Time>) -> Time {
    cap.stamp()
        .iter()
        .next()
        .copied()
        .unwrap_or_else(<Time as timely::progress::Timestamp>::minimum)
}

/// Replaces `held` by capabilities at the elements of `frontier`.
pub(crate) fn hold_frontier(held: &mut Vec<Capability<Time>>, frontier: AntichainRef<'_, Time>) {
    hold_frontier_fired(held, frontier, i64::MAX);
}

/// Replaces `held` by capabilities at the elements of `frontier`, each with its watermark
/// lowered to `fired`, the watermark the operator's state has advanced to.
///
/// Results fired later come from windows (or rows) that end after `fired`, so their event
/// times are at least `fired`; they must leave at a watermark no higher, or the next stage
/// sees them behind the watermark of the message that carries them (late or staged). Without
/// checkpoints the operators emit at the capability held at the previous frontier, whose
/// watermark is the one the state had fired to; this keeps that rule when the frontier holds
/// several epochs or the state lags the frontier (records held back for a later epoch).
pub(crate) fn hold_frontier_fired(held: &mut Vec<Capability<Time>>, frontier: AntichainRef<'_, Time>, fired: i64) {
    let mut next: Vec<Capability<Time>> = Vec::with_capacity(frontier.len());
    for t in frontier.iter() {
        let t = Time::new(t.epoch, t.watermark.min(fired));
        if next
            .iter()
            .any(|c| timely::order::PartialOrder::less_equal(c.time(), &t))
        {
            continue;
        }
        if let Some(c) = held
            .iter()
            .find(|c| timely::order::PartialOrder::less_equal(c.time(), &t))
        {
            next.retain(|n| !timely::order::PartialOrder::less_equal(&t, n.time()));
            next.push(c.delayed(&t));
        }
    }
    *held = next;
}

/// The capability results leave at: epoch `epoch` (the open one: a result must not belong to
/// a later epoch than the state), at the highest watermark `held` has up to that epoch (see
/// [`hold_frontier_fired`]: no higher than the state had fired to before).
pub(crate) fn emit_capability(held: &[Capability<Time>], epoch: u64) -> Option<Capability<Time>> {
    let c = held
        .iter()
        .filter(|c| c.time().epoch <= epoch)
        .max_by_key(|c| c.time().watermark)?;
    Some(c.delayed(&Time::new(epoch, c.time().watermark)))
}

/// The smallest watermark among the elements of a frontier (`i64::MAX` for an empty
/// frontier: the input has ended).
pub fn frontier_watermark<'a>(frontier: impl IntoIterator<Item = &'a Time>) -> i64 {
    frontier.into_iter().map(|t| t.watermark).min().unwrap_or(i64::MAX)
}

/// The watermark an operator may advance its state to: [`frontier_watermark`], unless the job
/// halted (failed or was stopped, see [`JobContext::is_halted`](crate::JobContext::is_halted)).
/// Then `None`: the sources dropped their capabilities where they were, so the frontier moves
/// on (to empty: the input did not end) without the records that would have come; nothing may
/// fire as complete any more. Open windows stay open, and in the final checkpoint, from which
/// a restarted job fires them when their time comes.
pub(crate) fn input_watermark(frontier: AntichainRef<'_, Time>, ctx: &crate::JobContext) -> Option<i64> {
    if ctx.is_halted() {
        None
    } else {
        Some(frontier_watermark(frontier.iter()))
    }
}

/// The open epoch of an input: the lowest epoch of its frontier, `None` once the input has
/// ended (or the job halted). Every record of an earlier epoch has arrived.
pub(crate) fn open_epoch(frontier: AntichainRef<'_, Time>) -> Option<u64> {
    frontier.iter().map(|t| t.epoch).min()
}

/// Records of epochs an operator has not reached yet, held until the epochs before them
/// close (the alignment of a checkpoint barrier, without barriers: the frontier says when an
/// epoch has closed).
///
/// An operator asks [`is_ahead`](Self::is_ahead) for each message: records of the epoch it
/// has reached (or an earlier one) are applied at once, the others are [`hold`](Self::hold)-en.
/// On each activation, [`advance`](Self::advance) closes every epoch the frontier has passed,
/// oldest first, handing each its held records, and returns the records of the epoch reached.
pub(crate) struct EpochAligner<T> {
    epoch: u64,
    later: BTreeMap<u64, Vec<T>>,
}

impl<T> EpochAligner<T> {
    /// An aligner that starts at `epoch` (the first epoch of the run).
    pub(crate) fn new(epoch: u64) -> Self {
        EpochAligner {
            epoch,
            later: BTreeMap::new(),
        }
    }

    /// The epoch the operator has reached: its results and snapshots belong to it.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether records of `epoch` must wait (the operator has not reached it).
    pub(crate) fn is_ahead(&self, epoch: u64) -> bool {
        epoch > self.epoch
    }

    /// Holds records of `epoch` (a later one than [`epoch`](Self::epoch)).
    pub(crate) fn hold(&mut self, epoch: u64, records: impl IntoIterator<Item = T>) {
        self.later.entry(epoch).or_default().extend(records);
    }

    /// The records held, of every later epoch.
    pub(crate) fn held(&self) -> impl Iterator<Item = &T> {
        self.later.values().flatten()
    }

    /// Closes every epoch before `open` (the input's open epoch; `None` at the end, when every
    /// epoch held is closed up to the last one), oldest first: `close(epoch, its held records)`.
    /// Returns the held records of the epoch reached, to apply now.
    pub(crate) fn advance(&mut self, open: Option<u64>, mut close: impl FnMut(u64, Vec<T>)) -> Vec<T> {
        let last = open.unwrap_or_else(|| {
            self.later
                .keys()
                .next_back()
                .copied()
                .unwrap_or(self.epoch)
                .max(self.epoch)
        });
        while self.epoch < last {
            close(self.epoch, self.later.remove(&self.epoch).unwrap_or_default());
            self.epoch += 1;
        }
        self.later.remove(&self.epoch).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::EpochAligner;

    #[test]
    fn epochs_close_in_order_with_their_records() {
        let mut aligner = EpochAligner::new(0);
        assert!(!aligner.is_ahead(0) && aligner.is_ahead(1));
        aligner.hold(2, ["c"]);
        aligner.hold(1, ["b"]);
        aligner.hold(2, ["d"]);
        assert_eq!(aligner.held().count(), 3);
        let mut closed = Vec::new();
        let now = aligner.advance(Some(2), |epoch, records| closed.push((epoch, records)));
        assert_eq!(closed, vec![(0, vec![]), (1, vec!["b"])]);
        assert_eq!((aligner.epoch(), now), (2, vec!["c", "d"]));
        // The frontier not moving closes nothing.
        assert!(aligner.advance(Some(2), |_, _| panic!("nothing to close")).is_empty());
    }

    #[test]
    fn the_end_closes_up_to_the_last_epoch_held() {
        let mut aligner = EpochAligner::new(3);
        aligner.hold(5, [1]);
        let mut closed = Vec::new();
        let now = aligner.advance(None, |epoch, records| closed.push((epoch, records)));
        assert_eq!(closed, vec![(3, vec![]), (4, vec![])]);
        assert_eq!((aligner.epoch(), now), (5, vec![1]));
        let mut empty: EpochAligner<u8> = EpochAligner::new(7);
        assert!(empty.advance(None, |_, _| panic!("no epoch passed")).is_empty());
        assert_eq!(empty.epoch(), 7);
    }
}
