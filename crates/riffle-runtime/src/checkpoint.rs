//! Checkpoint storage: per-operator snapshot files, manifests, recovery and retention.
//!
//! Layout under the checkpoint directory:
//!
//! ```text
//! chk-0000000007/                      the files written for epoch 7
//!     <operator>.w<worker>             one file per stateful operator and worker
//! chk-0000000007/job.json              the fingerprint of the job that took it
//! chk-0000000007/MANIFEST              written last: the checkpoint is complete
//! ```
//!
//! Every file is `magic | format version | bincode body | XXH3-64 of all before`, written to a
//! temporary name, synced and renamed, so a reader never sees half a file and detects any
//! corruption. A manifest lists every file this run wrote at or before its epoch, oldest first:
//! operators write only what changed (the key groups touched since their last snapshot, nothing
//! for a finished source), and a restore takes each part's newest version. Recovery reads the
//! newest manifest whose files are all intact and falls back to the previous one otherwise. Plain files were chosen
//! over an embedded store (fjall, redb, rocksdb): a snapshot is written once and read only on
//! recovery, which is what files do best, they move to a shared filesystem or an object store
//! unchanged, and they cost no dependency.
//!
//! A checkpoint is restored only into a job with the same [`JobFingerprint`] (see
//! [`crate::fingerprint`]); the check comes before the store writes or deletes anything.
//!
//! A part is addressed by a `u32`: the key group for keyed state (so that a checkpoint restores
//! onto any number of workers), the split index for source positions.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use riffle_core::{Error, Result};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

pub use crate::fingerprint::{FingerprintDifference, JobFingerprint, FINGERPRINT_FILE};

const PART_MAGIC: &[u8; 4] = b"RFCK";
const MANIFEST_MAGIC: &[u8; 4] = b"RFMF";
const VERSION: u8 = 1;

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

/// A part file's header; the parts follow as `id: u32 LE | length: u64 LE | bytes` (framed by
/// hand: bincode would encode the bytes one by one).
#[derive(Serialize, Deserialize)]
struct PartHeader {
    epoch: u64,
    operator: String,
    worker: u32,
    parts: u64,
}

/// Writes a part file's body (header, then each part framed) to `out`.
fn write_part_file(out: &mut impl Write, header: &PartHeader, parts: &[(u32, Vec<u8>)]) -> std::io::Result<()> {
    let head = bincode::serialize(header).map_err(std::io::Error::other)?;
    out.write_all(&(head.len() as u64).to_le_bytes())?;
    out.write_all(&head)?;
    for (id, bytes) in parts {
        out.write_all(&id.to_le_bytes())?;
        out.write_all(&(bytes.len() as u64).to_le_bytes())?;
        out.write_all(bytes)?;
    }
    Ok(())
}

/// A writer that checksums what passes through it (XXH3, as [`seal`] does).
struct Checksummed<W> {
    inner: W,
    sum: xxhash_rust::xxh3::Xxh3,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn decode_part_file(body: &[u8], path: &Path) -> Result<(PartHeader, Parts)> {
    let bad = |why: String| Error::Execution(format!("checkpoint file {} is unusable: {why}", path.display()));
    let take = |at: &mut usize, n: usize| -> Result<&[u8]> {
        let end = at
            .checked_add(n)
            .filter(|e| *e <= body.len())
            .ok_or_else(|| bad("truncated part".into()))?;
        let slice = &body[*at..end];
        *at = end;
        Ok(slice)
    };
    let mut at = 0usize;
    let u64_at = |at: &mut usize| -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(take(at, 8)?);
        Ok(u64::from_le_bytes(b))
    };
    let head_len = u64_at(&mut at)? as usize;
    let header: PartHeader = bincode::deserialize(take(&mut at, head_len)?).map_err(|e| bad(e.to_string()))?;
    let mut parts = Vec::with_capacity((header.parts as usize).min(1 << 20));
    for _ in 0..header.parts {
        let mut id = [0u8; 4];
        id.copy_from_slice(take(&mut at, 4)?);
        let len = u64_at(&mut at)? as usize;
        parts.push((u32::from_le_bytes(id), take(&mut at, len)?.to_vec()));
    }
    if at != body.len() {
        return Err(bad(format!("{} bytes after the last part", body.len() - at)));
    }
    Ok((header, parts))
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    epoch: u64,
    /// Files relative to the checkpoint directory.
    files: Vec<String>,
}

