//! Sinks tied to checkpoints: the exactly-once file sink (two-phase commit) and the commit
//! operator that completes checkpoints.
//!
//! **File sink.** Each worker appends the results of epoch `e` to
//! `DIR/.pending/part-<e>-w<worker>`. When its input frontier passes `e` it syncs and closes
//! that file, and only then lets its capability go, so that the commit operator downstream
//! learns that epoch `e` is written everywhere (pre-commit). The commit operator on worker 0
//! then writes the checkpoint's manifest and renames the pending files of epochs `≤ e` to
//! `DIR/part-<e>-w<worker>` (commit), as Flink's file sink does. A crash before the manifest
//! loses only pending files, which recovery deletes (their epochs are replayed); a crash after
//! it is finished by recovery, which renames what is left. So `DIR/part-*` holds every result
//! exactly once. Other sinks (stdout, plain files) are at least once: after a crash the results
//! of epochs after the last checkpoint are written again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use riffle_core::{Error, EventTime, Result};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::checkpoint::CheckpointStore;
use crate::context::JobContext;
use crate::progress::{hold_frontier, message_time};
use crate::time::Time;

type VecBuilder<T> = CapacityContainerBuilder<Vec<T>>;

fn pending_dir(dir: &Path) -> PathBuf {
    dir.join(".pending")
}

fn part_name(epoch: u64, worker: usize) -> String {
    format!("part-{epoch:010}-w{worker:03}")
}

