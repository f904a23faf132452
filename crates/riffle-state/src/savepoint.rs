//! Savepoints: a checkpoint copied out of the directory a running job's retention prunes, so
//! that it outlives it; and the peek at a checkpoint's fingerprint that a job makes before it
//! opens its store. Both read a checkpoint directory from outside a running job.

use std::path::Path;

use riffle_core::{Error, Result};

use crate::fingerprint::{JobFingerprint, FINGERPRINT_FILE};
use crate::format::{epoch_file, manifest_file, read, read_manifest};
use crate::manifest;
use crate::storage::Storage;
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
    let (source, target) = (crate::storage::open(from)?, crate::storage::open(to)?);
    let target_empty = match target.local_dir() {
        Some(dir) if dir.exists() => std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none()),
        Some(_) => true,
        None => target.list_dirs()?.is_empty() && target.list_files("")?.is_empty(),
    };
    if !target_empty {
        return Err(Error::Config(format!(
            "savepoint --to {}: it already exists and is not an empty directory (a savepoint is written into a new directory, so that none is overwritten)",
            to.display()
        )));
    }
    for epoch in manifest::restore_candidates(&CheckpointStore::epoch_dirs(&*source)?) {
        if CheckpointStore::load(&*source, epoch).is_err() {
            continue;
        }
        let manifest = read_manifest(&*source, &manifest_file(epoch))?;
        // The fingerprint and the attempt before the manifest, as a checkpoint is written (an
        // older riffle's checkpoint may have neither: its savepoint neither).
        let mut extra = Vec::new();
        for name in [FINGERPRINT_FILE, crate::fence::ATTEMPT_FILE] {
            let rel = epoch_file(epoch, name);
            if source.exists(&rel)? {
                extra.push(rel);
            }
        }
        for rel in manifest
            .files
            .iter()
            .chain(extra.iter())
            .map(String::as_str)
            .chain([manifest_file(epoch).as_str()])
        {
            target.put(rel, &read(&*source, rel)?)?;
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
    /// `dir` may be an object store location (`s3://…`).
    pub fn newest_complete(dir: &Path) -> Result<Option<u64>> {
        let storage = crate::storage::open(dir)?;
        Ok(manifest::newest_complete(&CheckpointStore::epoch_dirs(&*storage)?, 0))
    }

    /// The newest checkpoint of `dir` with a manifest and the bytes of the files it lists (what
    /// a restore reads), for measurements.
    pub fn newest_checkpoint_bytes(dir: &Path) -> Result<Option<(u64, u64)>> {
        let storage = crate::storage::open(dir)?;
        let Some(epoch) = manifest::newest_complete(&CheckpointStore::epoch_dirs(&*storage)?, 0) else {
            return Ok(None);
        };
        let manifest = read_manifest(&*storage, &manifest_file(epoch))?;
        let mut bytes = 0;
        for rel in &manifest.files {
            bytes += storage.size(rel)?;
        }
        Ok(Some((epoch, bytes)))
    }

    /// The fingerprint of the checkpoint a store opened on `dir` would restore: that of its
    /// newest checkpoint with a manifest (`None` if there is none, or if that checkpoint has no
    /// fingerprint). Reads only that small file, for a job to adopt a setting it leaves to its
    /// checkpoint (say, a split count); [`CheckpointStore::open`] still checks the checkpoint
    /// it restores, which may be an older one if the newest is damaged.
    pub fn peek_fingerprint(dir: &Path) -> Result<Option<JobFingerprint>> {
        Self::peek_fingerprint_in(&*crate::storage::open(dir)?)
    }

    /// [`CheckpointStore::peek_fingerprint`] in `storage`.
    pub(crate) fn peek_fingerprint_in(storage: &dyn Storage) -> Result<Option<JobFingerprint>> {
        match manifest::newest_complete(&CheckpointStore::epoch_dirs(storage)?, 0) {
            Some(epoch) => read_fingerprint(storage, epoch),
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
