//! `riffle bench recovery`: the time from the death of a process of a job to the job processing
//! again, under `riffle supervise`, for several sizes of state.
//!
//! The job counts words in a one-day event-time window (one count per word, open for the whole
//! run: the generator's lines are 1 ms apart) from a generator that cycles through a vocabulary
//! sized for the state asked for, at a fixed rate, on two processes with checkpoints. Once the newest checkpoint holds the whole vocabulary, a
//! process is killed with SIGKILL, and the benchmark times, from the kill, what the supervisor
//! and the new processes print and write:
//!
//! - **restarted**: the supervisor has seen the death and started the new processes;
//! - **restored**: every new process has read the checkpoint ("resuming from checkpoint");
//! - **processing**: the new attempt has completed a checkpoint of its own, so its sources read
//!   and every operator passed an epoch (one checkpoint interval is included: subtracted in the
//!   last column).
//!
//! "read MB" is what the restore reads: the files the restored checkpoint's manifest lists (the
//! state's newest full snapshot and the incremental ones after it). Beside it, the hand-written loop of `riffle bench checkpoint`: the same number of keys read
//! back from one bincode file into a hash map on one thread, the least a restore must do.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use riffle_core::{Error, Result};
use riffle_runtime::checkpoint::CheckpointStore;

/// Arguments of `riffle bench recovery`.
#[derive(clap::Args, Debug)]
pub struct RecoveryBenchArgs {
    /// State sizes to measure, in MB of checkpoint (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "10,1000")]
    state_mb: Vec<u64>,
    /// Processes of the job.
    #[arg(long, default_value_t = 2)]
    processes: usize,
    /// Time between checkpoints.
    #[arg(long, default_value = "500ms")]
    checkpoint_interval: String,
    /// Lines per second the generator hands out (10 words each).
    #[arg(long, default_value_t = 400_000)]
    rate: u64,
    /// Directory for the checkpoints (a temporary one by default).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// Checkpoint bytes per key of the word count's state, measured (word `w<n>`, its count, the
/// framing): what sizes the vocabulary for a state of a given size.
const BYTES_PER_KEY: u64 = 22;

/// Runs the benchmark.
pub fn run(args: RecoveryBenchArgs) -> Result<()> {
    let interval_ms = riffle_core::duration::parse_millis(&args.checkpoint_interval)?.max(1) as u64;
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("riffle-bench-recovery-{}", std::process::id())),
    };
    let exe = std::env::current_exe().map_err(|e| Error::Execution(format!("cannot find the riffle binary: {e}")))?;
    println!(
        "riffle bench recovery: word count in a 1-day window on {} processes under riffle supervise, checkpoints every {interval_ms} ms, a process killed with SIGKILL",
        args.processes
    );
    println!(
        "{:>10} {:>12} {:>11} {:>10} {:>12} {:>14} {:>13}",
        "read MB", "keys", "restarted", "restored", "processing", "minus interval", "hand restore"
    );
    for &mb in &args.state_mb {
        let dir = base.join(format!("{mb}mb"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
        let keys = (mb * 1_000_000 / BYTES_PER_KEY).max(1000);
        let figures = measure(&exe, &args, &dir, keys, interval_ms);
        let hand = crate::checkpoint::hand_loop(&dir, keys as usize, 8).map(|(_, read)| read);
        let _ = std::fs::remove_dir_all(&dir);
        let f = figures?;
        println!(
            "{:>10.1} {:>12} {:>10.2}s {:>9.2}s {:>11.2}s {:>13.2}s {:>12.2}s",
            f.state_bytes as f64 / 1e6,
            keys,
            f.restarted,
            f.restored,
            f.processing,
            (f.processing - interval_ms as f64 / 1000.0).max(0.0),
            hand?
        );
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

struct Figures {
    state_bytes: u64,
    restarted: f64,
    restored: f64,
    processing: f64,
}

fn measure(exe: &Path, args: &RecoveryBenchArgs, dir: &Path, keys: u64, interval_ms: u64) -> Result<Figures> {
    let ck = dir.join("ck");
    let source = format!(
        "generate://words?lines={}&words=10&vocabulary={keys}&cyclic=true&rate={}",
        u64::MAX / 64,
        args.rate
    );
    let mut supervisor = Command::new(exe)
        .args([
            "supervise",
            "--processes",
            &args.processes.to_string(),
            "--progress-timeout",
            "0",
        ])
        .args(["--restart-strategy", "fixed-delay:attempts=1,delay=0s", "--"])
        .args(["wordcount", "--source", &source, "--time", "event", "--window", "1d"])
        .args(["--sink", "blackhole://"])
        .arg("--checkpoint-dir")
        .arg(&ck)
        .args(["--checkpoint-interval", &args.checkpoint_interval])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Execution(format!("cannot start riffle supervise: {e}")))?;
    // Lines of the supervisor and its processes, with the moment each arrived.
    let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    if let Some(stderr) = supervisor.stderr.take() {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Instant::now(), line));
            }
        });
    }
    let result = kill_and_time(
        &lines,
        &ck,
        keys,
        args.processes,
        args.rate,
        Duration::from_millis(interval_ms),
    );
    let _ = supervisor.kill();
    let _ = supervisor.wait();
    // The supervisor's processes, should any outlive it.
    kill_attempt(&lines, None);
    result
}

