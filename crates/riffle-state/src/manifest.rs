//! What a manifest lists, which checkpoint a store restores and when a checkpoint is complete,
//! decided on plain data: the store lists directories and reads files, these functions decide,
//! so that the decisions are tested without a filesystem.

use std::collections::BTreeMap;

use crate::format::{epoch_file, is_part_file, INCREMENTAL_SUFFIX};

/// An epoch directory of a checkpoint directory, as the store lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EpochDir {
    /// Its epoch.
    pub(crate) epoch: u64,
    /// Whether it has a manifest (the checkpoint is complete, if its files are intact).
    pub(crate) complete: bool,
}

/// The checkpoints a store tries to restore, in that order: the complete ones, newest first.
/// It restores the first whose files are all intact, falling back to the next otherwise.
pub(crate) fn restore_candidates(dirs: &[EpochDir]) -> Vec<u64> {
    let mut epochs: Vec<u64> = dirs.iter().filter(|d| d.complete).map(|d| d.epoch).collect();
    epochs.sort_unstable_by(|a, b| b.cmp(a));
    epochs
}

/// The newest complete checkpoint at or after epoch `from`.
pub(crate) fn newest_complete(dirs: &[EpochDir], from: u64) -> Option<u64> {
    dirs.iter()
        .filter(|d| d.complete && d.epoch >= from)
        .map(|d| d.epoch)
        .max()
}

/// The first epoch of a run that restored checkpoint `restored`: the next one, or 0 for a run
/// that restored nothing.
pub(crate) fn start_epoch(restored: Option<u64>) -> u64 {
    restored.map_or(0, |e| e + 1)
}

/// The epoch whose manifest to write now that the sinks report `reports` (per sink, the newest
/// epoch up to which it has seen every epoch complete; `None` if none yet), when `committed`
/// is the newest epoch completed so far in a run that started at `start_epoch`: the oldest
/// report, once every sink has one and it is new and of this run.
pub(crate) fn epoch_to_complete(
    reports: impl IntoIterator<Item = Option<u64>>,
    committed: Option<u64>,
    start_epoch: u64,
) -> Option<u64> {
    let all = reports.into_iter().min().flatten()?;
    let done = committed.is_some_and(|done| done >= all) || all < start_epoch;
    (!done).then_some(all)
}

/// The files a manifest lists, given every file of the run's epoch directories up to the
/// manifest's epoch (epoch, file name): of each operator and worker its newest full snapshot
/// and the incremental ones after it (all of them if it has no full one), as paths relative to
/// the checkpoint directory, oldest first. A restore applies them in that order (an
/// operator's newer parts replace older ones, an incremental snapshot only holds what
/// changed), and older checkpoints can be deleted while the job runs.
pub(crate) fn manifest_files(written: impl IntoIterator<Item = (u64, String)>) -> Vec<String> {
    // Per operator and worker: its files (epoch, name), and the epoch of its newest full one.
    let mut by_writer: BTreeMap<String, (Vec<(u64, String)>, u64)> = BTreeMap::new();
    for (epoch, name) in written {
        if !is_part_file(&name) {
            continue;
        }
        let writer = name.strip_suffix(INCREMENTAL_SUFFIX);
        let (files, full_from) = by_writer.entry(writer.unwrap_or(&name).to_string()).or_default();
        if writer.is_none() {
            *full_from = (*full_from).max(epoch);
        }
        files.push((epoch, name));
    }
    let mut files: Vec<String> = by_writer
        .into_values()
        .flat_map(|(files, full_from)| {
            files
                .into_iter()
                .filter(move |(e, _)| *e >= full_from)
                .map(|(e, name)| epoch_file(e, &name))
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(listing: &[(u64, bool)]) -> Vec<EpochDir> {
        listing
            .iter()
            .map(|&(epoch, complete)| EpochDir { epoch, complete })
            .collect()
    }

    #[test]
    fn a_restore_tries_the_complete_checkpoints_newest_first() {
        let listing = dirs(&[(3, true), (7, false), (5, true), (1, true)]);
        assert_eq!(restore_candidates(&listing), vec![5, 3, 1]);
        assert!(restore_candidates(&dirs(&[(2, false)])).is_empty());
        assert!(restore_candidates(&[]).is_empty());
    }

    #[test]
    fn the_newest_complete_checkpoint_from_an_epoch_on() {
        let listing = dirs(&[(3, true), (7, false), (5, true)]);
        assert_eq!(newest_complete(&listing, 0), Some(5));
        assert_eq!(newest_complete(&listing, 5), Some(5));
        assert_eq!(newest_complete(&listing, 6), None, "7 has no manifest");
        assert_eq!(newest_complete(&[], 0), None);
    }

    #[test]
    fn a_run_starts_after_the_checkpoint_it_restored() {
        assert_eq!(start_epoch(None), 0);
        assert_eq!(start_epoch(Some(0)), 1);
        assert_eq!(start_epoch(Some(41)), 42);
    }

    #[test]
    fn a_checkpoint_completes_when_every_sink_has_seen_it_once() {
        assert_eq!(epoch_to_complete([], None, 0), None, "no sink, no completion");
        assert_eq!(
            epoch_to_complete([Some(3), None], None, 0),
            None,
            "a sink saw nothing yet"
        );
        assert_eq!(
            epoch_to_complete([Some(3), Some(5)], None, 0),
            Some(3),
            "the slowest sink"
        );
        assert_eq!(epoch_to_complete([Some(3), Some(5)], Some(2), 0), Some(3));
        assert_eq!(
            epoch_to_complete([Some(3), Some(5)], Some(3), 0),
            None,
            "already complete"
        );
        assert_eq!(epoch_to_complete([Some(3)], Some(4), 0), None);
        assert_eq!(
            epoch_to_complete([Some(3)], None, 4),
            None,
            "an epoch of the previous run"
        );
        assert_eq!(epoch_to_complete([Some(4)], None, 4), Some(4));
    }

    fn written(files: &[(u64, &str)]) -> Vec<(u64, String)> {
        files.iter().map(|&(e, name)| (e, name.to_string())).collect()
    }

    #[test]
    fn a_manifest_lists_each_writers_newest_full_snapshot_and_the_increments_after_it() {
        let files = written(&[
            (4, "window.w0"),
            (5, "window.w0.inc"),
            (6, "window.w0"),
            (7, "window.w0.inc"),
            (4, "window.w1"),
            (5, "window.w1.inc"),
            (4, "source.w0"),
            (7, "source.w0.inc"),
            (7, "MANIFEST"),
            (7, "job.json"),
            (7, "window.w1.inc.tmp"),
        ]);
        assert_eq!(
            manifest_files(files),
            vec![
                "chk-0000000004/source.w0",
                "chk-0000000004/window.w1",
                "chk-0000000005/window.w1.inc",
                "chk-0000000006/window.w0",
                "chk-0000000007/source.w0.inc",
                "chk-0000000007/window.w0.inc",
            ]
        );
    }

    #[test]
    fn a_manifest_keeps_every_increment_of_a_writer_without_a_full_snapshot_in_any_order() {
        let files = written(&[(9, "op.w0.inc"), (3, "op.w0.inc"), (5, "op.w0.inc")]);
        assert_eq!(
            manifest_files(files),
            vec![
                "chk-0000000003/op.w0.inc",
                "chk-0000000005/op.w0.inc",
                "chk-0000000009/op.w0.inc"
            ]
        );
        assert!(manifest_files(written(&[(1, "MANIFEST")])).is_empty());
    }
}
