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
}

impl ExecutionConfig {
    /// One process with `threads` workers.
    pub fn threads(threads: usize) -> Self {
        ExecutionConfig {
            threads: threads.max(1),
            process: 0,
            addresses: Vec::new(),
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
        })
    }

    /// Timely's allocators for this process's workers, with the cluster connected.
    fn allocators(&self) -> Result<(Vec<AllocatorBuilder>, Box<dyn std::any::Any + Send>)> {
        if self.addresses.len() > 1 {
            let sockets = connect_cluster(&self.addresses, self.process, CLUSTER_CONNECT_TIMEOUT)?;
            let hooks = Hooks::default();
            let local = ProcessBuilder::new_typed_vector(self.threads, hooks.refill.clone(), hooks.spill.clone());
            let (builders, guard) =
                initialize_networking_from_sockets(local, sockets, self.process, self.threads, hooks)
                    .map_err(|e| Error::Execution(format!("cannot start cluster communication: {e}")))?;
            Ok((
                builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
                Box::new(guard),
            ))
        } else {
            let communication = if self.threads > 1 {
                timely::CommunicationConfig::Process(self.threads)
            } else {
                timely::CommunicationConfig::Thread
            };
            communication
                .try_build()
                .map_err(|e| Error::Execution(format!("cannot start workers: {e}")))
        }
    }
}

/// How long the processes of a cluster wait for each other at start.
pub const CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects process `me` to every other process of `addresses` with timely's handshake:
/// dial each lower-numbered process (retrying until it listens) and send our index; accept
/// one connection from each higher-numbered process and read its index. Returns one socket
/// per process, `None` at `me`, as timely's `initialize_networking_from_sockets` expects.
///
/// Fails after `timeout` naming the processes that could not be reached; a retry helps if
/// they were merely late to start.
pub fn connect_cluster(addresses: &[String], me: usize, timeout: Duration) -> Result<Vec<Option<TcpStream>>> {
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
                        .map_err(|source| Error::Network {
                            what: "cannot greet process at",
                            address: addresses[dialled].clone(),
                            source,
                        })?;
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
            return Ok(sockets);
        }
        if Instant::now() > deadline {
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
    let (allocators, others) = config.allocators()?;
    let guards = timely::execute::execute_from(allocators, others, timely::WorkerConfig::default(), move |worker| {
        let ctx = Arc::clone(&worker_ctx);
        crate::checkpoint::reset_stateful_names();
        worker.dataflow::<Time, _, _>(|scope| {
            let mut env = StreamEnv::new(scope, Arc::clone(&ctx));
            build(&mut env);
        });
        while worker.step_or_park(Some(Duration::from_millis(50))) {}
        if processes > 1 {
            gather_job_total(worker, &ctx, threads);
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
