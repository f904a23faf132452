//! `riffle nexmark`: the Nexmark benchmark's events and queries (see `riffle_nexmark`).
//!
//! * `generate` writes the standard events as JSON lines;
//! * `run` runs one query over generated events or a JSON-lines file and writes its rows;
//! * `bench` measures every query with the events in memory (generation excluded) and
//!   generated on the fly (included), on each worker count, beside the batch computation of
//!   the same query on one thread and the generator's own rate.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use riffle_connectors::SourceUri;
use riffle_core::{Error, Result};
use riffle_nexmark::{batch, build, source, Event, GeneratorConfig, Query};
use riffle_runtime::checkpoint::JobFingerprint;
use riffle_runtime::{execute, ExecutionConfig, JobContext, SystemClock};

use crate::options::{CheckpointArgs, ExecutionArgs, ResultSink};

/// The `riffle nexmark` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum NexmarkCommand {
    /// Write Nexmark events as JSON lines on stdout.
    Generate(GenerateArgs),
    /// Run one query and write its rows as JSON lines.
    Run(RunArgs),
    /// Events/s of each query, with and without the generator, beside a hand-written loop.
    Bench(BenchArgs),
}

/// The generator's configuration.
#[derive(clap::Args, Debug, Clone)]
pub struct GeneratorArgs {
    /// Events per second of event time (nexmark-flink's tps).
    #[arg(long, default_value_t = riffle_nexmark::generator::DEFAULT_RATE)]
    rate: u64,
    /// Event time of the first event, unix milliseconds.
    #[arg(long, default_value_t = riffle_nexmark::generator::DEFAULT_BASE_TIME)]
    base_time: i64,
    /// Added to every event id (nexmark's firstEventId).
    #[arg(long, default_value_t = 0)]
    first_event_id: u64,
}

impl GeneratorArgs {
    fn config(&self) -> Result<GeneratorConfig> {
        if self.rate == 0 {
            return Err(Error::Config("--rate must be at least 1 event per second".into()));
        }
        if self.base_time < 0 {
            return Err(Error::Config("--base-time must not be negative".into()));
        }
        Ok(GeneratorConfig {
            rate: self.rate,
            base_time: self.base_time,
            first_event_id: self.first_event_id,
        })
    }
}

/// Arguments of `riffle nexmark generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Number of events.
    #[arg(long)]
    events: u64,
    #[command(flatten)]
    generator: GeneratorArgs,
}

/// The format of result rows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowFormat {
    /// One JSON object per row, with the query's column names.
    Json,
}

/// Arguments of `riffle nexmark run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The query: q0, q1, q2, q3, q4, q5, q7, q8 or q11.
    #[arg(long)]
    query: Query,
    /// Generate this many events.
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    events: Option<u64>,
    /// Read events from JSON lines (a file, a folder, or any source URI of riffle).
    #[arg(long)]
    input: Option<String>,
    /// Generator splits (default: one per worker, or the restored checkpoint's); the results
    /// do not depend on it.
    #[arg(long)]
    splits: Option<u64>,
    /// Row format.
    #[arg(long, value_enum, default_value_t = RowFormat::Json)]
    format: RowFormat,
    /// Write rows to this file instead of stdout.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// Write rows to file://DIR (exactly once with checkpoints) or kafka://HOST:PORT/TOPIC.
    #[arg(long)]
    sink: Option<String>,
    /// Write malformed input lines here (with their position and error).
    #[arg(long)]
    dead_letter: Option<std::path::PathBuf>,
    /// Stop at the first malformed line instead of counting and skipping it.
    #[arg(long)]
    strict: bool,
    /// Fail (after writing the results) when more than this share of the input was malformed:
    /// a wrong input format or field name, rather than a few bad lines (1: never).
    #[arg(long, default_value_t = 0.5)]
    max_malformed_ratio: f64,
    #[command(flatten)]
    generator: GeneratorArgs,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    #[command(flatten)]
    execution: ExecutionArgs,
}

impl RunArgs {
    /// The generator's split count: `--splits`; with checkpoints and without it, the restored
    /// checkpoint's (a split's checkpointed position counts its own events, so it means
    /// something only with the same split count; the worker count may change); otherwise one
    /// per worker of the job.
    fn split_count(&self) -> Result<Option<u64>> {
        if self.splits.is_some() || self.input.is_some() {
            return Ok(self.splits);
        }
        let Some(dir) = &self.checkpoints.checkpoint_dir else {
            return Ok(None);
        };
        let restored = riffle_runtime::checkpoint::CheckpointStore::peek_fingerprint(dir)?
            .and_then(|f| f.get("--splits").and_then(|n| n.parse().ok()));
        let workers = self.execution.workers.max(1) * self.execution.processes.max(1);
        Ok(Some(restored.unwrap_or(workers as u64)))
    }

