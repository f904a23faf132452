//! Command-line options shared by the jobs: execution (workers, processes) and time.

use riffle_core::duration::parse_millis;
use riffle_core::{Error, Result};
use riffle_runtime::ExecutionConfig;

/// Where the job runs.
#[derive(clap::Args, Debug, Clone)]
pub struct ExecutionArgs {
    /// Worker threads per process.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// Number of processes of the job (timely cluster mode). Start one riffle per process
    /// with the same arguments and a different --process.
    #[arg(long, short = 'n', default_value_t = 1)]
    pub processes: usize,
    /// This process's index, 0..processes.
    #[arg(long, short = 'p', default_value_t = 0)]
    pub process: usize,
    /// host:port of every process, comma separated (default 127.0.0.1:2101, :2102, ...).
    #[arg(long, value_delimiter = ',')]
    pub addresses: Vec<String>,
}

impl ExecutionArgs {
    /// The execution configuration.
    pub fn config(&self) -> Result<ExecutionConfig> {
        if self.workers == 0 {
            return Err(Error::Config("--workers must be at least 1".into()));
        }
        if self.processes <= 1 {
            return Ok(ExecutionConfig::threads(self.workers));
        }
        let addresses = if self.addresses.is_empty() {
            (0..self.processes).map(|i| format!("127.0.0.1:{}", 2101 + i)).collect()
        } else {
            self.addresses.clone()
        };
        if addresses.len() != self.processes {
            return Err(Error::Config(format!(
                "--addresses lists {} processes but --processes is {}",
                addresses.len(),
                self.processes
            )));
        }
        ExecutionConfig::cluster(self.workers, self.process, addresses)
    }
}

/// Parses an optional duration flag.
pub fn millis(flag: &str, value: &Option<String>) -> Result<Option<i64>> {
    value
        .as_deref()
        .map(|v| parse_millis(v).map_err(|e| Error::Config(format!("--{flag}: {e}"))))
        .transpose()
}