/// What a recovery restored.
struct Restored {
    epoch: u64,
    parts: HashMap<String, std::sync::Arc<Parts>>,
}

/// Checkpoints of one job: written by the operators of every worker of this process, read at
/// start-up. Shared through the [`JobContext`](crate::JobContext).
pub struct CheckpointStore {
    config: CheckpointConfig,
    restored: Option<Restored>,
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

fn seal(magic: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 13);
    out.extend_from_slice(magic);
    out.push(VERSION);
    out.extend_from_slice(body);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

fn open_sealed<'a>(magic: &[u8; 4], bytes: &'a [u8], what: &Path) -> Result<&'a [u8]> {
    let bad = |why: &str| Error::Execution(format!("checkpoint file {} is unusable: {why}", what.display()));
    if bytes.len() < 13 {
        return Err(bad("truncated"));
    }
    if &bytes[..4] != magic {
        return Err(bad("not a riffle checkpoint file"));
    }
    if bytes[4] != VERSION {
        return Err(bad(&format!(
            "format version {} (this build reads {VERSION})",
            bytes[4]
        )));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let mut s = [0u8; 8];
    s.copy_from_slice(sum);
    if xxh3_64(body) != u64::from_le_bytes(s) {
        return Err(bad("checksum mismatch (corrupt or truncated)"));
    }
    Ok(&body[5..])
}

/// Writes `bytes` to `path` atomically: a temporary file, synced, then renamed.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, |f| f.write_all(bytes))
}