    /// What the query's state depends on: the query and its events (the generator's options
    /// and split count, or the input).
    fn fingerprint(&self, config: &GeneratorConfig, splits: Option<u64>) -> JobFingerprint {
        let job = JobFingerprint::new("riffle nexmark run").with("--query", self.query.name());
        match &self.input {
            Some(input) => job.with("--input", input),
            None => job
                .with_opt("--events", self.events)
                .with("--rate", config.rate)
                .with("--base-time", config.base_time)
                .with("--first-event-id", config.first_event_id)
                .with_opt("--splits", splits),
        }
    }
}

/// Arguments of `riffle nexmark bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Queries, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "q0,q1,q2,q3,q4,q5,q7,q8,q11")]
    queries: Vec<Query>,
    /// Events per run.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Worker counts, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Repetitions of each measurement; the best is reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Skip the runs with the generator in the job (only events from memory).
    #[arg(long)]
    memory_only: bool,
    #[command(flatten)]
    generator: GeneratorArgs,
}

/// Runs a `riffle nexmark` subcommand.
pub fn run(cmd: NexmarkCommand) -> Result<()> {
    match cmd {
        NexmarkCommand::Generate(args) => generate(args),
        NexmarkCommand::Run(args) => run_query(args),
        NexmarkCommand::Bench(args) => bench(args),
    }
}

fn stdout_error(source: std::io::Error) -> Error {
    Error::Io {
        what: "cannot write to",
        path: "stdout".into(),
        source,
    }
}

fn generate(args: GenerateArgs) -> Result<()> {
    let config = args.generator.config()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line = Vec::with_capacity(1024);
    for event in config.split(0, 1, args.events) {
        line.clear();
        event
            .write_json(&mut line)
            .map_err(|e| Error::Execution(format!("cannot encode event: {e}")))?;
        out.write_all(&line).map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)
}

fn run_query(args: RunArgs) -> Result<()> {
    let exec = args.execution.config()?;
    let config = args.generator.config()?;
    // A plain path is a file or folder; anything else a source URI.
    let input = args
        .input
        .as_deref()
        .map(|uri| match uri.contains("://") || uri == "-" {
            true => SourceUri::parse(uri)?.splits(),
            false => SourceUri::parse(&format!("file://{uri}"))?.splits(),
        })
        .transpose()?;
    let splits = args.split_count()?;
    if splits == Some(0) {
        return Err(Error::Config("--splits must be at least 1".into()));
    }
    // The checkpoint store before anything is written (the dead-letter file, the sink): a
    // checkpoint of another query or other events is refused with nothing changed.
    let fingerprint = args.fingerprint(&config, splits);
    let store = args.checkpoints.open(
        fingerprint,
        input.as_deref().unwrap_or_default(),
        args.execution.process,
    )?;
    let mut ctx = crate::job_end::context(args.strict, args.max_malformed_ratio, args.dead_letter.as_deref())?;
    if let Some(store) = store {
        ctx = ctx.with_checkpoints(store);
    }
    let ctx = Arc::new(ctx);
    let sink = ResultSink::new(&args.output, &args.sink, &ctx, &exec)?;
    let (query, events) = (args.query, args.events.unwrap_or(0));
    let out = sink.clone();
    let metrics = execute(exec, Arc::clone(&ctx), move |env| {
        let stream = match &input {
            Some(files) => source::json_lines(env, files.clone()),
            None => {
                let splits = splits.unwrap_or(env.workers() as u64);
                source::generated(env, config, events, splits)
            }
        };
        out.write(
            build(query, stream),
            |_, _| {},
            |_, row, line| {
                if let Err(e) = row.write_json(line) {
                    tracing::error!("cannot encode a result row: {e}");
                }
            },
        );
    })?;
    sink.finish()?;
    ctx.flush()?;
    crate::job_end::finish(
        &format!("nexmark {}", query.name()),
        crate::job_end::Nouns {
            input: "events",
            output: "rows",
        },
        &ctx,
        metrics,
        args.max_malformed_ratio,
    )?;
    Ok(())
}

/// CPU time (user + system) of this process so far, all threads, from `/proc/self/stat`
/// (clock ticks of 1/100 s, the fixed `USER_HZ` of Linux's proc interface); `None` where
/// there is no procfs.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3, "state".
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// One timed run: wall seconds, CPU seconds, rows.
struct Timing {
    wall: f64,
    cpu: Option<f64>,
    rows: u64,
}

fn timed(f: impl FnOnce() -> Result<u64>) -> Result<Timing> {
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    let rows = f()?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu0.and_then(|c0| process_cpu_seconds().map(|c1| c1 - c0));
    Ok(Timing { wall, cpu, rows })
}

