//! The checkpoint store: where the operators of a job write their snapshots, how a checkpoint
//! completes, and what a restarted job restores. It is the only place that reads and writes a
//! checkpoint directory while a job runs; the bytes are [`crate::format`]'s, the decisions
//! (what a manifest lists, what to restore, what to delete) those of the crate's `manifest`
//! and `retention` modules.
//!
//! Layout under the checkpoint directory:
//!
//! ```text
//! chk-0000000007/                      the files written for epoch 7
//!     <operator>.w<worker>.a<attempt>  one file per stateful operator and worker
//! chk-0000000007/job.json              the fingerprint of the job that took it
//! chk-0000000007/ATTEMPT               the attempt that took it
//! chk-0000000007/MANIFEST              written last: the checkpoint is complete
//! ATTEMPT                              the newest attempt (see the crate's `fence` module)
//! LOCK.p<process>                      held by the running process of each index
//! ```
//!
//! A manifest lists every file this run wrote at or before its epoch, oldest first: operators
//! write only what changed (the key groups touched since their last snapshot, nothing for a
//! finished source), and a restore takes each part's newest version. Recovery reads the newest
//! manifest whose files are all intact and falls back to the previous one otherwise. Plain files
//! were chosen over an embedded store (fjall, redb, rocksdb): a snapshot is written once and
//! read only on recovery, which is what files do best, they move to a shared filesystem or an
//! object store unchanged, and they cost no dependency.
//!
//! A checkpoint is restored only into a job with the same [`JobFingerprint`] (see
//! [`crate::fingerprint`]); the check comes before the store writes or deletes anything.
//!
//! A part is addressed by a `u32`: the key group for keyed state (so that a checkpoint restores
//! onto any number of workers), the split index for source positions.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use riffle_core::Result;

use crate::fingerprint::{JobFingerprint, FINGERPRINT_FILE};
use crate::format::{
    epoch_dir_name, epoch_file, manifest_file, parse_epoch_dir, part_file_attempt, part_file_name, read_manifest,
    read_part_file, seal_manifest, write_part_file, Manifest, PartHeader,
};
use crate::manifest::{self, EpochDir};
use crate::retention;
use crate::storage::Storage;

/// Where and how often to checkpoint.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// Time between checkpoints (sources cut an epoch at their next chunk boundary after it).
    pub interval: Duration,
    /// Complete checkpoints to keep (at least 2, so that a corrupt newest one has a fallback).
    pub retain: usize,
    /// What the job's state depends on: stored in every checkpoint, and compared with the
    /// fingerprint of the checkpoint [`CheckpointStore::open`] would restore.
    pub fingerprint: JobFingerprint,
}

/// Parts of a snapshot: (key group or split index, bytes).
pub type Parts = Vec<(u32, Vec<u8>)>;

/// Whether a snapshot holds an operator's whole state on a worker or only what changed since
/// its previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotKind {
    /// Everything: older files of the operator and worker are no longer needed.
    Full,
    /// What changed: a restore needs the files back to the last full one.
    Incremental,
}

/// What a recovery restored.
pub(crate) struct Restored {
    epoch: u64,
    /// The attempt that took the checkpoint.
    attempt: u64,
    parts: HashMap<String, Arc<Parts>>,
}

/// Checkpoints of one job: written by the operators of every worker of this process, read at
/// start-up. The runtime shares one store among its workers (riffle-runtime's `JobContext`).
pub struct CheckpointStore {
    config: CheckpointConfig,
    /// Where the files are (the directory or object store of `config.dir`).
    storage: Arc<dyn Storage>,
    /// The lock of this process's index on the directory, held while the store is open (see
    /// [`CheckpointStore::open_exclusive`]).
    _lock: Option<std::fs::File>,
    restored: Option<Restored>,
    /// This run's attempt number (see the crate's `fence` module).
    attempt: AtomicU64,
    /// The first epoch of this run.
    start_epoch: u64,
    /// Completion reports of the job's sinks on worker 0: sink id → newest complete epoch.
    completion: Mutex<CompletionState>,
}

#[derive(Default)]
struct CompletionState {
    sinks: BTreeMap<usize, Option<u64>>,
    committed: Option<u64>,
}

