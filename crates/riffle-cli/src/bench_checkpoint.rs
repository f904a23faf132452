//! `riffle bench checkpoint`: how long a snapshot of keyed window state takes to write and to
//! restore, for several state sizes.

use riffle_core::{Error, Result};

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
        let f = riffle_runtime::window_op::measure_snapshot(&dir, keys, args.key_bytes)?;
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

/// The hand-written single-threaded loop on the same keys and counts: one vector encoded with
/// bincode into one synced file (no key groups, no operator), then read back, decoded and
/// inserted into a hash map sized in advance. Returns (write, read) seconds.
fn hand_loop(dir: &std::path::Path, keys: usize, key_bytes: usize) -> Result<(f64, f64)> {
    use std::io::Write;
    let io = |what: &'static str, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    };
    let codec = |e: bincode::Error| Error::Execution(format!("hand loop: {e}"));
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let path = dir.join("hand-loop.bin");
    let entries: Vec<(compact_str::CompactString, u64)> = (0..keys)
        .map(|i| riffle_runtime::window_op::bench_entry(i, key_bytes))
        .collect();
    let t = std::time::Instant::now();
    let bytes = bincode::serialize(&entries).map_err(codec)?;
    let mut file = std::fs::File::create(&path).map_err(io("cannot create", &path))?;
    file.write_all(&bytes).map_err(io("cannot write", &path))?;
    file.sync_all().map_err(io("cannot sync", &path))?;
    let write = t.elapsed().as_secs_f64();
    drop((entries, bytes, file));
    let t = std::time::Instant::now();
    let bytes = std::fs::read(&path).map_err(io("cannot read", &path))?;
    let entries: Vec<(compact_str::CompactString, u64)> = bincode::deserialize(&bytes).map_err(codec)?;
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
