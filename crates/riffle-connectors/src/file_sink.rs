//! The exactly-once file sink (`--sink file://DIR`): part files committed after checkpoints.
//!
//! Each worker appends the results of epoch `e` to `DIR/.pending/part-<e>-w<worker>-a<attempt>`.
//! When every record of `e` has arrived it syncs and closes that file (pre-commit). Once the
//! checkpoint of `e` is complete, the pending files of epochs `≤ e` are renamed to
//! `DIR/part-<e>-w<worker>` (commit), as Flink's file sink does. A crash before the checkpoint
//! completes loses only pending files, which recovery deletes (their epochs are replayed); a
//! crash after it is finished by recovery, which renames what is left. So `DIR/part-*` holds
//! every result exactly once. Without checkpoints, everything is committed when the input
//! ends.
//!
//! The attempt in a pending file's name is the fence of riffle-state: a commit renames only
//! its own attempt's files, and recovery only those of the attempt that took the restored
//! checkpoint, so that what a process of an older attempt (a zombie) still writes is never
//! committed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use riffle_core::{Error, Result};

use crate::sink::{Delivery, OutputBatch, Restored, Sink, SinkWriter, WriterContext};

/// Buffered bytes of an epoch written to its pending file beyond this size.
const WRITE_ABOVE: usize = 1 << 20;

/// A batch of lines at least this large is written as it is, not copied into the buffer (the
/// sink shell hands over up to ~60 KB at a time).
const WRITE_DIRECT: usize = 1 << 15;

/// `file://DIR`: committed part files in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedFileSink {
    dir: PathBuf,
}

impl CommittedFileSink {
    /// Part files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CommittedFileSink { dir: dir.into() }
    }

    /// Parses `file://DIR`.
    pub fn parse(uri: &str) -> Result<Self> {
        match uri.strip_prefix("file://") {
            Some(dir) if !dir.is_empty() => Ok(CommittedFileSink::new(dir)),
            _ => Err(Error::Config(format!("--sink: expected file://DIR, got '{uri}'"))),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Sink for CommittedFileSink {
    fn name(&self) -> String {
        self.dir.display().to_string()
    }

    fn delivery(&self) -> Delivery {
        Delivery::ExactlyOnce
    }

    fn recover(&self, restored: Option<Restored<'_>>, _first_process: bool) -> Result<()> {
        prepare_output_dir(&self.dir, restored.map(|r| (r.epoch, r.attempt)))
    }

    fn writer(&self, at: WriterContext) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(PartFileWriter {
            pending: pending_dir(&self.dir),
            worker: at.worker,
            attempt: at.attempt,
            buffers: BTreeMap::new(),
            files: BTreeMap::new(),
        }))
    }

    fn commit(&self, epoch: u64, attempt: u64) -> Result<()> {
        commit_upto(&self.dir, epoch, attempt)
    }
}

/// One worker's pending part files, one per open epoch.
struct PartFileWriter {
    pending: PathBuf,
    worker: usize,
    attempt: u64,
    buffers: BTreeMap<u64, Vec<u8>>,
    files: BTreeMap<u64, std::fs::File>,
}

impl PartFileWriter {
    /// Appends `bytes` to the pending file of `epoch` and empties it.
    fn append(&mut self, epoch: u64, bytes: &mut Vec<u8>) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let path = self.pending.join(pending_name(epoch, self.worker, self.attempt));
        let file = match self.files.entry(epoch) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io("cannot open", &path))?,
            ),
        };
        file.write_all(bytes).map_err(io("cannot write", &path))?;
        bytes.clear();
        Ok(())
    }
}

