//! Helpers shared by the CLI tests: the riffle binary, generated input, keyed comparisons, ports.
#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The word count every Kafka test runs: 2 s event-time windows, JSON lines.
pub const JOB: [&str; 9] = [
    "wordcount",
    "--time",
    "event",
    "--window",
    "2s",
    "--out-of-orderness",
    "1s",
    "--format",
    "json",
];

/// Runs `command`, which must succeed; its stdout lines, sorted.
pub fn sorted_stdout(command: &mut Command) -> Vec<String> {
    let out = command.output().expect("riffle runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// The riffle binary under test.
pub fn riffle() -> Command {
    Command::new(env!("CARGO_BIN_EXE_riffle"))
}

/// Runs riffle with `args` to its end.
pub fn run(args: &[&str]) -> std::process::Output {
    riffle().args(args).output().expect("riffle starts")
}

/// The stdout of a run that must have succeeded (its stderr otherwise).
pub fn ok_stdout(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8 output")
}

/// Event-time lines from `riffle generate` (disorder below the job's out-of-orderness, so no
/// record is late whatever the partitioning).
pub fn generate(lines: u64) -> Vec<Vec<u8>> {
    let out = riffle()
        .args([
            "generate",
            "words",
            "--lines",
            &lines.to_string(),
            "--words-per-line",
            "3",
        ])
        .args(["--vocabulary", "300", "--step", "1", "--disorder", "200"])
        .output()
        .expect("riffle generate");
    assert!(out.status.success());
    out.stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Asserts `got == want` with a short message (the first difference, not both lists).
pub fn assert_same(got: &[(String, String)], want: &[(String, String)], what: &str) {
    if got != want {
        let first = got
            .iter()
            .zip(want)
            .position(|(g, w)| g != w)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} messages, {} expected; first difference at {first}: got {:?}, expected {:?}",
            got.len(),
            want.len(),
            got.get(first),
            want.get(first)
        );
    }
}

pub fn keyed(lines: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            (v["word"].as_str().expect("word").to_string(), l.clone())
        })
        .collect();
    out.sort();
    out
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// Waits for `child` until `deadline` has passed, then kills it and panics with `what`.
pub fn wait_with_deadline(
    mut child: std::process::Child,
    deadline: std::time::Duration,
    what: &str,
) -> std::process::Output {
    use std::io::Read;

    let start = Instant::now();
    // Drain the pipes on threads so that a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut buf);
        }
        buf
    });
    let err_t = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for riffle") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: riffle did not finish within {deadline:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out_t.join().expect("stdout reader"),
        stderr: err_t.join().expect("stderr reader"),
    }
}

/// Kills `child` once two checkpoints are complete (or lets it finish, on a slow machine).
pub fn kill_after_a_checkpoint(child: &mut std::process::Child, ckpt: &std::path::Path) {
    let complete = |ckpt: &std::path::Path| {
        std::fs::read_dir(ckpt)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("MANIFEST").exists())
                    .count()
            })
            .unwrap_or(0)
    };
    for _ in 0..4000 {
        if complete(ckpt) >= 2 || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait().expect("reaped");
}

/// How long a server started by [`HttpServer`] has to stop on SIGTERM.
const HTTP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// A riffle HTTP server (`riffle store serve`, `riffle example bank serve`) run by a test on
/// a free port; killed when dropped.
pub struct HttpServer {
    pub child: Child,
    /// `http://host:port`.
    pub base: String,
    /// `host:port`.
    pub addr: String,
    /// Its stderr after the listening line, once it exited.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl HttpServer {
    /// Starts `riffle ARGS --listen 127.0.0.1:0` (a server that prints `listening on
    /// http://ADDR` on stderr) and waits until it listens.
    pub fn start(args: &[&str]) -> HttpServer {
        let mut child = riffle()
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("riffle starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            let n = stderr.read_line(&mut line).expect("read stderr");
            assert!(n > 0, "riffle {args:?} exited before listening");
            if let Some((_, addr)) = line.trim().split_once("listening on http://") {
                break addr.to_string();
            }
        };
        let stderr = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            rest
        });
        HttpServer {
            child,
            base: format!("http://{addr}"),
            addr,
            stderr: Some(stderr),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL, reaped.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit; its status and the rest of its stderr.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", self.child.id()))
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -TERM failed");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(start.elapsed() < HTTP_DEADLINE, "the server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = self.stderr.take().map(|t| t.join().expect("stderr reader"));
        (status, stderr.unwrap_or_default())
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The word count of the fencing, supervisor, object-storage and namespace tests: `lines`
/// generated lines (10 words of a vocabulary of 50, 1 ms apart) at `rate` lines per second (0: as fast as possible),
/// 10 s event-time windows, JSON lines.
pub fn generated_wordcount(lines: u64, rate: u64) -> Vec<String> {
    let rate = match rate {
        0 => String::new(),
        r => format!("&rate={r}"),
    };
    let source = format!("generate://words?lines={lines}&vocabulary=50&step=1{rate}");
    let args = [
        "wordcount",
        "--source",
        &source,
        "--time",
        "event",
        "--window",
        "10s",
        "--format",
        "json",
    ];
    args.iter().map(|s| s.to_string()).collect()
}

/// The lines of the committed part files of the file sink's folder `out`, sorted.
pub fn committed_lines(out: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(out).expect("output dir").filter_map(|e| e.ok()) {
        if entry.path().is_file() {
            let text = std::fs::read_to_string(entry.path()).expect("part file");
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

/// [`generated_wordcount`] with checkpoints every 200 ms at `location` (a folder or `s3://…`)
/// and committed part files in `out`.
pub fn checkpointed_wordcount(lines: u64, rate: u64, location: &str, out: &std::path::Path) -> Vec<String> {
    let mut args = generated_wordcount(lines, rate);
    args.extend([
        "--checkpoint-dir".to_string(),
        location.to_string(),
        "--checkpoint-interval".to_string(),
        "200ms".to_string(),
        "--sink".to_string(),
        format!("file://{}", out.display()),
    ]);
    args
}

/// Sends `signal` (`-STOP`, `-TERM`, `-KILL`, …) to process `pid` with the shell's builtin
/// kill (a fresh machine may lack procps' /usr/bin/kill); it must succeed.
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("kill {signal} {pid}"))
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {signal} {pid} failed");
}