fn parse_part(name: &str) -> Option<u64> {
    name.strip_prefix("part-")?.split('-').next()?.parse().ok()
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Makes the output directory consistent with the checkpoint being restored (or with a fresh
/// start): commits pending files of restored epochs, deletes those of later ones, and deletes
/// committed files of later epochs too (recovery fell back past a corrupt checkpoint; those
/// epochs are replayed and written again). A fresh start refuses a directory that already
/// holds committed results.
pub fn prepare_output_dir(dir: &Path, restored_epoch: Option<u64>) -> Result<()> {
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
    commit_pending(dir, restored_epoch)?;
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

/// Renames pending files of epochs `≤ upto` into place and deletes later ones (`None`: all
/// pending files are deleted).
fn commit_pending(dir: &Path, upto: Option<u64>) -> Result<()> {
    let pending = pending_dir(dir);
    for entry in std::fs::read_dir(&pending)
        .map_err(io("cannot list", &pending))?
        .filter_map(|e| e.ok())
    {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(epoch) = parse_part(&name) else { continue };
        if upto.is_some_and(|u| epoch <= u) {
            rename_once(&entry.path(), &dir.join(&name))?;
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

/// Commits pending files of epochs `≤ upto` (others stay pending).
fn commit_upto(dir: &Path, upto: u64) -> Result<()> {
    let pending = pending_dir(dir);
    for entry in std::fs::read_dir(&pending)
        .map_err(io("cannot list", &pending))?
        .filter_map(|e| e.ok())
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if parse_part(&name).is_some_and(|e| e <= upto) {
            rename_once(&entry.path(), &dir.join(&name))?;
        }
    }
    Ok(())
}

/// The oldest epoch a sink may still receive results of (`u64::MAX` at the end): results of a
/// resumed run belong to its epochs, from `first_epoch` on.
pub(crate) fn open_epoch(frontier: timely::progress::frontier::AntichainRef<'_, Time>, first_epoch: u64) -> u64 {
    frontier
        .iter()
        .map(|t| t.epoch.max(first_epoch))
        .min()
        .unwrap_or(u64::MAX)
}

/// The exactly-once file sink; returns its completion stream for [`commit_operator`].
pub(crate) fn committed_file_sink<'s, D: crate::stream::Data>(
    stream: Stream<'s, Time, Vec<(EventTime, D)>>,
    ctx: Arc<JobContext>,
    dir: PathBuf,
    mut format: impl FnMut(EventTime, &D, &mut Vec<u8>) + 'static,
) -> Stream<'s, Time, Vec<()>> {
    let worker = stream.scope().index();
    // Results of a resumed run belong to its epochs, even those produced before the sources
    // have moved the frontier there (epochs before the restored checkpoint are committed).
    let first_epoch = ctx.checkpoints().map_or(0, |s| s.start_epoch());
    stream.unary_frontier::<VecBuilder<()>, _, _, _>(Pipeline, "CommittedFileSink", move |cap, _info| {
        let mut held = vec![cap];
        let mut buffers: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut files: BTreeMap<u64, std::fs::File> = BTreeMap::new();
        let pending = pending_dir(&dir);
        move |(input, frontier), output| {
            let write = |epoch: u64, bytes: &mut Vec<u8>, files: &mut BTreeMap<u64, std::fs::File>| -> Result<()> {
                if bytes.is_empty() {
                    return Ok(());
                }
                let path = pending.join(part_name(epoch, worker));
                let file = match files.entry(epoch) {
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
            };
            input.for_each(|cap, data| {
                let epoch = message_time(&cap).epoch.max(first_epoch);
                // Tell the commit operator this epoch has results (it may never see the epoch
                // in its frontier if the job ends right after).
                output.session(&cap).give(());
                ctx.metrics()
                    .records_out
                    .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                let buffer = buffers.entry(epoch).or_default();
                for (ts, d) in data.drain(..) {
                    format(ts, &d, buffer);
                }
                if buffer.len() > 1 << 20 {
                    if let Err(e) = write(epoch, buffer, &mut files) {
                        ctx.fail(e);
                    }
                }
            });
            let open = open_epoch(frontier.frontier(), first_epoch);
            // Pre-commit every epoch the frontier has passed: write, sync, close.
            let closed: Vec<u64> = buffers
                .keys()
                .chain(files.keys())
                .copied()
                .filter(|e| *e < open)
                .collect();
            for epoch in closed {
                if let Some(mut buffer) = buffers.remove(&epoch) {
                    if let Err(e) = write(epoch, &mut buffer, &mut files) {
                        ctx.fail(e);
                    }
                }
                if let Some(file) = files.remove(&epoch) {
                    if let Err(e) = file.sync_all() {
                        ctx.fail(Error::Io {
                            what: "cannot sync",
                            path: pending.join(part_name(epoch, worker)),
                            source: e,
                        });
                    }
                }
            }
            hold_frontier(&mut held, frontier.frontier());
        }
    })
}

/// Completes checkpoints: on worker 0, once the frontier of `done` (the completion stream of a
/// sink, gathered from every worker) passes an epoch, every operator has written its snapshot
/// of it and every sink has pre-committed it; the store then writes the manifest and, for a
/// file sink in `commit_dir`, the pending files are committed.
pub(crate) fn commit_operator(done: Stream<'_, Time, Vec<()>>, ctx: Arc<JobContext>, commit_dir: Option<PathBuf>) {
    let worker = done.scope().index();
    let Some(store) = ctx.checkpoints().cloned() else {
        // Without checkpoints a file sink commits everything at the end of the job.
        if let Some(dir) = commit_dir {
            done.unary_frontier::<VecBuilder<()>, _, _, _>(Exchange::new(|_: &()| 0), "Commit", move |_cap, _info| {
                move |(input, frontier), _output| {
                    input.for_each(|_cap, data| data.clear());
                    if worker == 0 && frontier.frontier().is_empty() {
                        if let Err(e) = commit_upto(&dir, u64::MAX) {
                            ctx.fail(e);
                        }
                    }
                }
            });
        }
        return;
    };
    let sink_id = (worker == 0).then(|| store.register_sink());
    done.unary_frontier::<VecBuilder<()>, _, _, _>(
        Exchange::new(|_: &()| 0),
        "CheckpointCommit",
        move |_cap, _info| {
            let mut last_open = store.start_epoch();
            move |(input, frontier), _output| {
                input.for_each(|cap, data| {
                    last_open = last_open.max(message_time(&cap).epoch);
                    data.clear();
                });
                let Some(id) = sink_id else { return };
                // Once the job has failed no checkpoint completes: an operator's state may be
                // wrong (a restore that failed), and the sources stop without recording where.
                if ctx.is_cancelled() {
                    return;
                }
                let open = frontier.frontier().iter().map(|t| t.epoch).min();
                let complete = match open {
                    Some(e) => {
                        last_open = last_open.max(e);
                        e.checked_sub(1)
                    }
                    // The end of the job (or a stop, whose sources recorded where they were):
                    // the last open epoch is complete too.
                    None => Some(last_open),
                };
                let Some(epoch) = complete else { return };
                if epoch < store.start_epoch() {
                    return;
                }
                match complete_checkpoint(&store, id, epoch, commit_dir.as_deref()) {
                    Ok(()) => {}
                    Err(e) => ctx.fail(e),
                }
            }
        },
    );
}

fn complete_checkpoint(store: &CheckpointStore, id: usize, epoch: u64, commit_dir: Option<&Path>) -> Result<()> {
    if let Some(done) = store.sink_complete(id, epoch)? {
        if let Some(dir) = commit_dir {
            commit_upto(dir, done)?;
        }
    }
    Ok(())
}