impl SinkWriter for PartFileWriter {
    fn write(&mut self, epoch: u64, batch: &mut OutputBatch) -> Result<()> {
        if let OutputBatch::Lines(bytes) = batch {
            if bytes.len() >= WRITE_DIRECT {
                // A large batch goes to the file as it is (no copy), after what was buffered.
                if let Some(mut buffered) = self.buffers.remove(&epoch) {
                    self.append(epoch, &mut buffered)?;
                }
                return self.append(epoch, bytes);
            }
        }
        let buffer = self.buffers.entry(epoch).or_default();
        batch.append_lines_to(buffer);
        batch.clear();
        if buffer.len() > WRITE_ABOVE {
            let mut full = std::mem::take(buffer);
            let result = self.append(epoch, &mut full);
            self.buffers.insert(epoch, full);
            result?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<()> {
        // Write, sync, close.
        if let Some(mut buffer) = self.buffers.remove(&epoch) {
            self.append(epoch, &mut buffer)?;
        }
        if let Some(file) = self.files.remove(&epoch) {
            file.sync_all().map_err(|source| Error::Io {
                what: "cannot sync",
                path: self.pending.join(pending_name(epoch, self.worker, self.attempt)),
                source,
            })?;
        }
        Ok(())
    }
}

fn pending_dir(dir: &Path) -> PathBuf {
    dir.join(".pending")
}

fn part_name(epoch: u64, worker: usize) -> String {
    format!("part-{epoch:010}-w{worker:03}")
}

/// The pending file of `epoch` on `worker`, written by `attempt`.
fn pending_name(epoch: u64, worker: usize, attempt: u64) -> String {
    format!("{}-a{attempt}", part_name(epoch, worker))
}

fn parse_part(name: &str) -> Option<u64> {
    name.strip_prefix("part-")?.split('-').next()?.parse().ok()
}

/// A pending file's epoch, attempt (0 for a riffle that did not number attempts) and the name
/// it is committed under.
fn parse_pending(name: &str) -> Option<(u64, u64, &str)> {
    let epoch = parse_part(name)?;
    Some(match name.rsplit_once("-a") {
        Some((committed, attempt)) => (epoch, attempt.parse().ok()?, committed),
        None => (epoch, 0, name),
    })
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Makes the output directory consistent with the checkpoint being restored (its epoch and the
/// attempt that took it), or with a fresh start: commits the pending files that attempt wrote
/// for restored epochs, deletes every other pending file (later epochs, older attempts'
/// zombies), and deletes committed files of later epochs too (recovery fell back past a
/// corrupt checkpoint; those epochs are replayed and written again). A fresh start refuses a
/// directory that already holds committed results.
pub fn prepare_output_dir(dir: &Path, restored: Option<(u64, u64)>) -> Result<()> {
    let restored_epoch = restored.map(|(epoch, _)| epoch);
    let pending = pending_dir(dir);
    std::fs::create_dir_all(&pending).map_err(io("cannot create", &pending))?;
    if restored_epoch.is_none() {
        let committed = std::fs::read_dir(dir)
            .map_err(io("cannot list", dir))?
            .filter_map(|e| e.ok())
            .any(|e| parse_part(&e.file_name().to_string_lossy()).is_some());
        if committed {
            return Err(Error::Config(format!(
                "{} already holds committed results and there is no checkpoint to resume: remove it, or pass the checkpoint directory of the run that wrote it",
                dir.display()
            )));
        }
    }
    commit_pending(dir, restored)?;
    if let Some(restored) = restored_epoch {
        for entry in std::fs::read_dir(dir)
            .map_err(io("cannot list", dir))?
            .filter_map(|e| e.ok())
        {
            let name = entry.file_name().to_string_lossy().to_string();
            if parse_part(&name).is_some_and(|e| e > restored) {
                tracing::warn!("{name} is past the restored checkpoint {restored}: it will be written again");
                std::fs::remove_file(entry.path()).map_err(io("cannot remove", &entry.path()))?;
            }
        }
    }
    Ok(())
}

/// Renames the pending files of attempt `attempt` and epochs `≤ upto` into place and deletes
/// every other one (`None`: all pending files are deleted).
fn commit_pending(dir: &Path, upto: Option<(u64, u64)>) -> Result<()> {
    let pending = pending_dir(dir);
    for entry in std::fs::read_dir(&pending)
        .map_err(io("cannot list", &pending))?
        .filter_map(|e| e.ok())
    {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some((epoch, attempt, committed)) = parse_pending(&name) else {
            continue;
        };
        if upto.is_some_and(|(u, a)| epoch <= u && attempt == a) {
            rename_once(&entry.path(), &dir.join(committed))?;
        } else {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Renames a pending file into place; one that is gone was committed by another process of
/// the job (they share the directory).
fn rename_once(from: &Path, to: &Path) -> Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(io("cannot commit", to)),
    }
}

/// Commits the pending files of `attempt` and epochs `≤ upto` (others stay pending; an older
/// attempt's are deleted at the next recovery).
pub fn commit_upto(dir: &Path, upto: u64, attempt: u64) -> Result<()> {
    let pending = pending_dir(dir);
    for entry in std::fs::read_dir(&pending)
        .map_err(io("cannot list", &pending))?
        .filter_map(|e| e.ok())
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some((epoch, a, committed)) = parse_pending(&name) {
            if epoch <= upto && a == attempt {
                rename_once(&entry.path(), &dir.join(committed))?;
            }
        }
    }
    Ok(())
}
