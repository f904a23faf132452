//! Fencing: what keeps two instances of a job from both writing its checkpoints and its
//! committed output (they would delete and rename each other's files and duplicate results).
//!
//! Two mechanisms, for two situations:
//!
//! - **The lock**, against a second instance started on the same machine while the first still
//!   runs: one lock file per process index (`LOCK.p<index>`, so that the processes of one
//!   cluster job share the directory), held with `flock`, which the kernel releases when the
//!   process dies however it dies. The second instance fails before it changes anything.
//! - **The attempt number**, against a process of an older attempt that is still alive where
//!   no lock can see it (another machine, a process that was stopped and resumed: a *zombie*).
//!   Every start of a job increments `ATTEMPT` in the checkpoint directory (process 0 does, and
//!   tells the other processes in the cluster handshake); every file an attempt writes carries
//!   its number, every commit first checks that `ATTEMPT` still holds it, and what an older
//!   attempt wrote is never listed in a newer attempt's manifest or committed by its sinks.
//!   This is Flink's fencing token and Kafka's producer epoch: a zombie may still write files,
//!   but nothing reads them. A zombie that passes the check and is then stopped before its
//!   rename is the one window left, as in Flink; it cannot make a checkpoint that restores
//!   wrong (its manifest lists only its own attempt's files).

use riffle_core::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::storage::Storage;

/// The file of the newest attempt number, in the checkpoint directory.
pub(crate) const ATTEMPT_FILE: &str = "ATTEMPT";

/// The newest attempt of the job whose checkpoints `storage` holds (0 when none started with
/// an attempt number).
pub(crate) fn current_attempt(storage: &dyn Storage) -> Result<u64> {
    read_attempt(storage, ATTEMPT_FILE).map(|a| a.unwrap_or(0))
}

/// The attempt number in the file `rel`, if there is one.
pub(crate) fn read_attempt(storage: &dyn Storage, rel: &str) -> Result<Option<u64>> {
    let Some(bytes) = storage.get(rel)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    text.trim().parse().map(Some).map_err(|_| {
        Error::Config(format!(
            "{} does not hold an attempt number: '{}'",
            storage.show(rel).display(),
            text.trim()
        ))
    })
}

/// Starts a new attempt: writes one past the newest into `storage` (and past `restored`, the
/// attempt that took the checkpoint being restored, which a savepoint carries without the
/// directory's `ATTEMPT`) and returns it.
pub(crate) fn next_attempt(storage: &dyn Storage, restored: u64) -> Result<u64> {
    let next = current_attempt(storage)?.max(restored) + 1;
    storage.put(ATTEMPT_FILE, next.to_string().as_bytes())?;
    Ok(next)
}

/// Fails with [`Error::Fenced`] when an attempt newer than `mine` has started on `storage`;
/// `what` says what was about to happen.
pub(crate) fn check_attempt(storage: &dyn Storage, mine: u64, what: &str) -> Result<()> {
    let newest = current_attempt(storage)?;
    if newest > mine {
        return Err(Error::Fenced(format!(
            "attempt {newest} of this job has started on {} since this process's attempt {mine}: it does not {what}, and stops",
            storage.show("").display()
        )));
    }
    Ok(())
}

