//! `riffle`: the command-line front end of the Riffle stream processor.
//!
//! Subcommands build a job on the DataStream API and run it; see the README for the
//! reference. Exit codes: 0 success, 1 the job failed (the error is printed on one line),
//! 2 the command line is invalid.

/// mimalloc instead of glibc's allocator: records with strings are allocated on one worker and
/// freed on another, where glibc's per-thread arenas consolidate and lock (Nexmark q2 from
/// memory on one worker: 1.9 M events/s with glibc, see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod example;
mod job_end;
mod join;
mod nexmark;
mod options;
mod sketch_jobs;
mod store;
mod supervise;
mod wordcount;

use clap::{Parser, Subcommand};

/// Riffle: a stream processor on timely dataflow.
#[derive(Parser, Debug)]
#[command(name = "riffle", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Count words, per window or over the whole input.
    Wordcount(Box<wordcount::WordcountArgs>),
    /// Count distinct words per window: exact, HyperLogLog or counting Bloom filter.
    Distinct(Box<sketch_jobs::DistinctArgs>),
    /// The k most frequent words per window.
    Topk(Box<sketch_jobs::TopkArgs>),
    /// Join two streams of JSON lines by key: in windows or within an interval.
    Join(Box<join::JoinArgs>),
    /// Copy the newest complete checkpoint of a job into a savepoint directory, to restore
    /// from later (also onto another number of workers) with --checkpoint-dir.
    Savepoint(SavepointArgs),
    /// Benchmarks that compare the engine with a hand-written loop on the same data.
    #[command(subcommand)]
    Bench(riffle_bench::BenchCommand),
    /// Generate test data.
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// The Nexmark benchmark: generate its events, run its queries, measure them.
    #[command(subcommand)]
    Nexmark(nexmark::NexmarkCommand),
    /// The event store: serve it over HTTP/JSON.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Example applications on Riffle (the event-sourced bank).
    #[command(subcommand)]
    Example(example::ExampleCommand),
    /// Run the processes of a job and start them again from the newest checkpoint when one
    /// fails, with Flink's restart strategies: riffle supervise [OPTIONS] -- <job arguments>.
    Supervise(supervise::SuperviseArgs),
}

#[derive(clap::Args, Debug)]
struct SavepointArgs {
    /// The job's checkpoint directory.
    #[arg(long)]
    checkpoint_dir: std::path::PathBuf,
    /// Where to write the savepoint (a new directory).
    #[arg(long)]
    to: std::path::PathBuf,
}

#[derive(Subcommand, Debug)]
enum GenerateCommand {
    /// Timestamped word lines (`<unix-millis> w1 w2 ...`) on stdout.
    Words(GenerateWordsArgs),
}

#[derive(clap::Args, Debug)]
struct GenerateWordsArgs {
    /// Number of lines.
    #[arg(long, default_value_t = 100_000)]
    lines: u64,
    /// Words per line.
    #[arg(long, default_value_t = 10)]
    words_per_line: u32,
    /// Distinct words.
    #[arg(long, default_value_t = 10_000)]
    vocabulary: u64,
    /// Event time of the first line (unix ms).
    #[arg(long, default_value_t = 1_700_000_000_000)]
    start: i64,
    /// Event time between lines (ms).
    #[arg(long, default_value_t = 10)]
    step: i64,
    /// Maximum disorder of timestamps (ms).
    #[arg(long, default_value_t = 0)]
    disorder: i64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RIFFLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let command = <Cli as clap::CommandFactory>::command();
    let matches = command.clone().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Processes of one job compare these when they connect (see options::job_fingerprint).
    let _ = options::JOB_FINGERPRINT.set(options::job_fingerprint(&command, &matches));
    let summary = options::job_summary(&command, &matches);
    tracing::info!("starting {summary}");
    let result = match cli.command {
        Command::Wordcount(args) => wordcount::run(*args),
        Command::Distinct(args) => sketch_jobs::run_distinct(*args),
        Command::Topk(args) => sketch_jobs::run_topk(*args),
        Command::Join(args) => join::run(*args),
        Command::Savepoint(a) => riffle_runtime::checkpoint::savepoint(&a.checkpoint_dir, &a.to).map(|epoch| {
            eprintln!("riffle: savepoint of checkpoint {epoch} written to {}", a.to.display());
        }),
        Command::Bench(cmd) => riffle_bench::run(cmd),
        Command::Nexmark(cmd) => nexmark::run(cmd),
        Command::Store(cmd) => store::run(cmd),
        Command::Example(cmd) => example::run(cmd),
        Command::Supervise(args) => supervise::run(args),
        Command::Generate(GenerateCommand::Words(a)) => {
            let gen = riffle_connectors::generator::WordGenerator {
                lines: a.lines,
                words_per_line: a.words_per_line,
                vocabulary: a.vocabulary,
                seed: a.seed,
                start: a.start,
                step: a.step,
                disorder: a.disorder,
                timestamps: true,
                rate: None,
                cyclic: false,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            gen.write_all(&mut out)
                .and_then(|_| std::io::Write::flush(&mut out))
                .map_err(|source| riffle_core::Error::Io {
                    what: "cannot write to",
                    path: "stdout".into(),
                    source,
                })
        }
    };
    match &result {
        Ok(()) => tracing::info!("shut down after {summary}: done"),
        Err(e) => tracing::info!("shut down after {summary}: failed: {e}"),
    }
    if let Err(e) = result {
        eprintln!("riffle: error: {e}");
        let code = if matches!(e, riffle_core::Error::Config(_)) {
            2
        } else {
            1
        };
        std::process::exit(code);
    }
}
