//! `riffle example`: applications built on Riffle's public API, shipped in the binary so that
//! they can be tried with one command. `bank serve` runs the event-sourced bank of
//! `riffle_bank` (store, projection job and HTTP API in one process) until SIGINT or SIGTERM.

use std::path::PathBuf;

use riffle_core::{Error, Result};

/// The `riffle example` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ExampleCommand {
    /// The event-sourced bank (CQRS): accounts, transfers, read models with read-your-writes.
    #[command(subcommand)]
    Bank(BankCommand),
}

/// The `riffle example bank` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BankCommand {
    /// Serve the bank over HTTP/JSON: POST /accounts/{id}/open|deposit|withdraw, POST
    /// /transfers, GET /accounts/{id}[/daily], GET /top-accounts; the store's API under /store.
    Serve(BankServeArgs),
}

/// Arguments of `riffle example bank serve`.
#[derive(clap::Args, Debug)]
pub struct BankServeArgs {
    /// The bank's data directory: its event store, read model and checkpoints.
    #[arg(long)]
    data: PathBuf,
    /// The address to listen on, HOST:PORT (port 0: any free port; the address taken is
    /// printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// How often the projection checkpoints; its rows become visible at each checkpoint, so
    /// this bounds how long a query waits to read its own write.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    checkpoint_interval: std::time::Duration,
    /// The projection's worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    workers: u64,
    /// Require `Authorization: Bearer <TOKEN>` on every request but /healthz.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// Like --token, the token read from this file (surrounding whitespace removed), so that
    /// it does not show in the process list.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// Runs a `riffle example` subcommand.
pub fn run(cmd: ExampleCommand) -> Result<()> {
    match cmd {
        ExampleCommand::Bank(BankCommand::Serve(args)) => serve_bank(args),
    }
}

fn serve_bank(args: BankServeArgs) -> Result<()> {
    if args.checkpoint_interval.is_zero() {
        return Err(Error::Config("--checkpoint-interval must be more than 0".into()));
    }
    let config = riffle_bank::app::BankConfig {
        data: args.data.clone(),
        checkpoint_interval: args.checkpoint_interval,
        workers: args.workers as usize,
        token: crate::store::read_token(&args.token, &args.token_file)?,
    };
    crate::store::serve_http("bank", &args.data, &args.listen, |listener, _| {
        riffle_bank::app::run(config, listener, riffle_store_server::shutdown_signal())
    })
}
