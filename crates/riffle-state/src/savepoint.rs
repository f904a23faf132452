//! Savepoints: a checkpoint copied out of the directory a running job's retention prunes, so
//! that it outlives it; and the peek at a checkpoint's fingerprint that a job makes before it
//! opens its store. Both read a checkpoint directory from outside a running job.

use std::path::Path;

use riffle_core::{Error, Result};

use crate::fingerprint::{JobFingerprint, FINGERPRINT_FILE};
use crate::format::{epoch_file, manifest_path, read, read_manifest, write_atomically, MANIFEST_FILE};
use crate::manifest;
use crate::store::{read_fingerprint, CheckpointStore};

/// Copies the newest intact checkpoint of `from` into `to` as a savepoint: a self-contained
/// checkpoint directory (its manifest and every file the manifest names) that a job restores
/// from with `--checkpoint-dir`, on any number of workers, however long the original
/// directory's retention keeps running. The savepoint carries the checkpoint's
/// [`JobFingerprint`], so that a restore from it is checked as one from `from` would be.
/// Returns the savepoint's epoch.
///
/// `to` must not exist or be an empty directory: a savepoint never overwrites another one (or
/// anything else); the refusal writes nothing.
pub fn savepoint(from: &Path, to: &Path) -> Result<u64> {
    if to.exists() {
        let empty_dir = std::fs::read_dir(to).is_ok_and(|mut entries| entries.next().is_none());
        if !empty_dir {
            return Err(Error::Config(format!(
                "savepoint --to {}: it already exists and is not an empty directory (a savepoint is written into a new directory, so that none is overwritten)",
                to.display()
            )));
        }
    }
    for epoch in manifest::restore_candidates(&CheckpointStore::epoch_dirs(from)?) {
        let manifest_path = manifest_path(from, epoch);
        if CheckpointStore::load(from, &manifest_path).is_err() {
            continue;
        }
        let manifest = read_manifest(&manifest_path)?;
        // The fingerprint before the manifest, as a checkpoint is written (an older riffle's
        // checkpoint has none: its savepoint neither).
        let fingerprint = epoch_file(epoch, FINGERPRINT_FILE);
        let fingerprint = from.join(&fingerprint).exists().then_some(fingerprint);
        // The attempt that took it, likewise (see the crate's `fence` module).
        let attempt = epoch_file(epoch, crate::fence::ATTEMPT_FILE);
        let attempt = from.join(&attempt).exists().then_some(attempt);
        for rel in manifest
            .files
            .iter()
            .map(String::as_str)
            .chain(fingerprint.as_deref())
            .chain(attempt.as_deref())
            .chain([epoch_file(epoch, MANIFEST_FILE).as_str()])
        {
            let (src, dst) = (from.join(rel), to.join(rel));
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                    what: "cannot create",
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            write_atomically(&dst, &read(&src)?)?;
        }
        return Ok(epoch);
    }
    Err(Error::Config(format!(
        "{} holds no complete checkpoint",
        from.display()
    )))
}

impl CheckpointStore {
    /// The epoch of the newest checkpoint of `dir` with a manifest (`None` if there is none, or
    /// no directory): how a supervisor watching from outside sees that a job makes progress.
    pub fn newest_complete(dir: &Path) -> Result<Option<u64>> {
        if !dir.is_dir() {
            return Ok(None);
        }
        Ok(manifest::newest_complete(&CheckpointStore::epoch_dirs(dir)?, 0))
    }

    /// The fingerprint of the checkpoint a store opened on `dir` would restore: that of its
    /// newest checkpoint with a manifest (`None` if there is none, or if that checkpoint has no
    /// fingerprint). Reads only that small file, for a job to adopt a setting it leaves to its
    /// checkpoint (say, a split count); [`CheckpointStore::open`] still checks the checkpoint
    /// it restores, which may be an older one if the newest is damaged.
    pub fn peek_fingerprint(dir: &Path) -> Result<Option<JobFingerprint>> {
        if !dir.is_dir() {
            return Ok(None);
        }
        match manifest::newest_complete(&CheckpointStore::epoch_dirs(dir)?, 0) {
            Some(epoch) => read_fingerprint(dir, epoch),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{config, listing, two_checkpoints_and_an_interrupted_one};

    #[test]
    fn a_savepoint_carries_the_fingerprint_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ck = dir.path().join("ck");
        two_checkpoints_and_an_interrupted_one(&ck);
        let to = dir.path().join("save");
        assert_eq!(savepoint(&ck, &to).expect("savepoint"), 1);
        assert_eq!(
            CheckpointStore::peek_fingerprint(&to).expect("peek"),
            Some(config(&ck).fingerprint)
        );
        let mut other = config(&to);
        other.fingerprint = JobFingerprint::new("test");
        assert!(
            CheckpointStore::open(other).is_err(),
            "a restore from the savepoint is checked"
        );
        // An existing savepoint (or any non-empty directory, or a file) is not overwritten.
        let before = listing(&to);
        let e = savepoint(&ck, &to).expect_err("refused");
        assert!(e.to_string().contains(&to.display().to_string()), "{e}");
        assert_eq!(listing(&to), before);
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert!(savepoint(&ck, &file).is_err());
        assert_eq!(std::fs::read(&file).expect("read"), b"x");
        // An empty directory is fine (e.g. from mktemp -d).
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        assert_eq!(savepoint(&ck, &empty).expect("savepoint"), 1);
    }
}
