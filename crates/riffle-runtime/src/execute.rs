//! Running a job on worker threads and processes.
//!
//! A job is a function that builds the dataflow on a [`StreamEnv`]. [`execute`] starts timely
//! workers (threads of this process, and with [`ExecutionConfig::cluster`] the threads of
//! every process of the job, connected over TCP by timely's cluster mode), builds the
//! dataflow on each, and runs them until every source has ended and every operator has
//! finished. Results must not depend on the number of workers; the tests check this.
//!
//! Cluster sockets are connected here rather than by `timely::execute`: timely's own setup
//! prints "awaiting connections" to stdout (where the job's results go) and retries once a
//! second without end. [`connect_cluster`] performs timely's handshake (each process dials the
//! lower-numbered ones and sends its index as a big-endian `u64`) with quick retries, a
//! deadline and errors that name the unreachable process; the connected sockets are then
//! handed to timely's `initialize_networking_from_sockets`, so the wire protocol and
//! everything after the handshake stay timely's.
//!
//! Riffle extends the handshake with a **job fingerprint** ([`ExecutionConfig::job_fingerprint`]):
//! after its index the dialling process sends a [`Hello`] (a magic, then its settings,
//! length-prefixed), and the accepting process answers with its own. Both compare them, and a
//! mismatch fails the job before timely starts, with an error naming each differing setting
//! and both values. Without this, processes started with different worker counts crash
//! inside timely's networking (an index out of bounds), and processes with different windows
//! mix their results silently.
//!
//! Process 0's hello also carries the job's **attempt number** ([`ATTEMPT_SETTING`], not
//! compared): process 0 started the attempt when it opened the checkpoint store, and the other
//! processes take it from there before they write anything (riffle-state's fencing).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use riffle_core::{Error, Result};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::Hooks;

use crate::context::{JobContext, MetricsSnapshot};
use crate::stream::StreamEnv;
use crate::time::Time;

/// Where a job's workers run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionConfig {
    /// Worker threads in this process.
    pub threads: usize,
    /// This process's index among the job's processes.
    pub process: usize,
    /// The address (`host:port`) of every process, or empty for a single process.
    pub addresses: Vec<String>,
    /// The settings every process of a cluster must share, as `(name, value)` pairs (the
    /// CLI lists its job arguments except the per-process ones). The processes exchange them,
    /// together with [`threads`](Self::threads) under the name [`WORKERS_SETTING`], when they
    /// connect, and refuse to run if they differ. Ignored for a single process.
    pub job_fingerprint: Vec<(String, String)>,
}

/// The name under which the worker count of each process is compared across the processes
/// of a cluster (the CLI's flag, so that a mismatch names the flag to fix).
pub const WORKERS_SETTING: &str = "--workers";

/// The name under which process 0 announces the attempt number of a job with checkpoints (see
/// the [module docs](self)); not compared.
pub const ATTEMPT_SETTING: &str = "checkpoint attempt";

impl ExecutionConfig {
    /// One process with `threads` workers.
    pub fn threads(threads: usize) -> Self {
        ExecutionConfig {
            threads: threads.max(1),
            process: 0,
            addresses: Vec::new(),
            job_fingerprint: Vec::new(),
        }
    }

    /// Process `process` of a cluster whose processes listen on `addresses`, each with
    /// `threads` workers.
    pub fn cluster(threads: usize, process: usize, addresses: Vec<String>) -> Result<Self> {
        if process >= addresses.len() {
            return Err(Error::Config(format!(
                "process index {process} is not below the number of processes {}",
                addresses.len()
            )));
        }
        Ok(ExecutionConfig {
            threads: threads.max(1),
            process,
            addresses,
            job_fingerprint: Vec::new(),
        })
    }

    /// The same configuration with the settings the processes of a cluster must share (see
    /// [`job_fingerprint`](Self::job_fingerprint)).
    pub fn with_fingerprint(mut self, settings: Vec<(String, String)>) -> Self {
        self.job_fingerprint = settings;
        self
    }

    /// What this process sends in the handshake: its worker count and its job fingerprint.
    pub fn hello(&self) -> Hello {
        let mut settings = vec![(WORKERS_SETTING.to_string(), self.threads.to_string())];
        settings.extend(self.job_fingerprint.iter().cloned());
        Hello { settings }
    }