impl CheckpointStore {
    /// Opens the checkpoint directory, restoring its newest intact checkpoint if there is one.
    ///
    /// Fails with [`Error::Config`], before it creates or deletes anything, if that checkpoint
    /// was taken by a job with another [`JobFingerprint`] than `config.fingerprint` (the error
    /// names each difference). A checkpoint without a fingerprint (taken by an older riffle) is
    /// restored with a warning.
    pub fn open(config: CheckpointConfig) -> Result<Self> {
        Self::open_with_lock(config, None)
    }

    /// [`CheckpointStore::open`] for a job's process `process`, which takes the lock
    /// `DIR/LOCK.p<process>` (one per process index, so the processes of a cluster job share
    /// the directory), held until the store is dropped. Another instance of the job holding it
    /// fails this one before it changes anything in the directory, with an error naming the
    /// directory and the holder's pid and host.
    ///
    /// Process 0 starts a new attempt (see [`CheckpointStore::attempt`]); the other processes
    /// read the newest and take process 0's from the cluster handshake
    /// ([`CheckpointStore::adopt_attempt`]) before they write anything.
    pub fn open_exclusive(config: CheckpointConfig, process: usize) -> Result<Self> {
        Self::open_with_lock(config, Some(process))
    }

    fn open_with_lock(config: CheckpointConfig, process: Option<usize>) -> Result<Self> {
        let storage = crate::storage::open(&config.dir)?;
        // Nothing is written before the fingerprint check, not even the lock file: a refused
        // job leaves the directory as it found it.
        let mut restored = Self::restore(&*storage, &config)?;
        // Two instances of a job on one directory would delete and rename each other's files:
        // the second one stops here, having written nothing. Object storage has no lock: there
        // the attempt number alone fences (the newest start wins).
        let lock = match (process, storage.local_dir()) {
            (Some(p), Some(dir)) => Some(crate::fence::lock_directory(dir, p)?),
            _ => None,
        };
        // What was read before the lock was taken may have been written by an instance that
        // has ended since: read again if there is a newer checkpoint now.
        let newest = manifest::newest_complete(&Self::epoch_dirs(&*storage)?, 0);
        if lock.is_some() && newest != restored.as_ref().map(|r| r.epoch) {
            restored = Self::restore(&*storage, &config)?;
        }
        storage.create()?;
        let attempt = match process.unwrap_or(0) {
            0 => crate::fence::next_attempt(&*storage, restored.as_ref().map_or(0, |r| r.attempt))?,
            _ => crate::fence::current_attempt(&*storage)?,
        };
        if let (Some(file), Some(p), Some(dir)) = (&lock, process, storage.local_dir()) {
            crate::fence::write_holder(file, dir, p)?;
        }
        let start_epoch = manifest::start_epoch(restored.as_ref().map(|r| r.epoch));
        for epoch in retention::stale_epochs(&Self::epochs(&*storage)?, start_epoch) {
            storage.remove_dir(&epoch_dir_name(epoch))?;
        }
        Ok(CheckpointStore {
            config,
            storage,
            _lock: lock,
            restored,
            attempt: AtomicU64::new(attempt),
            start_epoch,
            completion: Mutex::new(CompletionState::default()),
        })
    }

    /// The newest intact checkpoint of `storage`, checked against the job's fingerprint (the
    /// damaged ones newer than it are reported and skipped).
    fn restore(storage: &dyn Storage, config: &CheckpointConfig) -> Result<Option<Restored>> {
        let dirs = Self::epoch_dirs(storage)?;
        for epoch in manifest::restore_candidates(&dirs) {
            let loaded = Self::load(storage, epoch).and_then(|r| Ok((r, read_fingerprint(storage, epoch)?)));
            match loaded {
                Ok((r, taken)) => {
                    match taken {
                        Some(taken) => config.fingerprint.check_restore(&taken, &config.dir)?,
                        None => tracing::warn!(
                            "checkpoint {epoch} in {} has no job fingerprint (an older riffle took it): restoring it without checking that this job took it",
                            config.dir.display()
                        ),
                    }
                    tracing::info!("restoring checkpoint {epoch} from {}", config.dir.display());
                    return Ok(Some(r));
                }
                Err(e) => tracing::warn!("checkpoint {epoch} cannot be restored ({e}); trying the previous one"),
            }
        }
        Ok(None)
    }