/// The pids of the newest attempt the supervisor printed.
fn attempt_pids(lines: &Mutex<Vec<(Instant, String)>>) -> Vec<u32> {
    let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
    lines
        .iter()
        .rev()
        .find_map(|(_, l)| {
            let pids = l
                .strip_prefix("riffle supervise: attempt ")?
                .split_once("(pid ")?
                .1
                .split_once(')')?
                .0;
            Some(pids.split(", ").filter_map(|p| p.parse().ok()).collect())
        })
        .unwrap_or_default()
}

/// Kills process `index` of the newest attempt (every process with `None`).
fn kill_attempt(lines: &Mutex<Vec<(Instant, String)>>, index: Option<usize>) {
    let pids = attempt_pids(lines);
    for (i, pid) in pids.iter().enumerate() {
        if index.is_none_or(|x| x == i) {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("kill -KILL {pid} 2>/dev/null"))
                .status();
        }
    }
}

fn kill_and_time(
    lines: &Mutex<Vec<(Instant, String)>>,
    ck: &Path,
    keys: u64,
    processes: usize,
    rate: u64,
    interval: Duration,
) -> Result<Figures> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let timeout = || Error::Execution("riffle bench recovery: the job did not get there within 10 minutes".into());
    // The state is whole once the generator has gone through the vocabulary (10 words a line)
    // and a checkpoint has been taken since.
    let fill = Duration::from_secs_f64(keys as f64 / (10.0 * rate as f64)) + 3 * interval;
    while CheckpointStore::newest_complete(ck)?.is_none() {
        if Instant::now() > deadline {
            return Err(timeout());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(fill);
    let Some((before, state_bytes)) = CheckpointStore::newest_checkpoint_bytes(ck)? else {
        return Err(timeout());
    };
    let seen = lines.lock().unwrap_or_else(|p| p.into_inner()).len();
    let killed = Instant::now();
    kill_attempt(lines, Some(processes - 1));
    // Restarted: the supervisor's line for attempt 2; restored: the last of the new processes'
    // "resuming from checkpoint" lines after it.
    let (restarted, restored) = loop {
        std::thread::sleep(Duration::from_millis(5));
        if Instant::now() > deadline {
            return Err(timeout());
        }
        let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = &lines[seen.min(lines.len())..];
        let Some(start) = fresh
            .iter()
            .position(|(_, l)| l.contains("riffle supervise: attempt 2:"))
        else {
            continue;
        };
        let resumed: Vec<Instant> = fresh[start..]
            .iter()
            .filter(|(_, l)| l.contains("resuming from checkpoint"))
            .map(|(at, _)| *at)
            .collect();
        if resumed.len() >= processes {
            break (fresh[start].0, resumed[processes - 1]);
        }
    };
    // Processing again: a checkpoint completed by the new attempt (its ATTEMPT is the newest).
    let attempt_of = |rel: String| std::fs::read_to_string(ck.join(rel)).ok().map(|t| t.trim().to_string());
    let processing = loop {
        if let Some(e) = CheckpointStore::newest_complete(ck)? {
            let newest = attempt_of("ATTEMPT".into());
            if newest.is_some() && attempt_of(format!("chk-{e:010}/ATTEMPT")) == newest && e > before {
                break Instant::now();
            }
        }
        if Instant::now() > deadline {
            return Err(timeout());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let secs = |t: Option<Instant>| t.map_or(f64::NAN, |t| t.duration_since(killed).as_secs_f64());
    Ok(Figures {
        state_bytes,
        restarted: secs(Some(restarted)),
        restored: secs(Some(restored)),
        processing: secs(Some(processing)),
    })
}