    /// Timely's allocators for this process's workers, with the cluster connected; process 0
    /// announces `attempt` (its checkpoint store's), and the others return the one it announced.
    #[allow(clippy::type_complexity)]
    fn allocators(
        &self,
        attempt: Option<u64>,
    ) -> Result<(Vec<AllocatorBuilder>, Box<dyn std::any::Any + Send>, Option<u64>)> {
        if self.addresses.len() > 1 {
            let mut hello = self.hello();
            if let (0, Some(a)) = (self.process, attempt) {
                hello.settings.push((ATTEMPT_SETTING.to_string(), a.to_string()));
            }
            let (sockets, first) = connect_cluster(&self.addresses, self.process, &hello, CLUSTER_CONNECT_TIMEOUT)?;
            let announced = first.and_then(|h| {
                h.settings
                    .iter()
                    .find(|(name, _)| name == ATTEMPT_SETTING)
                    .and_then(|(_, value)| value.parse().ok())
            });
            let hooks = Hooks::default();
            let local = ProcessBuilder::new_typed_vector(self.threads, hooks.refill.clone(), hooks.spill.clone());
            let (builders, guard) =
                initialize_networking_from_sockets(local, sockets, self.process, self.threads, hooks)
                    .map_err(|e| Error::Execution(format!("cannot start cluster communication: {e}")))?;
            Ok((
                builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
                Box::new(guard),
                announced,
            ))
        } else {
            let communication = if self.threads > 1 {
                timely::CommunicationConfig::Process(self.threads)
            } else {
                timely::CommunicationConfig::Thread
            };
            let (builders, guard) = communication
                .try_build()
                .map_err(|e| Error::Execution(format!("cannot start workers: {e}")))?;
            Ok((builders, guard, None))
        }
    }
}

/// How long the processes of a cluster wait for each other at start.
pub const CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a process waits for a connected peer's [`Hello`].
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings a process announces when it connects to another process of its cluster.
///
/// On the wire (after timely's big-endian `u64` process index): the 8 bytes [`HELLO_MAGIC`],
/// a big-endian `u32` number of settings, and for each its name and value, each a big-endian
/// `u32` length followed by that many UTF-8 bytes. The magic carries the format's version, so
/// that a peer speaking something else (another program, an older riffle) gets a clear error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    /// `(name, value)` pairs, in the order the process lists them.
    pub settings: Vec<(String, String)>,
}

/// The first bytes of a [`Hello`]: "RIFL", "HS" for handshake, and the format version `0001`.
pub const HELLO_MAGIC: [u8; 8] = *b"RIFLHS01";

/// The largest hello accepted, in bytes (a bound against garbage lengths).
const HELLO_LIMIT: u32 = 1 << 20;

