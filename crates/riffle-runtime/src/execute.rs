//! Running a job on worker threads and processes.
//!
//! A job is a function that builds the dataflow on a [`StreamEnv`]. [`execute`] starts timely
//! workers (threads of this process, and with [`ExecutionConfig::cluster`] the threads of
//! every process of the job, connected over TCP by timely's cluster mode), builds the
//! dataflow on each, and runs them until every source has ended and every operator has
//! finished. Results must not depend on the number of workers; the tests check this.

use std::sync::Arc;
use std::time::Duration;

use riffle_core::{Error, Result};

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

    fn timely_config(&self) -> timely::Config {
        let communication = if self.addresses.len() > 1 {
            timely::CommunicationConfig::Cluster {
                threads: self.threads,
                process: self.process,
                addresses: self.addresses.clone(),
                report: false,
                zerocopy: false,
            }
        } else if self.threads > 1 {
            timely::CommunicationConfig::Process(self.threads)
        } else {
            timely::CommunicationConfig::Thread
        };
        timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        }
    }
}

/// Runs a job to completion and returns this process's counters. Fails with the first error
/// a worker recorded (a missing file, a refused connection, a malformed record in strict
/// mode) or if a worker panicked.
pub fn execute<F>(config: ExecutionConfig, ctx: Arc<JobContext>, build: F) -> Result<MetricsSnapshot>
where
    F: Fn(&mut StreamEnv<'_>) + Send + Sync + 'static,
{
    let worker_ctx = Arc::clone(&ctx);
    let guards = timely::execute(config.timely_config(), move |worker| {
        let ctx = Arc::clone(&worker_ctx);
        worker.dataflow::<Time, _, _>(|scope| {
            let mut env = StreamEnv::new(scope, ctx);
            build(&mut env);
        });
        while worker.step_or_park(Some(Duration::from_millis(50))) {}
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
