//! `riffle bench checkpoint`: how long a snapshot of keyed window state takes to write and to
//! restore, for several state sizes.
//!
//! The state is a global-window word count held as the window operator holds it
//! (`riffle_runtime::window_op::GlobalCountState`), written and read by the operator's own
//! checkpoint code paths without the dataflow around them; beside it, a hand-written loop
//! writes and reads the same keys and counts as one bincode file.

use std::path::Path;
use std::time::Instant;

use compact_str::CompactString;
use riffle_core::{Error, Result};
use riffle_runtime::checkpoint::{CheckpointConfig, CheckpointStore, JobFingerprint};
use riffle_runtime::window_op::GlobalCountState;

/// Arguments of `riffle bench checkpoint`.
#[derive(clap::Args, Debug)]
pub struct CheckpointBenchArgs {
    /// State sizes to measure, in MB (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    sizes_mb: Vec<u64>,
    /// Bytes per key.
    #[arg(long, default_value_t = 16)]
    key_bytes: usize,
    /// Directory for the checkpoints (a temporary one by default).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// Runs the benchmark.
pub fn run(args: CheckpointBenchArgs) -> Result<()> {
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("riffle-bench-checkpoint-{}", std::process::id())),
    };
    println!(
        "riffle bench checkpoint: global-window counts, {}-byte keys, synced files",
        args.key_bytes
    );
    println!(
        "{:>10} {:>10} {:>9} {:>11} {:>14} {:>10} {:>9} {:>11} {:>11}",
        "state", "keys", "file MB", "snapshot s", "1/128 incr. s", "restore s", "(read s)", "loop write", "loop read"
    );
    for mb in &args.sizes_mb {
        // Each entry costs the key (with its length prefix) and an 8-byte count.
        let keys = (*mb as usize * 1_000_000) / (args.key_bytes + 16);
        let dir = base.join(format!("{mb}mb"));
        let _ = std::fs::remove_dir_all(&dir);
        let f = measure_snapshot(&dir, keys, args.key_bytes)?;
        if f.restored_keys != keys {
            return Err(Error::Execution(format!("restored {} keys of {keys}", f.restored_keys)));
        }
        let (loop_write, loop_read) = hand_loop(&dir, keys, args.key_bytes)?;
        println!(
            "{:>7} MB {:>10} {:>9.1} {:>11.3} {:>14.3} {:>10.3} {:>9.3} {:>11.3} {:>11.3}",
            mb,
            keys,
            f.bytes as f64 / 1e6,
            f.snapshot_secs,
            f.incremental_secs,
            f.restore_secs,
            f.read_secs,
            loop_write,
            loop_read
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

/// Figures of one snapshot and restore of window state.
#[derive(Clone, Copy, Debug)]
struct SnapshotFigures {
    /// Bytes written (all files).
    bytes: u64,
    /// Seconds to split the state by key group, encode and write it (synced).
    snapshot_secs: f64,
    /// Seconds for the next, incremental snapshot when one key group of 128 changed.
    incremental_secs: f64,
    /// Seconds to read, verify and decode the checkpoint and rebuild the state.
    restore_secs: f64,
    /// Of `restore_secs`, seconds to read and verify the files.
    read_secs: f64,
    /// Keys restored (checked against the keys snapshotted).
    restored_keys: usize,
}

/// The `i`-th key of the benchmark (`key_bytes` bytes) and its count.
fn entry(i: usize, key_bytes: usize) -> (CompactString, u64) {
    let mut k = format!("{i:0width$}", width = key_bytes);
    k.truncate(key_bytes.max(8));
    (k.into(), (i % 1000) as u64 + 1)
}

/// Snapshots a global-window count over `keys` distinct keys of `key_bytes` bytes into
/// `dir` and restores it, timing both: the code paths of a real checkpoint and recovery of the
/// window operator, without the dataflow around them.
fn measure_snapshot(dir: &Path, keys: usize, key_bytes: usize) -> Result<SnapshotFigures> {
    /// The operator's name in the checkpoint, as a job's first window operator has it.
    const OPERATOR: &str = "Window-0";
    let config = CheckpointConfig {
        dir: dir.to_path_buf(),
        interval: std::time::Duration::from_secs(1),
        retain: 2,
        fingerprint: JobFingerprint::new("bench checkpoint"),
    };
    let store = CheckpointStore::open(config.clone())?;
    // Keys as the word count has them: compact strings, inline up to 24 bytes.
    let mut state: GlobalCountState<CompactString> = GlobalCountState::new();
    for i in 0..keys {
        let (k, count) = entry(i, key_bytes);
        state.add(k, count);
    }
    let t = Instant::now();
    state.snapshot(&store, 0, OPERATOR)?;
    let snapshot_secs = t.elapsed().as_secs_f64();
    let sink = store.register_sink();
    store.sink_complete(sink, 0)?;
    // One more occurrence of one key: its key group (one of 128) changed.
    let (k, _) = entry(0, key_bytes);
    state.add(k, 1);
    let t = Instant::now();
    state.snapshot(&store, 1, OPERATOR)?;
    let incremental_secs = t.elapsed().as_secs_f64();
    let bytes = std::fs::read_dir(dir.join("chk-0000000000"))
        .map_err(|source| Error::Io {
            what: "cannot list",
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    drop(state);
    let t = Instant::now();
    let restored = CheckpointStore::open(config)?;
    let read_secs = t.elapsed().as_secs_f64();
    let state = GlobalCountState::<CompactString>::restore(&restored, OPERATOR)?;
    let restore_secs = t.elapsed().as_secs_f64();
    Ok(SnapshotFigures {
        bytes,
        snapshot_secs,
        incremental_secs,
        restore_secs,
        read_secs,
        restored_keys: state.len(),
    })
}

/// The hand-written single-threaded loop on the same keys and counts: one vector encoded with
/// bincode into one synced file (no key groups, no operator), then read back, decoded and
/// inserted into a hash map sized in advance. Returns (write, read) seconds.
pub(crate) fn hand_loop(dir: &Path, keys: usize, key_bytes: usize) -> Result<(f64, f64)> {
    use std::io::Write;
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    };
    let codec = |e: bincode::Error| Error::Execution(format!("hand loop: {e}"));
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let path = dir.join("hand-loop.bin");
    let entries: Vec<(CompactString, u64)> = (0..keys).map(|i| entry(i, key_bytes)).collect();
    let t = Instant::now();
    let bytes = bincode::serialize(&entries).map_err(codec)?;
    let mut file = std::fs::File::create(&path).map_err(io("cannot create", &path))?;
    file.write_all(&bytes).map_err(io("cannot write", &path))?;
    file.sync_all().map_err(io("cannot sync", &path))?;
    let write = t.elapsed().as_secs_f64();
    drop((entries, bytes, file));
    let t = Instant::now();
    let bytes = std::fs::read(&path).map_err(io("cannot read", &path))?;
    let entries: Vec<(CompactString, u64)> = bincode::deserialize(&bytes).map_err(codec)?;
    let mut map = hashbrown::HashMap::with_capacity(entries.len());
    map.extend(entries);
    let read = t.elapsed().as_secs_f64();
    if map.len() != keys {
        return Err(Error::Execution(format!(
            "hand loop restored {} keys of {keys}",
            map.len()
        )));
    }
    Ok((write, read))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_restores_every_key_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let f = measure_snapshot(dir.path(), 5_000, 16).unwrap();
        assert_eq!(f.restored_keys, 5_000);
        assert!(f.bytes > 5_000 * 16, "{f:?}");
        // The restore read the complete checkpoint 0: epoch 1 has no manifest.
        let store = CheckpointStore::open(CheckpointConfig {
            dir: dir.path().to_path_buf(),
            interval: std::time::Duration::from_secs(1),
            retain: 2,
            fingerprint: JobFingerprint::new("bench checkpoint"),
        })
        .unwrap();
        assert_eq!(store.restored_epoch(), Some(0));
        let state = GlobalCountState::<CompactString>::restore(&store, "Window-0").unwrap();
        assert_eq!(state.len(), 5_000);
    }

    #[test]
    fn keys_have_the_width_asked_for() {
        assert_eq!(entry(42, 16), ("0000000000000042".into(), 43));
        assert_eq!(entry(1_042, 8).1, 43);
    }
}