/// Takes the lock of process `process` on checkpoint directory `dir` (created if missing);
/// fails, naming the holder, when another process has it. The caller writes itself in as the
/// holder ([`write_holder`]) once it has decided to run, so that a job refused later (another
/// job's checkpoint) leaves the file as it was.
pub(crate) fn lock_directory(dir: &Path, process: usize) -> Result<File> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        what: "cannot create",
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(format!("LOCK.p{process}"));
    let io = |what: &'static str| {
        let path = path.clone();
        move |source| Error::Io { what, path, source }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("cannot open the lock file"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = match holder.trim() {
                "" => "a process that did not say which".to_string(),
                h => h.to_string(),
            };
            return Err(Error::Fenced(format!(
                "checkpoint directory {} is in use by another instance of this job ({holder}, process index {process}); stop it first, or use another --checkpoint-dir: nothing was changed",
                dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(io("cannot lock")(source)),
    }
    Ok(file)
}

/// Writes this process (pid and host) into the lock file `file` of `dir`, for the error of a
/// second instance.
pub(crate) fn write_holder(mut file: &File, dir: &Path, process: usize) -> Result<()> {
    let path = dir.join(format!("LOCK.p{process}"));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let me = format!("pid {} on host {}", std::process::id(), host.trim());
    file.set_len(0)
        .and_then(|_| file.write_all(me.as_bytes()))
        .map_err(|source| Error::Io {
            what: "cannot write the lock file",
            path,
            source,
        })
}

#[cfg(test)]
mod tests {
    use crate::store::tests::config;
    use crate::{CheckpointStore, SnapshotKind};

    #[test]
    fn a_second_instance_is_refused_and_other_process_indexes_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = CheckpointStore::open_exclusive(config(dir.path()), 0).expect("first");
        let err = CheckpointStore::open_exclusive(config(dir.path()), 0)
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(matches!(err, riffle_core::Error::Fenced(_)), "{text}");
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        // Process 1 of the same cluster job shares the directory.
        let other = CheckpointStore::open_exclusive(config(dir.path()), 1).expect("process 1");
        drop((first, other));
        CheckpointStore::open_exclusive(config(dir.path()), 0).expect("free again");
    }

    /// A zombie: the attempt before a restart, still alive where no lock sees it (another
    /// machine), writing beside the new attempt.
    #[test]
    fn an_older_attempt_commits_nothing_and_its_files_are_never_restored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = CheckpointStore::open(config(dir.path())).expect("attempt 1");
        let sink = old.register_sink();
        old.write(0, "op", 0, vec![(1, b"old-0".to_vec())], SnapshotKind::Full)
            .expect("write");
        assert_eq!(old.sink_complete(sink, 0).expect("complete"), Some(0));
        assert_eq!(old.attempt(), 1);

        // The restart: attempt 2 restores checkpoint 0, and the zombie goes on.
        let new = CheckpointStore::open(config(dir.path())).expect("attempt 2");
        assert_eq!(
            (new.attempt(), new.restored_epoch(), new.restored_attempt()),
            (2, Some(0), Some(1))
        );
        let new_sink = new.register_sink();
        old.write(1, "op", 0, vec![(1, b"zombie-1".to_vec())], SnapshotKind::Full)
            .expect("a zombie may write files");
        new.write(1, "op", 0, vec![(1, b"new-1".to_vec())], SnapshotKind::Full)
            .expect("write");
        let fenced = old.sink_complete(sink, 1).expect_err("the zombie is fenced");
        assert!(matches!(fenced, riffle_core::Error::Fenced(_)), "{fenced}");
        assert!(fenced.to_string().contains("attempt 2"), "{fenced}");
        assert!(old.check_fence("commit").is_err() && new.check_fence("commit").is_ok());
        assert_eq!(new.sink_complete(new_sink, 1).expect("complete"), Some(1));
        // The zombie writes epoch 2 after the new attempt completed 1: never listed.
        old.write(2, "op", 0, vec![(1, b"zombie-2".to_vec())], SnapshotKind::Full)
            .expect("write");
        drop((old, new));

        let third = CheckpointStore::open(config(dir.path())).expect("attempt 3");
        assert_eq!((third.restored_epoch(), third.restored_attempt()), (Some(1), Some(2)));
        assert_eq!(*third.restored_parts("op"), vec![(1, b"new-1".to_vec())]);
    }

    #[test]
    fn process_zero_starts_an_attempt_and_the_others_adopt_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p1 = CheckpointStore::open_exclusive(config(dir.path()), 1).expect("process 1");
        let p0 = CheckpointStore::open_exclusive(config(dir.path()), 0).expect("process 0");
        assert_eq!(
            (p0.attempt(), p1.attempt()),
            (1, 0),
            "process 1 opened before process 0 began"
        );
        p1.adopt_attempt(p0.attempt());
        assert!(p1.check_fence("commit").is_ok());
    }
}