impl Hello {
    /// The hello as bytes, ready to send.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = HELLO_MAGIC.to_vec();
        out.extend_from_slice(&(self.settings.len() as u32).to_be_bytes());
        for (name, value) in &self.settings {
            for text in [name, value] {
                out.extend_from_slice(&(text.len() as u32).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
        out
    }

    /// Reads a hello from `r`; `peer` names the other side in errors.
    pub fn read(r: &mut impl Read, peer: &str) -> Result<Hello> {
        let io = |e: std::io::Error| {
            Error::Execution(format!("cluster handshake with {peer}: cannot read its settings: {e}"))
        };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(io)?;
        if magic != HELLO_MAGIC {
            return Err(Error::Execution(format!(
                "cluster handshake with {peer}: it is not a riffle process speaking handshake {} \
                 (got bytes {magic:02x?}); are all processes the same riffle version?",
                String::from_utf8_lossy(&HELLO_MAGIC)
            )));
        }
        let mut total = 0u32;
        let mut read_u32 = |r: &mut dyn Read| -> Result<u32> {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(io)?;
            let n = u32::from_be_bytes(b);
            total = total.saturating_add(n);
            if total > HELLO_LIMIT {
                return Err(Error::Execution(format!(
                    "cluster handshake with {peer}: settings larger than {HELLO_LIMIT} bytes"
                )));
            }
            Ok(n)
        };
        let count = read_u32(r)?;
        let mut settings = Vec::new();
        for _ in 0..count {
            let mut pair = [String::new(), String::new()];
            for text in &mut pair {
                let mut bytes = vec![0u8; read_u32(r)? as usize];
                r.read_exact(&mut bytes).map_err(io)?;
                *text = String::from_utf8(bytes)
                    .map_err(|_| Error::Execution(format!("cluster handshake with {peer}: a setting is not UTF-8")))?;
            }
            let [name, value] = pair;
            settings.push((name, value));
        }
        Ok(Hello { settings })
    }

    /// Checks that `theirs`, announced by process `them`, matches this hello of process `me`;
    /// the error names every differing setting with both values.
    pub fn check(&self, me: usize, theirs: &Hello, them: usize) -> Result<()> {
        // The settings compared as a checkpoint's fingerprint is: field by field, each field
        // one side lacks being a difference too.
        let fields = |h: &Hello| {
            h.settings
                .iter()
                .filter(|(name, _)| name != ATTEMPT_SETTING)
                .fold(crate::fingerprint::JobFingerprint::default(), |f, (name, value)| {
                    f.with(name.as_str(), value)
                })
        };
        let shown = |v: Option<String>| v.unwrap_or_else(|| "(not set)".into());
        let diffs: Vec<String> = fields(self)
            .differences(&fields(theirs))
            .into_iter()
            .map(|d| {
                format!(
                    "process {them} runs with {name} {}, process {me} with {name} {}",
                    shown(d.checkpoint),
                    shown(d.job),
                    name = d.field
                )
            })
            .collect();
        if diffs.is_empty() {
            return Ok(());
        }
        Err(Error::Execution(format!(
            "the processes of this job were started with different settings: {}; start every process with the same arguments (except --process)",
            diffs.join("; ")
        )))
    }
}

/// Connects process `me` to every other process of `addresses` with timely's handshake:
/// dial each lower-numbered process (retrying until it listens) and send our index; accept
/// one connection from each higher-numbered process and read its index. Returns one socket
/// per process, `None` at `me`, as timely's `initialize_networking_from_sockets` expects, and
/// process 0's hello (`None` on process 0).
///
/// After the index the dialler sends `hello` and the acceptor answers with its own (see
/// [`Hello`]); each side fails if the other's differs, so that no process starts with
/// settings its peers do not share.
///
/// Fails after `timeout` naming the processes that could not be reached; a retry helps if
/// they were merely late to start.
pub fn connect_cluster(
    addresses: &[String],
    me: usize,
    hello: &Hello,
    timeout: Duration,
) -> Result<(Vec<Option<TcpStream>>, Option<Hello>)> {
    let greeting = hello.encode();
    #[allow(clippy::disallowed_methods)] // a connection timeout: wall time
    let deadline = Instant::now() + timeout;
    let listener = TcpListener::bind(&addresses[me]).map_err(|source| Error::Network {
        what: "cannot listen on",
        address: addresses[me].clone(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Execution(format!("cannot configure listener on {}: {e}", addresses[me])))?;
    let mut sockets: Vec<Option<TcpStream>> = (0..addresses.len()).map(|_| None).collect();
    let mut first = None;
    // Dial lower-numbered processes while also accepting higher-numbered ones, so that no
    // process waits on another's accept loop.
    let mut dialled = 0;
    loop {
        let mut progress = false;
        while dialled < me {
            match TcpStream::connect_timeout(&resolve(&addresses[dialled])?, Duration::from_millis(500)) {
                Ok(mut stream) => {
                    stream
                        .set_nodelay(true)
                        .and_then(|()| stream.write_all(&(me as u64).to_be_bytes()))
                        .and_then(|()| stream.write_all(&greeting))
                        // The peer answers once its accept loop reaches us; it never waits on
                        // a higher-numbered process while doing so, so this cannot deadlock.
                        .and_then(|()| stream.set_read_timeout(Some(HELLO_TIMEOUT)))
                        .map_err(|source| Error::Network {
                            what: "cannot greet process at",
                            address: addresses[dialled].clone(),
                            source,
                        })?;
                    let peer = format!("process {dialled} at {}", addresses[dialled]);
                    let theirs = Hello::read(&mut stream, &peer)?;
                    hello.check(me, &theirs, dialled)?;
                    if dialled == 0 {
                        first = Some(theirs);
                    }
                    stream
                        .set_read_timeout(None)
                        .map_err(|e| Error::Execution(format!("cannot configure cluster socket: {e}")))?;
                    sockets[dialled] = Some(stream);
                    dialled += 1;
                    progress = true;
                }
                Err(_) => break,
            }
        }
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(|e| Error::Execution(format!("cannot configure cluster socket: {e}")))?;
                let mut index = [0u8; 8];
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .and_then(|()| stream.read_exact(&mut index))
                    .and_then(|()| stream.set_read_timeout(None))
                    .and_then(|()| stream.set_nodelay(true))
                    .map_err(|source| Error::Network {
                        what: "no greeting from a process connecting to",
                        address: addresses[me].clone(),
                        source,
                    })?;
                let index = u64::from_be_bytes(index) as usize;
                if index <= me || index >= addresses.len() || sockets[index].is_some() {
                    return Err(Error::Execution(format!(
                        "unexpected connection on {} from a peer calling itself process {index}",
                        addresses[me]
                    )));
                }
                let peer = format!("process {index} connecting to {}", addresses[me]);
                stream
                    .set_read_timeout(Some(HELLO_TIMEOUT))
                    .map_err(|e| Error::Execution(format!("cannot configure cluster socket: {e}")))?;
                let theirs = Hello::read(&mut stream, &peer)?;
                // Answer before checking, so that the peer can report the mismatch too.
                stream
                    .write_all(&greeting)
                    .and_then(|()| stream.set_read_timeout(None))
                    .map_err(|source| Error::Network {
                        what: "cannot answer the greeting of a process connecting to",
                        address: addresses[me].clone(),
                        source,
                    })?;
                hello.check(me, &theirs, index)?;
                sockets[index] = Some(stream);
                progress = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(source) => {
                return Err(Error::Network {
                    what: "cannot accept on",
                    address: addresses[me].clone(),
                    source,
                })
            }
        }
        let missing: Vec<usize> = (0..addresses.len())
            .filter(|&i| i != me && sockets[i].is_none())
            .collect();
        if missing.is_empty() {
            return Ok((sockets, first));
        }
        #[allow(clippy::disallowed_methods)] // the connection timeout
        let expired = Instant::now() > deadline;
        if expired {
            let names: Vec<String> = missing.iter().map(|&i| format!("{i} ({})", addresses[i])).collect();
            return Err(Error::Execution(format!(
                "process {me} could not connect to process(es) {} within {} s; are they running with the same --addresses?",
                names.join(", "),
                timeout.as_secs()
            )));
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn resolve(address: &str) -> Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::Config(format!("cannot resolve cluster address '{address}'")))
}

/// Sums the counters of every process on process 0 (see [`JobContext::job_total`]), in a
/// second dataflow once the job's has ended: the last worker of each process to finish (when
/// every sink of the process has counted its records) sends the process's counters to worker 0.
fn gather_job_total(worker: &mut timely::worker::Worker, ctx: &Arc<JobContext>, threads: usize) {
    use timely::dataflow::operators::{Exchange, Inspect, ToStream};
    let mine = if ctx.worker_finished(threads) {
        vec![ctx.snapshot()]
    } else {
        Vec::new()
    };
    let total_ctx = Arc::clone(ctx);
    let mut total = MetricsSnapshot::default();
    worker.dataflow::<u64, _, _>(move |scope| {
        mine.to_stream(scope)
            .container::<Vec<MetricsSnapshot>>()
            .exchange(|_| 0)
            .inspect(move |m| {
                total = total.merge(*m);
                total_ctx.set_job_total(total);
            });
    });
    while worker.step_or_park(Some(Duration::from_millis(50))) {}
}

/// Runs a job to completion and returns this process's counters (on process 0 of several,
/// [`JobContext::job_total`] has every process's). Fails with the first error
/// a worker recorded (a missing file, a refused connection, a malformed record in strict
/// mode) or if a worker panicked.
pub fn execute<F>(config: ExecutionConfig, ctx: Arc<JobContext>, build: F) -> Result<MetricsSnapshot>
where
    F: Fn(&mut StreamEnv<'_>) + Send + Sync + 'static,
{
    let worker_ctx = Arc::clone(&ctx);
    let processes = config.addresses.len().max(1);
    let threads = config.threads;
    let (allocators, others, attempt) = config.allocators(ctx.checkpoints().map(|s| s.attempt()))?;
    if let (Some(store), Some(attempt)) = (ctx.checkpoints(), attempt) {
        store.adopt_attempt(attempt);
    }
    let guards = timely::execute::execute_from(allocators, others, timely::WorkerConfig::default(), move |worker| {
        let ctx = Arc::clone(&worker_ctx);
        let index = worker.index();
        // A panic in an operator (a bug, an assertion of the user's code) fails the job with
        // its message: timely's guard reports only that the thread panicked.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::checkpoint::reset_stateful_names();
            worker.dataflow::<Time, _, _>(|scope| {
                let mut env = StreamEnv::new(scope, Arc::clone(&ctx));
                build(&mut env);
            });
            while worker.step_or_park(Some(Duration::from_millis(50))) {}
            if processes > 1 {
                gather_job_total(worker, &ctx, threads);
            }
        }));
        if let Err(payload) = ran {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "without a message".into());
            ctx.fail(Error::Execution(format!("worker {index} panicked: {message}")));
            std::panic::resume_unwind(payload);
        }
    })
    .map_err(|e| Error::Execution(format!("cannot start workers: {e}")))?;
    let mut panicked = None;
    for (i, r) in guards.join().into_iter().enumerate() {
        if let Err(e) = r {
            panicked.get_or_insert(Error::Execution(format!("worker {i} failed: {e}")));
        }
    }
    if let Some(e) = ctx.take_errors().into_iter().next() {
        return Err(e);
    }
    if let Some(e) = panicked {
        return Err(e);
    }
    Ok(ctx.snapshot())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // test deadlines are wall time
mod tests {
    use super::*;

    fn free_addresses(n: usize) -> Vec<String> {
        // Bind port 0 to learn free ports, then release them for connect_cluster.
        let listeners: Vec<TcpListener> = (0..n).filter_map(|_| TcpListener::bind("127.0.0.1:0").ok()).collect();
        listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect()
    }

    fn hello(workers: &str, window: &str) -> Hello {
        Hello {
            settings: vec![
                (WORKERS_SETTING.to_string(), workers.to_string()),
                ("--window".to_string(), window.to_string()),
            ],
        }
    }

    fn run_pair(a: Hello, b: Hello) -> (Result<usize>, Result<usize>) {
        let addresses = free_addresses(2);
        let addr1 = addresses.clone();
        let t = std::thread::spawn(move || {
            connect_cluster(&addr1, 1, &b, Duration::from_secs(10)).map(|(s, _)| s.iter().flatten().count())
        });
        let r0 = connect_cluster(&addresses, 0, &a, Duration::from_secs(10)).map(|(s, _)| s.iter().flatten().count());
        let r1 = t
            .join()
            .unwrap_or_else(|_| Err(Error::Execution("process 1 panicked".into())));
        (r0, r1)
    }

    #[test]
    fn matching_processes_connect() {
        let (r0, r1) = run_pair(hello("2", "5s"), hello("2", "5s"));
        assert_eq!(r0.unwrap(), 1);
        assert_eq!(r1.unwrap(), 1);
    }

    #[test]
    fn mismatched_processes_both_refuse_naming_both_values() {
        let (r0, r1) = run_pair(hello("1", "5s"), hello("2", "10s"));
        let e0 = r0.unwrap_err().to_string();
        let e1 = r1.unwrap_err().to_string();
        assert!(
            e0.contains("process 1 runs with --workers 2, process 0 with --workers 1"),
            "{e0}"
        );
        assert!(
            e0.contains("process 1 runs with --window 10s, process 0 with --window 5s"),
            "{e0}"
        );
        assert!(
            e1.contains("process 0 runs with --workers 1, process 1 with --workers 2"),
            "{e1}"
        );
    }

    #[test]
    fn a_garbage_peer_gets_a_clear_error() {
        let addresses = free_addresses(2);
        let addr0 = addresses[0].clone();
        let t = std::thread::spawn(move || -> std::io::Result<()> {
            // Dial process 0 as "process 1" would, but send something else than a hello.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut stream = loop {
                match TcpStream::connect(&addr0) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            };
            stream.write_all(&1u64.to_be_bytes())?;
            stream.write_all(b"GET / HTTP/1.1\r\n\r\n")?;
            Ok(())
        });
        let e = connect_cluster(&addresses, 0, &hello("1", "5s"), Duration::from_secs(10)).unwrap_err();
        assert!(t.join().is_ok());
        assert!(e.to_string().contains("not a riffle process"), "{e}");
    }

    #[test]
    fn hello_round_trips() {
        let h = hello("3", "a=b\nc");
        let bytes = h.encode();
        assert_eq!(Hello::read(&mut bytes.as_slice(), "test").unwrap(), h);
        assert!(Hello::read(&mut &bytes[..bytes.len() - 1], "test").is_err());
    }
}