/// Runs `query` on `workers` threads over the events `source` gives each worker; counts rows.
fn run_job(
    query: Query,
    workers: usize,
    source: impl for<'s> Fn(&mut riffle_runtime::StreamEnv<'s>) -> riffle_runtime::DataStream<'s, Event>
        + Send
        + Sync
        + 'static,
) -> Result<u64> {
    let ctx = Arc::new(JobContext::new(false, Arc::new(SystemClock)));
    let metrics = execute(ExecutionConfig::threads(workers), Arc::clone(&ctx), move |env| {
        let events = source(env);
        // A blackhole sink, as nexmark-flink's: rows are counted, not written.
        build(query, events).discard();
    })?;
    Ok(metrics.records_out)
}

fn best(repeat: usize, mut f: impl FnMut() -> Result<Timing>) -> Result<Timing> {
    let mut best: Option<Timing> = None;
    for _ in 0..repeat.max(1) {
        let t = f()?;
        if best.as_ref().is_none_or(|b| t.wall < b.wall) {
            best = Some(t);
        }
    }
    best.ok_or_else(|| Error::Execution("no run".into()))
}

fn per_s(events: u64, secs: f64) -> f64 {
    events as f64 / secs.max(1e-9)
}

fn bench(args: BenchArgs) -> Result<()> {
    let config = args.generator.config()?;
    let n = args.events;
    println!(
        "# riffle nexmark bench: {n} events, rate {} events/s of event time",
        config.rate
    );
    // The generator alone, one thread.
    let generator = best(args.repeat, || {
        timed(|| {
            let mut count = 0u64;
            for e in config.split(0, 1, n) {
                count += u64::from(e.date_time() >= 0);
            }
            Ok(count)
        })
    })?;
    println!("generator (1 thread): {:.0} events/s", per_s(n, generator.wall));
    println!(
        "{:<5} {:>7} {:>9} {:>14} {:>14} {:>14} {:>14} {:>12} {:>10}",
        "query", "workers", "rows", "mem ev/s", "mem ev/s/core", "gen ev/s", "gen ev/s/core", "loop ev/s", "mem/loop"
    );
    let events: Arc<Vec<Event>> = Arc::new(config.split(0, 1, n).collect());
    for &query in &args.queries {
        // The hand-written loop: the batch computation of the query on one thread, over its
        // own copy of the events, which it frees as the job frees the events it reads.
        let hand = best(args.repeat, || {
            let copy = events.to_vec();
            timed(move || {
                let rows = batch::run(query, &copy).len() as u64;
                drop(copy);
                Ok(rows)
            })
        })?;
        for &workers in &args.workers {
            let in_memory = best(args.repeat, || {
                // One split per worker, built before the clock starts.
                let splits = split_events(&events, workers);
                let slots = Arc::new(std::sync::Mutex::new(splits.into_iter().map(Some).collect::<Vec<_>>()));
                timed(|| {
                    run_job(query, workers, move |env| {
                        let mine = slots
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_mut(env.worker_index())
                            .and_then(Option::take)
                            .unwrap_or_default();
                        let mut lists = vec![Vec::new(); env.workers()];
                        lists[env.worker_index()] = mine;
                        source::in_memory(env, lists)
                    })
                })
            })?;
            let generated = match args.memory_only {
                true => None,
                false => Some(best(args.repeat, || {
                    timed(|| {
                        run_job(query, workers, move |env| {
                            source::generated(env, config, n, workers as u64)
                        })
                    })
                })?),
            };
            if let Some(generated) = generated
                .as_ref()
                .filter(|g| g.rows != in_memory.rows && !query.updating())
            {
                return Err(Error::Execution(format!(
                    "{}: {} rows from memory but {} generated",
                    query.name(),
                    in_memory.rows,
                    generated.rows
                )));
            }
            let per_core = |t: &Timing| t.cpu.map_or("n/a".to_string(), |c| format!("{:.0}", per_s(n, c)));
            println!(
                "{:<5} {:>7} {:>9} {:>14.0} {:>14} {:>14} {:>14} {:>12.0} {:>10.2}",
                query.name(),
                workers,
                in_memory.rows,
                per_s(n, in_memory.wall),
                per_core(&in_memory),
                generated
                    .as_ref()
                    .map_or("-".into(), |g| format!("{:.0}", per_s(n, g.wall))),
                generated.as_ref().map_or("-".into(), per_core),
                per_s(n, hand.wall),
                hand.wall / in_memory.wall,
            );
        }
    }
    println!("# mem: events generated into memory first; gen: generated by the job's sources.");
    println!("# ev/s/core: events per CPU-second of the whole process (all threads, measured).");
    println!("# loop: the query computed by plain single-threaded code over the events in memory.");
    Ok(())
}

/// `events` dealt round robin into `workers` lists (each in time order).
fn split_events(events: &[Event], workers: usize) -> Vec<Vec<Event>> {
    let mut lists: Vec<Vec<Event>> = (0..workers)
        .map(|_| Vec::with_capacity(events.len() / workers + 1))
        .collect();
    for (i, e) in events.iter().enumerate() {
        lists[i % workers].push(e.clone());
    }
    lists
}
