//! `riffle supervise`: runs the processes of a job on this machine and starts them all again
//! from the newest checkpoint when one fails, as Flink's JobManager does with its restart
//! strategies.
//!
//! ```text
//! riffle supervise --processes 3 --restart-strategy fixed-delay:attempts=10,delay=1s -- \
//!     wordcount --source file://in --window 10s --checkpoint-dir ck --sink file://out
//! ```
//!
//! Each attempt starts the N processes as `riffle <job arguments> --processes N --process i
//! --addresses …`
//! on loopback ports picked for it (timely's cluster mode; one process: the job as it is), and
//! watches them:
//!
//! - a process that exits with a failure (or is killed by a signal) fails the attempt;
//! - with `--checkpoint-dir`, an attempt that completes no checkpoint for `--progress-timeout`
//!   fails too (a process stopped or hung, a peer unreachable: timely's connections would
//!   otherwise wait for TCP's own timeouts, many minutes);
//! - every process exiting 0 ends the supervisor with 0 (a bounded input was read).
//!
//! `--hosts` puts the processes on other addresses (network namespaces, or hosts reached through
//! `--launcher`, a command prefix such as `ip netns exec ns{i}` that execs riffle there).
//!
//! A failed attempt's processes are killed (SIGKILL: a restart restores from the checkpoint, so
//! nothing of theirs is needed), and the restart strategy decides: start them again after its
//! delay, or give up with exit 1 and the last cause. A process that exits 2 (its arguments are
//! wrong) is never restarted. Each restart is printed on stderr with its cause.
//!
//! SIGINT/SIGTERM are forwarded as SIGTERM: each process stops cleanly (a final checkpoint when
//! the job checkpoints) and the supervisor exits 0 when they all did; a second signal kills
//! them. The fencing of riffle-state keeps a process of an older attempt from committing
//! anything, should one survive.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use riffle_core::{Error, Result};
use riffle_runtime::checkpoint::CheckpointStore;
use riffle_runtime::restart::{RestartDecision, RestartStrategy, RestartTracker};

/// `riffle supervise`'s arguments.
#[derive(clap::Args, Debug)]
pub struct SuperviseArgs {
    /// Processes of the job, all on this machine (timely's cluster mode on loopback ports the
    /// supervisor picks).
    #[arg(long, short = 'n', default_value_t = 1)]
    processes: usize,
    /// Flink's restart strategies: none | fixed-delay:attempts=A,delay=D |
    /// failure-rate:max=M,interval=I,delay=D (default: fixed-delay without end, 1 s apart).
    #[arg(long, default_value = "fixed-delay")]
    restart_strategy: String,
    /// With --checkpoint-dir among the job's arguments: an attempt that completes no checkpoint
    /// for this long has failed (0: never).
    #[arg(long, default_value = "60s")]
    progress_timeout: String,
    /// The host (an address of this machine, or of a network namespace) of each process,
    /// comma separated (default: 127.0.0.1 for all). Ports are picked free on this machine.
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
    /// A command that starts each process, before riffle's own, with `{i}` replaced by the
    /// process index: `ip netns exec ns{i}`, `nsenter --net=/run/netns/ns{i}`. It must exec
    /// riffle (so that the supervisor's signals reach it), as these do.
    #[arg(long)]
    launcher: Option<String>,
    /// The job's arguments, after `--` (a subcommand and its flags, without --processes,
    /// --process and --addresses, which the supervisor adds).
    #[arg(last = true, required = true)]
    job: Vec<String>,
}

/// How an attempt ended.
enum Outcome {
    /// Every process exited 0.
    Finished,
    /// Stopped by a signal; the exit code of the supervisor.
    Stopped(i32),
    /// Failed, for this reason; `retry`: whether a restart can help.
    Failed { cause: String, retry: bool },
}