/// Writes a file atomically with `fill`: a temporary file, filled, synced, then renamed.
fn write_atomically_with(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<()> {
    let io = |what: &'static str, source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("cannot create", e))?;
    fill(&mut f).map_err(|e| io("cannot write", e))?;
    f.sync_all().map_err(|e| io("cannot sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("cannot rename into", e))
}

fn epoch_dir(root: &Path, epoch: u64) -> PathBuf {
    root.join(format!("chk-{epoch:010}"))
}

fn parse_epoch_dir(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// Whether a snapshot holds an operator's whole state on a worker or only what changed since
/// its previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotKind {
    /// Everything: older files of the operator and worker are no longer needed.
    Full,
    /// What changed: a restore needs the files back to the last full one.
    Incremental,
}

/// The suffix of incremental snapshot files.
const INCREMENTAL_SUFFIX: &str = ".inc";

/// A file-system-safe operator name.
fn file_name(operator: &str, worker: usize, kind: SnapshotKind) -> String {
    let safe: String = operator
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match kind {
        SnapshotKind::Full => format!("{safe}.w{worker}"),
        SnapshotKind::Incremental => format!("{safe}.w{worker}{INCREMENTAL_SUFFIX}"),
    }
}

impl CheckpointStore {
    /// Opens the checkpoint directory, restoring its newest intact checkpoint if there is one.
    ///
    /// Fails with [`Error::Config`], before it creates or deletes anything, if that checkpoint
    /// was taken by a job with another [`JobFingerprint`] than `config.fingerprint` (the error
    /// names each difference). A checkpoint without a fingerprint (taken by an older riffle) is
    /// restored with a warning.
    pub fn open(config: CheckpointConfig) -> Result<Self> {
        // Nothing is written before the fingerprint check: a refused job leaves the directory
        // as it found it (a missing directory has nothing to restore, and is created below).
        let mut epochs = match config.dir.is_dir() {
            true => Self::epochs(&config.dir)?,
            false => Vec::new(),
        };
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        let mut restored = None;
        for epoch in epochs {
            let manifest = epoch_dir(&config.dir, epoch).join("MANIFEST");
            if !manifest.exists() {
                continue;
            }
            let loaded =
                Self::load(&config.dir, &manifest).and_then(|r| Ok((r, read_fingerprint(&config.dir, epoch)?)));
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
                    restored = Some(r);
                    break;
                }
                Err(e) => tracing::warn!("checkpoint {epoch} cannot be restored ({e}); trying the previous one"),
            }
        }
        std::fs::create_dir_all(&config.dir).map_err(|source| Error::Io {
            what: "cannot create",
            path: config.dir.clone(),
            source,
        })?;
        let start_epoch = restored.as_ref().map_or(0, |r| r.epoch + 1);
        // Directories of later epochs hold files of an interrupted run (or a checkpoint that
        // could not be restored): this run writes those epochs again, and its manifests must
        // not pick up a stale file (say, of a worker this run does not have).
        for epoch in Self::epochs(&config.dir)? {
            if epoch >= start_epoch {
                let dir = epoch_dir(&config.dir, epoch);
                std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
                    what: "cannot remove",
                    path: dir,
                    source,
                })?;
            }
        }
        Ok(CheckpointStore {
            config,
            restored,
            start_epoch,
            completion: Mutex::new(CompletionState::default()),
        })
    }

    fn epochs(root: &Path) -> Result<Vec<u64>> {
        let entries = std::fs::read_dir(root).map_err(|source| Error::Io {
            what: "cannot list",
            path: root.to_path_buf(),
            source,
        })?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| parse_epoch_dir(&e.file_name().to_string_lossy()))
            .collect())
    }

    fn load(root: &Path, manifest_path: &Path) -> Result<Restored> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| Error::Io {
                what: "cannot read",
                path: p.to_path_buf(),
                source,
            })
        };
        let bytes = read(manifest_path)?;
        let manifest: Manifest = bincode::deserialize(open_sealed(MANIFEST_MAGIC, &bytes, manifest_path)?)
            .map_err(|e| Error::Execution(format!("manifest {} is unusable: {e}", manifest_path.display())))?;
        let mut parts: HashMap<String, Vec<(u32, Vec<u8>)>> = HashMap::new();
        for rel in &manifest.files {
            let path = root.join(rel);
            let bytes = read(&path)?;
            let (header, file_parts) = decode_part_file(open_sealed(PART_MAGIC, &bytes, &path)?, &path)?;
            parts.entry(header.operator).or_default().extend(file_parts);
        }
        Ok(Restored {
            epoch: manifest.epoch,
            parts: parts.into_iter().map(|(k, v)| (k, std::sync::Arc::new(v))).collect(),
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

    /// The first epoch of this run: one past the restored checkpoint, or 0.
    pub fn start_epoch(&self) -> u64 {
        self.start_epoch
    }

    /// The restored parts of `operator` (of every worker of the run that wrote them), shared
    /// by the workers that restore it.
    pub fn restored_parts(&self, operator: &str) -> std::sync::Arc<Parts> {
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
        let dir = epoch_dir(&self.config.dir, epoch);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
        let header = PartHeader {
            epoch,
            operator: operator.to_string(),
            worker: worker as u32,
            parts: parts.len() as u64,
        };
        // Streamed into the file, sealed as `seal` would: the state is not copied twice more
        // (body, sealed file) before it is written.
        write_atomically_with(&dir.join(file_name(operator, worker, kind)), |file| {
            let mut out = Checksummed {
                inner: std::io::BufWriter::with_capacity(1 << 20, file),
                sum: xxhash_rust::xxh3::Xxh3::new(),
            };
            out.write_all(PART_MAGIC)?;
            out.write_all(&[VERSION])?;
            write_part_file(&mut out, &header, &parts)?;
            let sum = out.sum.digest();
            let mut file = out.inner;
            file.write_all(&sum.to_le_bytes())?;
            file.flush()
        })
    }

    /// The newest complete checkpoint of this run, if any; one at or past `wanted` if there is
    /// one. Process 0 completes checkpoints (its worker 0 registers the sinks); the other
    /// processes of a job see its manifests in the shared directory, so they look there when
    /// what they know is older than `wanted`.
    pub fn completed_epoch(&self, wanted: u64) -> Option<u64> {
        let (known, completes_here) = {
            let c = self.completion.lock().unwrap_or_else(|p| p.into_inner());
            (c.committed, !c.sinks.is_empty())
        };
        // The process whose sinks complete checkpoints knows; only the others look on disk.
        if completes_here || known.is_some_and(|k| k >= wanted) {
            return known;
        }
        let on_disk = Self::epochs(&self.config.dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| *e >= self.start_epoch && epoch_dir(&self.config.dir, *e).join("MANIFEST").exists())
            .max();
        known.max(on_disk)
    }

    /// Registers a sink whose completions decide when checkpoints are complete; returns its id.
    ///
    /// Public (hidden) for tools that write snapshots outside a job and complete them, as a
    /// job's sinks do (see `window_op::GlobalCountState`).
    #[doc(hidden)]
    pub fn register_sink(&self) -> usize {
        let mut c = self.completion.lock().unwrap_or_else(|p| p.into_inner());
        let id = c.sinks.len();
        c.sinks.insert(id, None);
        id
    }

    /// Sink `id` (on worker 0) has seen every epoch up to `epoch` complete. When every sink
    /// has, writes the manifest of the newest such epoch and returns it (for the commit of
    /// transactional sinks).
    #[doc(hidden)]
    pub fn sink_complete(&self, id: usize, epoch: u64) -> Result<Option<u64>> {
        let mut c = self.completion.lock().unwrap_or_else(|p| p.into_inner());
        c.sinks.insert(id, Some(epoch));
        let Some(all) = c.sinks.values().copied().min().flatten() else {
            return Ok(None);
        };
        if c.committed.is_some_and(|done| done >= all) || all < self.start_epoch {
            return Ok(None);
        }
        self.write_manifest(all)?;
        tracing::debug!("checkpoint {all} complete in {}", self.config.dir.display());
        c.committed = Some(all);
        self.retain()?;
        Ok(Some(all))
    }

    /// Writes the manifest of `epoch`: the files this run wrote at or before `epoch` that a
    /// restore needs, oldest first (a restore applies them in that order: an operator's newer
    /// parts replace older ones, and an incremental snapshot only holds what changed). Of each
    /// operator and worker, that is its newest full snapshot and the incremental ones after
    /// it, so that older checkpoints can be deleted while the job runs.
    fn write_manifest(&self, epoch: u64) -> Result<()> {
        let root = &self.config.dir;
        let mut epochs: Vec<u64> = Self::epochs(root)?
            .into_iter()
            .filter(|e| (self.start_epoch..=epoch).contains(e))
            .collect();
        epochs.sort_unstable();
        // Per operator and worker: its files (epoch, name), and the epoch of its newest full one.
        let mut by_writer: BTreeMap<String, (Vec<(u64, String)>, u64)> = BTreeMap::new();
        for e in epochs {
            let dir = epoch_dir(root, e);
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.filter_map(|x| x.ok()) {
                let name = entry.file_name().to_string_lossy().to_string();
                if name == "MANIFEST" || name == FINGERPRINT_FILE || name.ends_with(".tmp") {
                    continue;
                }
                let writer = name.strip_suffix(INCREMENTAL_SUFFIX);
                let (files, full_from) = by_writer.entry(writer.unwrap_or(&name).to_string()).or_default();
                if writer.is_none() {
                    *full_from = e;
                }
                files.push((e, name));
            }
        }
        let mut files: Vec<String> = Vec::new();
        for (files_of_writer, full_from) in by_writer.into_values() {
            files.extend(
                files_of_writer
                    .into_iter()
                    .filter(|(e, _)| *e >= full_from)
                    .map(|(e, name)| format!("chk-{e:010}/{name}")),
            );
        }
        files.sort();
        let manifest = Manifest { epoch, files };
        let body =
            bincode::serialize(&manifest).map_err(|e| Error::Execution(format!("cannot encode a manifest: {e}")))?;
        let dir = epoch_dir(root, epoch);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
        // The fingerprint first: a checkpoint is complete (and restorable) once its manifest
        // exists, and then it has its fingerprint.
        write_atomically(
            &dir.join(FINGERPRINT_FILE),
            self.config.fingerprint.to_json()?.as_bytes(),
        )?;
        write_atomically(&dir.join("MANIFEST"), &seal(MANIFEST_MAGIC, &body))
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
        let newest = Self::epochs(dir)?
            .into_iter()
            .filter(|e| epoch_dir(dir, *e).join("MANIFEST").exists())
            .max();
        match newest {
            Some(epoch) => read_fingerprint(dir, epoch),
            None => Ok(None),
        }
    }

    /// Deletes checkpoints older than the `retain` newest complete ones, keeping every
    /// directory a retained manifest refers to.
    fn retain(&self) -> Result<()> {
        let root = &self.config.dir;
        let mut complete: Vec<u64> = Self::epochs(root)?
            .into_iter()
            .filter(|e| epoch_dir(root, *e).join("MANIFEST").exists())
            .collect();
        complete.sort_unstable_by(|a, b| b.cmp(a));
        let keep = self.config.retain.max(2);
        if complete.len() <= keep {
            return Ok(());
        }
        let mut referenced: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
        for &e in &complete[..keep] {
            referenced.insert(e);
            let path = epoch_dir(root, e).join("MANIFEST");
            if let Ok(bytes) = std::fs::read(&path) {
                if let Ok(body) = open_sealed(MANIFEST_MAGIC, &bytes, &path) {
                    if let Ok(m) = bincode::deserialize::<Manifest>(body) {
                        for f in m.files {
                            if let Some(e) = f.split('/').next().and_then(parse_epoch_dir) {
                                referenced.insert(e);
                            }
                        }
                    }
                }
            }
        }
        let oldest_kept = complete[keep - 1];
        for e in Self::epochs(root)? {
            if e < oldest_kept && !referenced.contains(&e) {
                let _ = std::fs::remove_dir_all(epoch_dir(root, e));
            }
        }
        Ok(())
    }
}

/// The fingerprint stored in checkpoint `epoch` of `root`; `None` if it has none (an older
/// riffle took it).
fn read_fingerprint(root: &Path, epoch: u64) -> Result<Option<JobFingerprint>> {
    let path = epoch_dir(root, epoch).join(FINGERPRINT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => JobFingerprint::from_json(&text, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            what: "cannot read",
            path,
            source,
        }),
    }
}

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
    let mut epochs = CheckpointStore::epochs(from)?;
    epochs.sort_unstable_by(|a, b| b.cmp(a));
    for epoch in epochs {
        let manifest_path = epoch_dir(from, epoch).join("MANIFEST");
        if !manifest_path.exists() || CheckpointStore::load(from, &manifest_path).is_err() {
            continue;
        }
        let bytes = std::fs::read(&manifest_path).map_err(|source| Error::Io {
            what: "cannot read",
            path: manifest_path.clone(),
            source,
        })?;
        let manifest: Manifest = bincode::deserialize(open_sealed(MANIFEST_MAGIC, &bytes, &manifest_path)?)
            .map_err(|e| Error::Execution(format!("manifest {} is unusable: {e}", manifest_path.display())))?;
        // The fingerprint before the manifest, as a checkpoint is written (an older riffle's
        // checkpoint has none: its savepoint neither).
        let fingerprint = format!("chk-{epoch:010}/{FINGERPRINT_FILE}");
        let fingerprint = from.join(&fingerprint).exists().then_some(fingerprint);
        for rel in manifest
            .files
            .iter()
            .map(String::as_str)
            .chain(fingerprint.as_deref())
            .chain([format!("chk-{epoch:010}/MANIFEST").as_str()])
        {
            let (src, dst) = (from.join(rel), to.join(rel));
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                    what: "cannot create",
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            let data = std::fs::read(&src).map_err(|source| Error::Io {
                what: "cannot read",
                path: src.clone(),
                source,
            })?;
            write_atomically(&dst, &data)?;
        }
        return Ok(epoch);
    }
    Err(Error::Config(format!(
        "{} holds no complete checkpoint",
        from.display()
    )))
}

