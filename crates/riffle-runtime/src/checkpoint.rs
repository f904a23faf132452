//! Checkpoints, as the runtime's operators and jobs use them: the store, its file format and
//! savepoints are [`riffle_state`]'s, re-exported here; what stays is the naming of stateful
//! operators, which is about how a dataflow is built.
//!
//! Stateful operators are named by kind and rank in the job (`Window-1`), not by timely address,
//! so that a `rebalance` that exists only with more workers than splits does not rename them and
//! a checkpoint restores onto another worker count.

pub use riffle_state::{
    decode, encode, savepoint, CheckpointConfig, CheckpointStore, FingerprintDifference, JobFingerprint, Parts,
    SnapshotKind, FINGERPRINT_FILE,
};

thread_local! {
    /// Stateful operators built so far in this worker's dataflow (see [`stateful_name`]).
    static STATEFUL_OPERATORS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Starts naming the stateful operators of a new dataflow on this worker thread.
pub(crate) fn reset_stateful_names() {
    STATEFUL_OPERATORS.with(|c| c.set(0));
}

/// A name for the next stateful operator of this worker's dataflow: its kind and its rank
/// among the stateful operators, in the order the job builds them. Unlike timely's operator
/// addresses it does not change when stateless operators come and go (a `rebalance` appears
/// only with more workers than splits), so a checkpoint restores onto another worker count.
pub(crate) fn stateful_name(kind: &str) -> String {
    let n = STATEFUL_OPERATORS.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    format!("{kind}-{n}")
}
