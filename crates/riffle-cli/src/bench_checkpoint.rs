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
        "{:>10} {:>12} {:>12} {:>12} {:>14} {:>12}",
        "state", "keys", "file MB", "snapshot s", "1/128 incr. s", "restore s"
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
        println!(
            "{:>7} MB {:>12} {:>12.1} {:>12.3} {:>14.3} {:>12.3}",
            mb,
            keys,
            f.bytes as f64 / 1e6,
            f.snapshot_secs,
            f.incremental_secs,
            f.restore_secs
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