    /// The epochs of the checkpoint directories in `storage`.
    pub(crate) fn epochs(storage: &dyn Storage) -> Result<Vec<u64>> {
        Ok(storage
            .list_dirs()?
            .iter()
            .filter_map(|name| parse_epoch_dir(name))
            .collect())
    }

    /// The checkpoint directories in `storage`, each with whether it has a manifest.
    pub(crate) fn epoch_dirs(storage: &dyn Storage) -> Result<Vec<EpochDir>> {
        Self::epochs(storage)?
            .into_iter()
            .map(|epoch| {
                Ok(EpochDir {
                    epoch,
                    complete: storage.exists(&manifest_file(epoch))?,
                })
            })
            .collect()
    }

    /// Reads checkpoint `epoch` (its manifest and every file it lists, checked).
    pub(crate) fn load(storage: &dyn Storage, epoch: u64) -> Result<Restored> {
        let manifest = read_manifest(storage, &manifest_file(epoch))?;
        let mut parts: HashMap<String, Parts> = HashMap::new();
        for rel in &manifest.files {
            let (header, file_parts) = read_part_file(storage, rel)?;
            parts.entry(header.operator).or_default().extend(file_parts);
        }
        // 0: a checkpoint of a riffle that did not number its attempts.
        let attempt =
            crate::fence::read_attempt(storage, &epoch_file(manifest.epoch, crate::fence::ATTEMPT_FILE))?.unwrap_or(0);
        Ok(Restored {
            epoch: manifest.epoch,
            attempt,
            parts: parts.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CheckpointConfig {
        &self.config
    }

    /// The epoch of the restored checkpoint, if any.
    pub fn restored_epoch(&self) -> Option<u64> {
        self.restored.as_ref().map(|r| r.epoch)
    }

    /// The attempt that took the restored checkpoint, if any (0 for a riffle that did not
    /// number its attempts).
    pub fn restored_attempt(&self) -> Option<u64> {
        self.restored.as_ref().map(|r| r.attempt)
    }

    /// This run's attempt number: every start of a job increments it (process 0 does, when it
    /// opens the store), the files this run writes carry it, and its commits check that no
    /// newer attempt has started ([`CheckpointStore::check_fence`]).
    pub fn attempt(&self) -> u64 {
        self.attempt.load(Ordering::Relaxed)
    }

    /// Takes the attempt number process 0 started (the other processes of a cluster learn it
    /// in the handshake), before anything is written.
    pub fn adopt_attempt(&self, attempt: u64) {
        self.attempt.store(attempt, Ordering::Relaxed);
    }

    /// Fails with [`Error::Fenced`] when a newer attempt of the job has started: this process
    /// is a zombie and must not do `what` (a commit). Every commit calls it first.
    pub fn check_fence(&self, what: &str) -> Result<()> {
        crate::fence::check_attempt(&*self.storage, self.attempt(), what)
    }

    /// The first epoch of this run: one past the restored checkpoint, or 0.
    pub fn start_epoch(&self) -> u64 {
        self.start_epoch
    }

    /// The restored parts of `operator` (of every worker of the run that wrote them), shared
    /// by the workers that restore it.
    pub fn restored_parts(&self, operator: &str) -> Arc<Parts> {
        self.restored
            .as_ref()
            .and_then(|r| r.parts.get(operator))
            .cloned()
            .unwrap_or_default()
    }

    /// Writes `worker`'s parts of `operator` for `epoch`.
    pub fn write(
        &self,
        epoch: u64,
        operator: &str,
        worker: usize,
        parts: Vec<(u32, Vec<u8>)>,
        kind: SnapshotKind,
    ) -> Result<()> {
        let header = PartHeader {
            epoch,
            operator: operator.to_string(),
            worker: worker as u32,
            parts: parts.len() as u64,
        };
        let name = part_file_name(operator, worker, kind, self.attempt());
        write_part_file(&*self.storage, &epoch_file(epoch, &name), &header, &parts)
    }

    /// The newest complete checkpoint of this run, if any; one at or past `wanted` if there is
    /// one. Process 0 completes checkpoints (its worker 0 registers the sinks); the other
    /// processes of a job see its manifests in the shared location, so they look there when
    /// what they know is older than `wanted`.
    pub fn completed_epoch(&self, wanted: u64) -> Option<u64> {
        let (known, completes_here) = {
            let c = self.completion.lock().unwrap_or_else(|p| p.into_inner());
            (c.committed, !c.sinks.is_empty())
        };
        // The process whose sinks complete checkpoints knows; only the others look.
        if completes_here || known.is_some_and(|k| k >= wanted) {
            return known;
        }
        // A zombie (a newer attempt has started) learns of no checkpoint the newer one completes:
        // its sinks would deliver what they hold for them.
        if self.check_fence("look for completed checkpoints").is_err() {
            return known;
        }
        let stored = Self::epoch_dirs(&*self.storage)
            .ok()
            .and_then(|dirs| manifest::newest_complete(&dirs, self.start_epoch));
        known.max(stored)
    }

    /// Registers a sink whose completions decide when checkpoints are complete; returns its id.
    /// For the engine: the sinks of worker 0 of process 0 register, and report with
    /// [`CheckpointStore::sink_complete`].
    pub fn register_sink(&self) -> usize {
        let mut c = self.completion.lock().unwrap_or_else(|p| p.into_inner());
        let id = c.sinks.len();
        c.sinks.insert(id, None);
        id
    }

    /// Sink `id` (on worker 0) has seen every epoch up to `epoch` complete. When every sink
    /// has, writes the manifest of the newest such epoch, deletes the checkpoints retention no
    /// longer keeps, and returns the epoch (for the commit of transactional sinks).
    pub fn sink_complete(&self, id: usize, epoch: u64) -> Result<Option<u64>> {
        let mut c = self.completion.lock().unwrap_or_else(|p| p.into_inner());
        c.sinks.insert(id, Some(epoch));
        let Some(all) = manifest::epoch_to_complete(c.sinks.values().copied(), c.committed, self.start_epoch) else {
            return Ok(None);
        };
        self.check_fence(&format!("complete checkpoint {all}"))?;
        self.write_manifest(all)?;
        tracing::debug!("checkpoint {all} complete in {}", self.config.dir.display());
        c.committed = Some(all);
        self.retain()?;
        Ok(Some(all))
    }

    /// Writes the manifest of `epoch` (what it lists: [`manifest::manifest_files`] of the files
    /// this attempt wrote; a zombie's are never listed), after the job's fingerprint and the
    /// attempt.
    fn write_manifest(&self, epoch: u64) -> Result<()> {
        let storage = &*self.storage;
        let attempt = self.attempt();
        let mut written = Vec::new();
        for e in Self::epochs(storage)? {
            if !(self.start_epoch..=epoch).contains(&e) {
                continue;
            }
            written.extend(
                storage
                    .list_files(&epoch_dir_name(e))?
                    .into_iter()
                    .filter(|name| part_file_attempt(name) == attempt)
                    .map(|name| (e, name)),
            );
        }
        let files = manifest::manifest_files(written);
        let sealed = seal_manifest(&Manifest { epoch, files })?;
        // The fingerprint and the attempt first: a checkpoint is complete (and restorable) once
        // its manifest exists, and then it has them. On object storage too: each file is one
        // PUT, the manifest's last.
        storage.put(
            &epoch_file(epoch, FINGERPRINT_FILE),
            self.config.fingerprint.to_json()?.as_bytes(),
        )?;
        storage.put(
            &epoch_file(epoch, crate::fence::ATTEMPT_FILE),
            attempt.to_string().as_bytes(),
        )?;
        storage.put(&manifest_file(epoch), &sealed)
    }

    /// Deletes checkpoints older than the `retain` newest complete ones, keeping every
    /// directory a retained manifest refers to (see [`retention::kept_checkpoints`] and
    /// [`retention::epochs_to_delete`]).
    fn retain(&self) -> Result<()> {
        let storage = &*self.storage;
        let complete: Vec<u64> = Self::epoch_dirs(storage)?
            .into_iter()
            .filter(|d| d.complete)
            .map(|d| d.epoch)
            .collect();
        let Some(kept) = retention::kept_checkpoints(&complete, self.config.retain) else {
            return Ok(());
        };
        // A manifest that cannot be read refers to nothing but its own directory.
        let kept_files: Vec<String> = kept
            .iter()
            .filter_map(|&e| read_manifest(storage, &manifest_file(e)).ok())
            .flat_map(|m| m.files)
            .collect();
        for e in retention::epochs_to_delete(&Self::epochs(storage)?, &kept, kept_files.iter().map(String::as_str)) {
            let _ = storage.remove_dir(&epoch_dir_name(e));
        }
        Ok(())
    }
}

/// The fingerprint stored in checkpoint `epoch`; `None` if it has none (an older riffle took
/// it).
pub(crate) fn read_fingerprint(storage: &dyn Storage, epoch: u64) -> Result<Option<JobFingerprint>> {
    let rel = epoch_file(epoch, FINGERPRINT_FILE);
    match storage.get(&rel)? {
        Some(bytes) => JobFingerprint::from_json(&String::from_utf8_lossy(&bytes), &storage.show(&rel)).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::epoch_dir_name;
    use riffle_core::Error;
    use std::path::Path;

    fn epoch_dir(root: &Path, epoch: u64) -> PathBuf {
        root.join(epoch_dir_name(epoch))
    }

    pub(crate) fn config(dir: &Path) -> CheckpointConfig {
        CheckpointConfig {
            dir: dir.to_path_buf(),
            interval: Duration::from_millis(100),
            retain: 2,
            fingerprint: JobFingerprint::new("test").with("--window", "10s"),
        }
    }

    #[test]
    fn a_complete_checkpoint_is_restored_and_a_corrupt_one_falls_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(config(dir.path())).expect("open");
        let sink = store.register_sink();
        for epoch in 0..3u64 {
            let kind = if epoch == 0 {
                SnapshotKind::Full
            } else {
                SnapshotKind::Incremental
            };
            store
                .write(epoch, "op", 0, vec![(7, vec![epoch as u8; 10])], kind)
                .expect("write");
            assert_eq!(store.sink_complete(sink, epoch).expect("complete"), Some(epoch));
        }
        let restored = CheckpointStore::open(config(dir.path())).expect("reopen");
        assert_eq!(restored.restored_epoch(), Some(2));
        assert_eq!(restored.restored_parts("op").last(), Some(&(7, vec![2u8; 10])));
        // Corrupt the newest part file: recovery falls back to epoch 1.
        let newest = epoch_dir(dir.path(), 2).join("op.w0.a1.inc");
        let mut bytes = std::fs::read(&newest).expect("read");
        let n = bytes.len();
        bytes[n / 2] ^= 0x40;
        std::fs::write(&newest, &bytes).expect("corrupt");
        let restored = CheckpointStore::open(config(dir.path())).expect("reopen");
        assert_eq!(restored.restored_epoch(), Some(1));
        assert_eq!(restored.restored_parts("op").last(), Some(&(7, vec![1u8; 10])));
        // Truncate it too: epoch 1 becomes unusable; epoch 0 was kept, as retained manifests
        // refer to it (their incremental chain starts from its full snapshot).
        let e1 = epoch_dir(dir.path(), 1).join("op.w0.a1.inc");
        let bytes = std::fs::read(&e1).expect("read");
        std::fs::write(&e1, &bytes[..bytes.len() - 3]).expect("truncate");
        let restored = CheckpointStore::open(config(dir.path())).expect("reopen");
        assert_eq!(restored.restored_epoch(), Some(0));
    }

    #[test]
    fn an_operator_without_a_new_file_is_found_in_an_earlier_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(config(dir.path())).expect("open");
        let sink = store.register_sink();
        let full = SnapshotKind::Full;
        store
            .write(0, "finished-source", 0, vec![(0, vec![1])], full)
            .expect("write");
        store.write(0, "window", 0, vec![(3, vec![2])], full).expect("write");
        store.sink_complete(sink, 0).expect("complete");
        let delta = SnapshotKind::Incremental;
        store.write(1, "window", 0, vec![(3, vec![3])], delta).expect("write");
        store.sink_complete(sink, 1).expect("complete");
        let r = CheckpointStore::open(config(dir.path())).expect("reopen");
        assert_eq!(r.restored_epoch(), Some(1));
        assert_eq!(*r.restored_parts("finished-source"), vec![(0, vec![1])]);
        assert_eq!(
            *r.restored_parts("window"),
            vec![(3, vec![2]), (3, vec![3])],
            "oldest first"
        );
        assert_eq!(r.start_epoch(), 2);
    }

    #[test]
    fn a_full_snapshot_ends_the_chain_and_older_checkpoints_are_deleted_while_the_job_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(config(dir.path())).expect("open");
        let sink = store.register_sink();
        for epoch in 0..10u64 {
            let kind = if epoch % 4 == 0 {
                SnapshotKind::Full
            } else {
                SnapshotKind::Incremental
            };
            store
                .write(epoch, "window", 0, vec![(3, vec![epoch as u8])], kind)
                .expect("write");
            store.sink_complete(sink, epoch).expect("complete");
        }
        // The newest full snapshot is epoch 8: epochs 8 and 9 are all a restore needs; the
        // retained checkpoints (8, 9) do not refer to anything older, which is gone.
        let r = CheckpointStore::open(config(dir.path())).expect("reopen");
        assert_eq!(*r.restored_parts("window"), vec![(3, vec![8]), (3, vec![9])]);
        let mut left = CheckpointStore::epochs(&*crate::storage::open(dir.path()).expect("storage")).expect("epochs");
        left.sort_unstable();
        assert_eq!(left, vec![8, 9]);
    }

    /// Every path under `dir` with its bytes, to show that a refused restore changed nothing.
    pub(crate) fn listing(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).expect("list").map(|e| e.expect("entry")) {
                let p = entry.path();
                if p.is_dir() {
                    todo.push(p.clone());
                    out.push((p, Vec::new()));
                } else {
                    out.push((p.clone(), std::fs::read(&p).expect("read")));
                }
            }
        }
        out.sort();
        out
    }

    /// A store on `dir` with two complete checkpoints (epochs 0 and 1) and an interrupted
    /// epoch 2 (files, no manifest).
    pub(crate) fn two_checkpoints_and_an_interrupted_one(dir: &Path) {
        let store = CheckpointStore::open(config(dir)).expect("open");
        let sink = store.register_sink();
        for epoch in 0..2u64 {
            store
                .write(epoch, "op", 0, vec![(1, vec![epoch as u8])], SnapshotKind::Full)
                .expect("write");
            store.sink_complete(sink, epoch).expect("complete");
        }
        store
            .write(2, "op", 0, vec![(1, vec![2])], SnapshotKind::Full)
            .expect("write");
    }

    #[test]
    fn a_checkpoint_of_another_job_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        two_checkpoints_and_an_interrupted_one(dir.path());
        let fingerprint = std::fs::read_to_string(epoch_dir(dir.path(), 1).join(FINGERPRINT_FILE)).expect("stored");
        assert!(fingerprint.contains("\"--window\": \"10s\""), "{fingerprint}");
        let before = listing(dir.path());
        let mut other = config(dir.path());
        other.fingerprint = JobFingerprint::new("test").with("--window", "5s");
        let e = CheckpointStore::open(other).err().expect("refused");
        assert!(matches!(e, Error::Config(_)), "{e}");
        assert!(
            e.to_string().contains("with --window 10s; this job has --window 5s"),
            "{e}"
        );
        // Not even the interrupted epoch 2, which an accepted restore deletes, is touched.
        assert_eq!(listing(dir.path()), before);
        let same = CheckpointStore::open(config(dir.path())).expect("the same job restores");
        assert_eq!(same.restored_epoch(), Some(1));
    }

    #[test]
    fn a_checkpoint_without_a_fingerprint_is_restored() {
        let dir = tempfile::tempdir().expect("tempdir");
        two_checkpoints_and_an_interrupted_one(dir.path());
        for epoch in 0..2 {
            std::fs::remove_file(epoch_dir(dir.path(), epoch).join(FINGERPRINT_FILE)).expect("remove");
        }
        assert_eq!(CheckpointStore::peek_fingerprint(dir.path()).expect("peek"), None);
        let mut other = config(dir.path());
        other.fingerprint = JobFingerprint::new("anything");
        let store = CheckpointStore::open(other).expect("restored with a warning");
        assert_eq!(store.restored_epoch(), Some(1));
    }

    #[test]
    fn a_missing_directory_is_created_only_when_the_store_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ck = dir.path().join("new");
        assert_eq!(CheckpointStore::peek_fingerprint(&ck).expect("peek"), None);
        assert!(!ck.exists());
        let store = CheckpointStore::open(config(&ck)).expect("open");
        assert_eq!(store.restored_epoch(), None);
        assert!(ck.is_dir());
    }
}
