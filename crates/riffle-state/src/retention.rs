//! Which epoch directories the store deletes, decided on plain data: after a checkpoint
//! completes (retention keeps the newest complete checkpoints and every directory their
//! incremental chains refer to), and when a store opens (directories of the interrupted run).
//! The store lists directories, reads manifests and deletes; these functions decide, so that
//! what is deleted is tested without a filesystem.

use std::collections::BTreeSet;

use crate::format::parse_epoch_dir;

/// The fewest complete checkpoints retention keeps, so that a corrupt newest one has a
/// fallback.
pub(crate) const MIN_RETAINED: usize = 2;

/// The complete checkpoints retention keeps, newest first: the `retain` newest (at least
/// [`MIN_RETAINED`]) of `complete`; `None` when there are no more than that, so that nothing
/// is deleted.
pub(crate) fn kept_checkpoints(complete: &[u64], retain: usize) -> Option<Vec<u64>> {
    let keep = retain.max(MIN_RETAINED);
    if complete.len() <= keep {
        return None;
    }
    let mut newest_first = complete.to_vec();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    newest_first.truncate(keep);
    Some(newest_first)
}

/// The epoch directories retention deletes, of `epochs` (every epoch directory there is): those
/// older than the oldest of the `kept` checkpoints, but for the ones a kept manifest refers to
/// (`kept_files`: the files the kept manifests list, relative to the checkpoint directory), in
/// the order of `epochs`.
pub(crate) fn epochs_to_delete<'a>(
    epochs: &[u64],
    kept: &[u64],
    kept_files: impl IntoIterator<Item = &'a str>,
) -> Vec<u64> {
    let Some(&oldest_kept) = kept.iter().min() else {
        return Vec::new();
    };
    let referenced: BTreeSet<u64> = kept_files
        .into_iter()
        .filter_map(|f| f.split('/').next().and_then(parse_epoch_dir))
        .chain(kept.iter().copied())
        .collect();
    epochs
        .iter()
        .copied()
        .filter(|e| *e < oldest_kept && !referenced.contains(e))
        .collect()
}

/// The epoch directories a store deletes when it opens, of `epochs`: those of the run's own
/// epochs (from `start_epoch` on), which hold files of an interrupted run or of a checkpoint
/// that could not be restored. The run writes those epochs again, and its manifests must not
/// pick up a stale file (say, of a worker this run does not have).
pub(crate) fn stale_epochs(epochs: &[u64], start_epoch: u64) -> Vec<u64> {
    epochs.iter().copied().filter(|e| *e >= start_epoch).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_the_newest_complete_checkpoints_and_at_least_two() {
        assert_eq!(kept_checkpoints(&[1, 2, 3], 3), None, "no more than retained");
        assert_eq!(kept_checkpoints(&[4, 1, 3, 2], 3), Some(vec![4, 3, 2]));
        assert_eq!(kept_checkpoints(&[4, 1, 3, 2], 0), Some(vec![4, 3]), "at least two");
        assert_eq!(kept_checkpoints(&[4, 1, 3, 2], 1), Some(vec![4, 3]));
        assert_eq!(kept_checkpoints(&[1, 2], 1), None);
        assert_eq!(kept_checkpoints(&[], 2), None);
    }

    #[test]
    fn retention_deletes_older_directories_unless_a_kept_manifest_refers_to_them() {
        // Checkpoints 8 and 9 are kept; 9's chain starts at the full snapshot of 4; 10 is being
        // written (no manifest yet) and is not older than the oldest kept.
        let epochs = [10, 9, 8, 7, 6, 5, 4, 3];
        let kept_files = [
            "chk-0000000004/window.w0",
            "chk-0000000008/window.w0.inc",
            "chk-0000000009/window.w0.inc",
        ];
        assert_eq!(epochs_to_delete(&epochs, &[9, 8], kept_files), vec![7, 6, 5, 3]);
    }

    #[test]
    fn retention_keeps_the_kept_directories_even_with_unreadable_manifests() {
        assert_eq!(epochs_to_delete(&[1, 2, 3, 4], &[4, 3], []), vec![1, 2]);
        assert_eq!(
            epochs_to_delete(&[1, 2], &[], ["chk-0000000001/op.w0"]),
            Vec::<u64>::new()
        );
        // A file name that is not of an epoch directory refers to nothing.
        assert_eq!(epochs_to_delete(&[1, 5, 6], &[6, 5], ["elsewhere/op.w0"]), vec![1]);
    }

    #[test]
    fn an_opening_store_deletes_the_directories_of_its_own_epochs() {
        assert_eq!(stale_epochs(&[3, 7, 5, 6], 6), vec![7, 6]);
        assert_eq!(stale_epochs(&[0, 1], 0), vec![0, 1], "a run that restored nothing");
        assert!(stale_epochs(&[1, 2], 3).is_empty());
    }
}