/// The supervisor's signals: SIGINT and SIGTERM, counted.
fn signal_counter() -> Result<Arc<AtomicUsize>> {
    let count = Arc::new(AtomicUsize::new(0));
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| Error::Execution(format!("cannot handle SIGINT/SIGTERM: {e}")))?;
    let counted = Arc::clone(&count);
    std::thread::spawn(move || {
        for _ in signals.forever() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    Ok(count)
}

/// Runs `riffle supervise`.
pub fn run(args: SuperviseArgs) -> Result<()> {
    let strategy: RestartStrategy = args.restart_strategy.parse()?;
    let progress_timeout =
        Duration::from_millis(riffle_core::duration::parse_millis(&args.progress_timeout)?.max(0) as u64);
    if args.processes == 0 {
        return Err(Error::Config("--processes must be at least 1".into()));
    }
    if !args.hosts.is_empty() && args.hosts.len() != args.processes {
        return Err(Error::Config(format!(
            "--hosts lists {} hosts for {} processes",
            args.hosts.len(),
            args.processes
        )));
    }
    for own in ["--processes", "-n", "--process", "-p", "--addresses"] {
        if args.job.iter().any(|a| a == own || a.starts_with(&format!("{own}="))) {
            return Err(Error::Config(format!(
                "the job's arguments hold {own}: riffle supervise picks each process's index and the cluster's addresses itself"
            )));
        }
    }
    let checkpoint_dir = flag_value(&args.job, "--checkpoint-dir").map(PathBuf::from);
    if checkpoint_dir.is_none() {
        eprintln!(
            "riffle supervise: the job has no --checkpoint-dir: a restart reads its input from the start again, and its progress is not watched"
        );
    }
    let exe = std::env::current_exe().map_err(|e| Error::Execution(format!("cannot find the riffle binary: {e}")))?;
    let signals = signal_counter()?;
    let mut tracker = RestartTracker::new(strategy.clone());
    let start = Instant::now();
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let outcome = run_attempt(
            &exe,
            &args,
            attempt,
            checkpoint_dir.as_deref(),
            progress_timeout,
            &signals,
        )?;
        let (cause, retry) = match outcome {
            Outcome::Finished => {
                eprintln!("riffle supervise: the job finished (attempt {attempt})");
                return Ok(());
            }
            Outcome::Stopped(0) => {
                eprintln!("riffle supervise: the job stopped cleanly (attempt {attempt})");
                return Ok(());
            }
            Outcome::Stopped(code) => std::process::exit(code),
            Outcome::Failed { cause, retry } => (cause, retry),
        };
        if !retry {
            return Err(Error::Execution(format!(
                "not restarting the job: {cause} (its arguments are wrong; a restart fails the same way)"
            )));
        }
        match tracker.on_failure(start.elapsed().as_millis() as u64) {
            RestartDecision::Restart { after } => {
                eprintln!(
                    "riffle supervise: attempt {attempt} failed: {cause}; restart {} in {} ms from the newest checkpoint ({strategy})",
                    tracker.restarts(),
                    after.as_millis()
                );
                let until = Instant::now() + after;
                while Instant::now() < until {
                    if signals.load(Ordering::SeqCst) > 0 {
                        return Err(Error::Execution(format!(
                            "stopped by a signal while waiting to restart after: {cause}"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
                }
            }
            RestartDecision::GiveUp { reason } => {
                return Err(Error::Execution(format!(
                    "giving up after {} restart(s): {reason}; the last failure: {cause}",
                    tracker.restarts()
                )))
            }
        }
    }
}

/// The value of `--flag VALUE` or `--flag=VALUE` among `args`.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&prefix).map(str::to_string)
        }
    })
}

/// A loopback port free at the time of the call.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Network {
        what: "cannot find a free port on",
        address: "127.0.0.1".into(),
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| Error::Network {
        what: "cannot find a free port on",
        address: "127.0.0.1".into(),
        source,
    })?;
    Ok(addr.port())
}

/// Sends `signal` to `child`. The callers signal only children whose exit they have not
/// collected, so the pid cannot belong to another process yet.
fn send(child: &Child, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(child.id() as i32), signal);
}

/// How a process ended, in words.
fn describe(process: usize, pid: u32, status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("process {process} (pid {pid}) exited with code {code}"),
        (None, Some(signal)) => format!("process {process} (pid {pid}) was killed by signal {signal}"),
        (None, None) => format!("process {process} (pid {pid}) ended ({status})"),
    }
}