/// Encodes a snapshot part.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serialize(value).map_err(|e| Error::Execution(format!("cannot encode a snapshot: {e}")))
}

/// Decodes a snapshot part.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], operator: &str) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| Error::Execution(format!("cannot decode the snapshot of {operator}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> CheckpointConfig {
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
        let newest = epoch_dir(dir.path(), 2).join("op.w0.inc");
        let mut bytes = std::fs::read(&newest).expect("read");
        let n = bytes.len();
        bytes[n / 2] ^= 0x40;
        std::fs::write(&newest, &bytes).expect("corrupt");
        let restored = CheckpointStore::open(config(dir.path())).expect("reopen");
        assert_eq!(restored.restored_epoch(), Some(1));
        assert_eq!(restored.restored_parts("op").last(), Some(&(7, vec![1u8; 10])));
        // Truncate it too: epoch 1 becomes unusable; epoch 0 was kept, as retained manifests
        // refer to it (their incremental chain starts from its full snapshot).
        let e1 = epoch_dir(dir.path(), 1).join("op.w0.inc");
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
        let mut left = CheckpointStore::epochs(dir.path()).expect("epochs");
        left.sort_unstable();
        assert_eq!(left, vec![8, 9]);
    }

    /// Every path under `dir` with its bytes, to show that a refused restore changed nothing.
    fn listing(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
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
    fn two_checkpoints_and_an_interrupted_one(dir: &Path) {
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