/// Starts the processes of one attempt and watches them until they end, fail or are stopped.
fn run_attempt(
    exe: &std::path::Path,
    args: &SuperviseArgs,
    attempt: u64,
    checkpoint_dir: Option<&std::path::Path>,
    progress_timeout: Duration,
    signals: &AtomicUsize,
) -> Result<Outcome> {
    let n = args.processes;
    let addresses = match n {
        1 => Vec::new(),
        _ => (0..n)
            .map(|i| {
                let port = free_port()?;
                Ok(match args.hosts.get(i) {
                    Some(host) => format!("{host}:{port}"),
                    None => format!("127.0.0.1:{port}"),
                })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let mut children: Vec<(Child, Option<ExitStatus>)> = Vec::with_capacity(n);
    for i in 0..n {
        let mut command = match &args.launcher {
            Some(launcher) => {
                let mut words = launcher.split_whitespace().map(|w| w.replace("{i}", &i.to_string()));
                let program = words
                    .next()
                    .ok_or_else(|| Error::Config("--launcher is empty".into()))?;
                let mut c = Command::new(program);
                c.args(words).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        command.args(&args.job).stdin(Stdio::null());
        if n > 1 {
            command.args(["--processes", &n.to_string(), "--process", &i.to_string()]);
            command.args(["--addresses", &addresses.join(",")]);
        }
        match command.spawn() {
            Ok(child) => children.push((child, None)),
            Err(e) => {
                kill_all(&mut children);
                return Err(Error::Execution(format!("cannot start process {i} of the job: {e}")));
            }
        }
    }
    let pids: Vec<String> = children.iter().map(|(c, _)| c.id().to_string()).collect();
    eprintln!(
        "riffle supervise: attempt {attempt}: {n} process(es) started (pid {}){}",
        pids.join(", "),
        match n {
            1 => String::new(),
            _ => format!(" on {}", addresses.join(",")),
        }
    );
    let newest = |dir: &std::path::Path| CheckpointStore::newest_complete(dir).ok().flatten();
    let mut progress = (checkpoint_dir.and_then(newest), Instant::now());
    let mut forwarded = 0;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let received = signals.load(Ordering::SeqCst);
        if received > forwarded {
            // The first signal stops the job cleanly, a second one kills it.
            let signal = if forwarded == 0 {
                Signal::SIGTERM
            } else {
                Signal::SIGKILL
            };
            for (child, status) in &children {
                if status.is_none() {
                    send(child, signal);
                }
            }
            forwarded = received;
        }
        for (i, (child, status)) in children.iter_mut().enumerate() {
            if status.is_none() {
                *status = child
                    .try_wait()
                    .map_err(|e| Error::Execution(format!("cannot watch process {i}: {e}")))?;
            }
        }
        if forwarded > 0 {
            if children.iter().all(|(_, s)| s.is_some()) {
                let failed = children
                    .iter()
                    .enumerate()
                    .find_map(|(i, (c, s))| s.filter(|s| !s.success()).map(|s| (describe(i, c.id(), s), s.code())));
                return Ok(match failed {
                    None => Outcome::Stopped(0),
                    Some((cause, code)) => {
                        eprintln!("riffle supervise: stopped; {cause}");
                        Outcome::Stopped(code.unwrap_or(1))
                    }
                });
            }
            continue;
        }
        let failure = children.iter().enumerate().find_map(|(i, (child, status))| {
            status
                .filter(|s| !s.success())
                .map(|s| (describe(i, child.id(), s), s.code() != Some(2)))
        });
        if let Some((cause, retry)) = failure {
            kill_all(&mut children);
            return Ok(Outcome::Failed { cause, retry });
        }
        if children.iter().all(|(_, s)| s.is_some()) {
            return Ok(Outcome::Finished);
        }
        if let (Some(dir), false) = (checkpoint_dir, progress_timeout.is_zero()) {
            let now = newest(dir);
            if now != progress.0 {
                progress = (now, Instant::now());
            } else if progress.1.elapsed() > progress_timeout {
                kill_all(&mut children);
                let since = match progress.0 {
                    Some(e) => format!("checkpoint {e} is the newest"),
                    None => "none is complete".into(),
                };
                return Ok(Outcome::Failed {
                    cause: format!(
                        "no checkpoint completed in {} for {} ms ({since}): a process is stopped, hung or cut off",
                        dir.display(),
                        progress_timeout.as_millis()
                    ),
                    retry: true,
                });
            }
        }
    }
}

/// Kills the processes that are still running and reaps them all, so that their locks and
/// ports are free for the next attempt.
fn kill_all(children: &mut [(Child, Option<ExitStatus>)]) {
    for (child, status) in children.iter_mut() {
        if status.is_none() {
            let _ = child.kill();
            *status = child.wait().ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_are_found_in_both_spellings() {
        let args: Vec<String> = ["wordcount", "--checkpoint-dir", "ck", "--sink=file://o"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(flag_value(&args, "--checkpoint-dir").as_deref(), Some("ck"));
        assert_eq!(flag_value(&args, "--sink").as_deref(), Some("file://o"));
        assert_eq!(flag_value(&args, "--window"), None);
    }
}
