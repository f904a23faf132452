//! Command-line options shared by the jobs: execution (workers, processes) and time.

use riffle_core::duration::parse_millis;
use riffle_core::{Error, Result};
use riffle_runtime::checkpoint::{CheckpointConfig, CheckpointStore, JobFingerprint};
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
        check_workers(self.workers, cores())?;
        if self.processes <= 1 {
            // --addresses without --processes would run one single-process job per process,
            // each on its own, sharing the checkpoint and output directories.
            if self.addresses.len() > 1 {
                return Err(Error::Config(format!(
                    "--addresses lists {} processes but --processes is {}: pass --processes {} too",
                    self.addresses.len(),
                    self.processes,
                    self.addresses.len()
                )));
            }
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
        Ok(ExecutionConfig::cluster(self.workers, self.process, addresses)?
            .with_fingerprint(JOB_FINGERPRINT.get().cloned().unwrap_or_default()))
    }
}

/// The subcommand path (`nexmark run`) and the innermost subcommand with its matches.
fn innermost_subcommand<'a>(
    mut command: &'a clap::Command,
    mut matches: &'a clap::ArgMatches,
) -> (Vec<String>, &'a clap::Command, &'a clap::ArgMatches) {
    let mut path = Vec::new();
    while let Some((name, sub)) = matches.subcommand() {
        let Some(c) = command.find_subcommand(name) else { break };
        path.push(name.to_string());
        (command, matches) = (c, sub);
    }
    (path, command, matches)
}

/// A one-line description of the job `matches` holds, for the log when it starts: command,
/// workers, processes and sources.
pub fn job_summary(command: &clap::Command, matches: &clap::ArgMatches) -> String {
    let (path, _, matches) = innermost_subcommand(command, matches);
    let raw = |id: &str| raw_value(matches, id);
    let mut line = path.join(" ");
    if let Some(w) = raw("workers") {
        let processes = raw("processes").unwrap_or_else(|| "1".into());
        let process = raw("process").unwrap_or_else(|| "0".into());
        line.push_str(&format!(
            ": {w} worker(s) per process, process {process} of {processes}"
        ));
    }
    for id in ["source", "left", "right", "input"] {
        if let Some(v) = raw(id) {
            line.push_str(&format!(", --{id} {v}"));
        }
    }
    line
}

/// The value of argument `id` as the command line gave it (or its default), several joined
/// with commas.
fn raw_value(matches: &clap::ArgMatches, id: &str) -> Option<String> {
    let values = matches.try_get_raw(id).ok()??;
    Some(
        values
            .map(|v| v.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The job's settings that every process of a cluster must share, filled by `main` from the
/// command line (see [`job_fingerprint`]).
pub static JOB_FINGERPRINT: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// Arguments that may differ between the processes of one job: the process index, the worker
/// count (compared by the runtime itself, see `riffle_runtime::execute::WORKERS_SETTING`), and
/// files each process writes for itself.
const PER_PROCESS_ARGS: [&str; 6] = ["process", "workers", "output", "dead_letter", "help", "version"];

/// The settings of the command `matches` holds, as `("--flag", value)` pairs: the subcommand
/// path, then every argument of the innermost subcommand with its value (defaults included,
/// so that spelling a default out does not count as a difference), except the per-process
/// ones. Processes of one job exchange these when they connect and refuse to differ.
pub fn job_fingerprint(command: &clap::Command, matches: &clap::ArgMatches) -> Vec<(String, String)> {
    let (path, command, matches) = innermost_subcommand(command, matches);
    let mut settings = vec![("command".to_string(), path.join(" "))];
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if PER_PROCESS_ARGS.contains(&id) {
            continue;
        }
        let Some(value) = raw_value(matches, id) else {
            continue;
        };
        let name = arg.get_long().map_or_else(|| id.to_string(), |l| format!("--{l}"));
        settings.push((name, value));
    }
    settings
}

/// Worker threads allowed per core: far more only adds scheduling and progress traffic (each
/// worker takes part in timely's all-to-all progress protocol, so the cost of a round grows
/// with the square of the workers) without adding parallelism.
pub const MAX_WORKERS_PER_CORE: usize = 64;

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Refuses more than [`MAX_WORKERS_PER_CORE`] workers per core and warns above one per core.
fn check_workers(workers: usize, cores: usize) -> Result<()> {
    let limit = MAX_WORKERS_PER_CORE * cores;
    if workers > limit {
        return Err(Error::Config(format!(
            "--workers {workers} is more than {MAX_WORKERS_PER_CORE} per core on this machine's {cores} core(s) \
             (at most {limit}); workers beyond the cores add overhead, not parallelism"
        )));
    }
    if workers > cores {
        tracing::warn!(
            "--workers {workers} is more than the {cores} core(s) available: the workers share them, \
             which is slower than one worker per core"
        );
    }
    Ok(())
}

/// Puts `flag` in front of a configuration error's message (once: `invalid configuration:
/// --window: …`, not `invalid configuration: --window: invalid configuration: …`).
pub fn flag_error(flag: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Config(message) => Error::Config(format!("{flag}: {message}")),
        other => other,
    }
}

/// Parses an optional duration flag. Durations are not negative; the values are taken with
/// clap's `allow_hyphen_values` so that `--window -5s` reaches this check (instead of clap
/// taking `-5s` for a flag) and gets a clear error.
pub fn millis(flag: &str, value: &Option<String>) -> Result<Option<i64>> {
    value
        .as_deref()
        .map(|v| {
            if v.trim_start().starts_with('-') {
                return Err(Error::Config(format!("--{flag}: must not be negative, got '{v}'")));
            }
            parse_millis(v).map_err(flag_error(&format!("--{flag}")))
        })
        .transpose()
}

/// Time characteristic of a job.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeArg {
    /// Records are stamped with the wall clock when read.
    Processing,
    /// Records carry their own time: `<unix-millis><comma, tab or space><text>`.
    Event,
}

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

/// How the lines of a text job's input are read.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// Plain text; in event time each line starts with its unix milliseconds.
    Text,
    /// One JSON object per line (or per Kafka message): the text in --text-field, the event
    /// time in --time-field (unix milliseconds or an RFC 3339 string).
    Json,
}

/// Where a job's text comes from and how its time is read (shared by the text jobs).
#[derive(clap::Args, Debug, Clone)]
pub struct SourceArgs {
    /// Input: socket://HOST:PORT, file://PATH (a file or a folder), - (stdin),
    /// kafka://HOST:PORT/TOPIC?group.id=G&auto.offset.reset=earliest|latest[&bounded=latest],
    /// generate://words?...
    #[arg(long)]
    pub source: String,
    /// How input lines are read.
    #[arg(long, value_enum, default_value_t = InputFormat::Text)]
    pub input_format: InputFormat,
    /// JSON input: the field holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// JSON input in event time: the field holding the event time.
    #[arg(long, default_value = "ts")]
    pub time_field: String,
    /// Time characteristic.
    #[arg(long, value_enum, default_value_t = TimeArg::Processing)]
    pub time: TimeArg,
    /// Event time: how far records may be out of order and still be on time.
    #[arg(long, allow_hyphen_values = true)]
    pub out_of_orderness: Option<String>,
    /// Event time: a split without records for this long stops holding the watermark back.
    #[arg(long, allow_hyphen_values = true)]
    pub idle_timeout: Option<String>,
    /// Also write malformed lines here (JSON lines with origin, line number, error, raw text).
    #[arg(long)]
    pub dead_letter: Option<std::path::PathBuf>,
    /// Fail on the first malformed line instead of counting and skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Fail (after writing the results) when more than this share of the input was malformed:
    /// a wrong --input-format or field name, rather than a few bad lines (1: never).
    #[arg(long, default_value_t = 0.5)]
    pub max_malformed_ratio: f64,
    /// Lines per chunk; the watermark advances between chunks.
    #[arg(long, default_value_t = 1024)]
    pub chunk_lines: usize,
    #[command(flatten)]
    pub checkpoints: CheckpointArgs,
    #[command(flatten)]
    pub execution: ExecutionArgs,
}

/// Checkpoints of a job (the text jobs and `nexmark run`).
#[derive(clap::Args, Debug, Clone)]
pub struct CheckpointArgs {
    /// Take consistent checkpoints into this directory, and resume from its newest complete
    /// one when started again (after a crash or a stop; also onto another number of workers).
    /// A checkpoint is only restored into the job that took it: another window, source or
    /// job kind is refused (other workers, processes, sinks or checkpoint flags are fine).
    #[arg(long)]
    pub checkpoint_dir: Option<std::path::PathBuf>,
    /// Time between checkpoints.
    #[arg(long, default_value = "1s", requires = "checkpoint_dir", allow_hyphen_values = true)]
    pub checkpoint_interval: String,
    /// Complete checkpoints to keep (at least 2).
    #[arg(long, default_value_t = 3, requires = "checkpoint_dir")]
    pub retain_checkpoints: usize,
}

impl CheckpointArgs {
    /// Validates the flags and opens the checkpoint store of a job reading `splits` whose
    /// state depends on `fingerprint` (`None` without `--checkpoint-dir`). Fails, before
    /// anything is written, on a split that cannot be replayed or on a checkpoint taken by
    /// another job.
    pub fn open(
        &self,
        fingerprint: JobFingerprint,
        splits: &[riffle_connectors::SplitSpec],
        process: usize,
    ) -> Result<Option<CheckpointStore>> {
        let Some(dir) = &self.checkpoint_dir else {
            return Ok(None);
        };
        let interval = millis("checkpoint-interval", &Some(self.checkpoint_interval.clone()))?.unwrap_or(0);
        if interval <= 0 {
            return Err(Error::Config(
                "--checkpoint-interval must be at least 1ms (0 would cut a checkpoint between any two chunks)".into(),
            ));
        }
        // One would do while nothing goes wrong, but a restore falls back to the previous
        // checkpoint when the newest one is damaged (a torn write, a bad disk block): with one
        // kept there is nothing to fall back to, and the job would have to start over.
        if self.retain_checkpoints < 2 {
            return Err(Error::Config(format!(
                "--retain-checkpoints must be at least 2, got {} (the previous checkpoint is the fallback when the newest one is found damaged)",
                self.retain_checkpoints
            )));
        }
        if let Some(split) = splits.iter().find(|s| !s.is_replayable()) {
            let what = split.description();
            return Err(Error::Config(format!(
                "--checkpoint-dir: the job reads {what}, which cannot be read again from a checkpoint (what it sent before a restart is gone); write the input to a file and read that (file://PATH), or use a Kafka topic"
            )));
        }
        let store = CheckpointStore::open_exclusive(
            CheckpointConfig {
                dir: dir.clone(),
                interval: std::time::Duration::from_millis(interval as u64),
                retain: self.retain_checkpoints,
                fingerprint,
            },
            process,
        )?;
        if let Some(e) = store.restored_epoch() {
            tracing::warn!("resuming from checkpoint {e} in {}", dir.display());
        }
        Ok(Some(store))
    }
}

/// The value of a duration flag as a fingerprint stores it (`10s` for `10000ms` too).
pub fn duration_field(flag: &str, value: &Option<String>) -> Result<Option<String>> {
    Ok(millis(flag, value)?.map(|ms| {
        let d = std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        humantime::format_duration(d).to_string()
    }))
}

/// The name of a flag's value as the command line spells it (`event` for `TimeArg::Event`).
pub fn value_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

/// Where a job's results go: lines to stdout or a file (`--output`; at least once with
/// checkpoints), or the sink connector a `--sink` URI names (see
/// `riffle_connectors::registry`): the exactly-once file sink (`file://DIR`), a Kafka topic
/// (`kafka://…`, keyed JSON messages, exactly once with checkpoints), or nowhere
/// (`blackhole://`, results counted and dropped, as Flink's blackhole connector, for
/// benchmarks).
#[derive(Clone)]
pub struct ResultSink(std::sync::Arc<dyn riffle_connectors::Sink>);

/// The format results are written in: `requested` (`--format`), but JSON into a sink of keyed
/// messages (Kafka), whose consumers read values, not text for people. Parses `--sink` (without
/// opening anything) to learn what it takes.
pub fn output_format(requested: FormatArg, sink: &Option<String>) -> Result<FormatArg> {
    Ok(match sink {
        Some(uri) => format_for(riffle_connectors::SinkUri::parse(uri)?.sink().layout(), requested),
        None => requested,
    })
}

fn format_for(layout: riffle_connectors::Layout, requested: FormatArg) -> FormatArg {
    match layout {
        riffle_connectors::Layout::Messages => FormatArg::Json,
        riffle_connectors::Layout::Lines | riffle_connectors::Layout::Nothing => requested,
    }
}

impl ResultSink {
    /// From `--output` and `--sink`. Before the job starts, makes the sink consistent with the
    /// checkpoint being restored (commits or drops pending files; publishes into Kafka what
    /// the checkpoint holds and the topic lacks).
    pub fn new(
        output: &Option<std::path::PathBuf>,
        sink: &Option<String>,
        ctx: &riffle_runtime::JobContext,
        exec: &ExecutionConfig,
    ) -> Result<Self> {
        let Some(uri) = sink else {
            return Ok(ResultSink(std::sync::Arc::new(result_sink(output)?)));
        };
        if output.is_some() {
            return Err(Error::Config("use either --output or --sink".into()));
        }
        let sink = std::sync::Arc::clone(riffle_connectors::SinkUri::parse(uri)?.sink());
        riffle_runtime::sink::recover(&*sink, ctx, exec.process)?;
        Ok(ResultSink(sink))
    }

    /// Writes `stream` here: each record as the line `format` appends; into Kafka, keyed by
    /// what `key` appends (nothing: no key).
    pub fn write<D: riffle_runtime::stream::Data>(
        &self,
        stream: riffle_runtime::DataStream<'_, D>,
        key: impl FnMut(&D, &mut Vec<u8>) + 'static,
        format: impl FnMut(i64, &D, &mut Vec<u8>) + 'static,
    ) {
        stream.write_to(std::sync::Arc::clone(&self.0), key, format)
    }

    /// The format results are written in (see [`output_format`]).
    pub fn format(&self, requested: FormatArg) -> FormatArg {
        format_for(self.0.layout(), requested)
    }

    /// Once the job has ended: flushes buffered lines, waits for the Kafka publishers.
    pub fn finish(&self) -> Result<()> {
        self.0.finish()
    }
}

/// A text job's input, validated: where it runs, what it reads and its context.
pub struct TextInput {
    /// Where the job runs.
    pub exec: ExecutionConfig,
    /// The source's splits (a missing file has already failed).
    pub splits: Vec<riffle_connectors::SplitSpec>,
    /// The watermark strategy in event time; `None` in processing time.
    pub strategy: Option<riffle_core::WatermarkStrategy>,
    /// Counters, errors, dead letters.
    pub ctx: std::sync::Arc<riffle_runtime::JobContext>,
    /// Lines per chunk.
    pub chunk_lines: usize,
    /// JSON input: where the text and the time are.
    pub json: Option<riffle_connectors::json::JsonTextFormat>,
    /// The share of malformed input above which the job fails.
    pub max_malformed_ratio: f64,
}

impl TextInput {
    /// The job's lines (their text, from JSON objects with `--input-format json`).
    pub fn lines<'s>(&self, env: &mut riffle_runtime::StreamEnv<'s>) -> riffle_runtime::DataStream<'s, String> {
        match &self.json {
            None => env.text(self.text_source()),
            Some(json) => {
                let json = json.clone();
                env.text_records(self.text_source(), std::rc::Rc::new(move |line: &str| json.parse(line)))
            }
        }
    }

    /// The text source to build on each worker.
    pub fn text_source(&self) -> riffle_runtime::TextSource {
        let source = riffle_runtime::TextSource::new(self.splits.clone()).chunk_lines(self.chunk_lines);
        match self.strategy {
            Some(s) => source.event_time(s),
            None => source,
        }
    }
}

impl SourceArgs {
    /// Adds what the state of a job depends on of its input to `job`: the source, how its
    /// lines are read, the time characteristic and the out-of-orderness (the watermark that
    /// decided which windows fired). The idle timeout, strictness, dead letters and chunk size
    /// are safe to change.
    pub fn fingerprint(&self, job: JobFingerprint) -> Result<JobFingerprint> {
        let json = self.input_format == InputFormat::Json;
        let event = self.time == TimeArg::Event;
        Ok(job
            .with("--source", &self.source)
            .with("--input-format", value_name(self.input_format))
            .with_opt("--text-field", json.then_some(&self.text_field))
            .with_opt("--time-field", (json && event).then_some(&self.time_field))
            .with("--time", value_name(self.time))
            .with_opt(
                "--out-of-orderness",
                match event {
                    true => duration_field("out-of-orderness", &self.out_of_orderness)?.or(Some("0s".into())),
                    false => None,
                },
            ))
    }

    /// Validates the options and opens what must exist before the job starts. `lateness` is the
    /// job's own lateness flag (event time only), checked here with the others; `job` is the
    /// fingerprint of the job's own settings, to which the input's are added.
    pub fn open(&self, lateness: &Option<String>, job: JobFingerprint) -> Result<TextInput> {
        let exec = self.execution.config()?;
        if self.chunk_lines == 0 {
            return Err(Error::Config("--chunk-lines must be at least 1".into()));
        }
        let uri = riffle_connectors::SourceUri::parse(&self.source)?;
        // Fail fast, with the path, on a missing file (sockets are connected by the reader).
        let splits = uri.splits()?;
        let ooo = millis("out-of-orderness", &self.out_of_orderness)?.unwrap_or(0);
        let idle = millis("idle-timeout", &self.idle_timeout)?;
        if self.time == TimeArg::Processing
            && (self.out_of_orderness.is_some() || lateness.is_some() || self.idle_timeout.is_some())
        {
            return Err(Error::Config(
                "--out-of-orderness, --lateness and --idle-timeout need --time event".into(),
            ));
        }
        let strategy = (self.time == TimeArg::Event).then(|| {
            let s = riffle_core::WatermarkStrategy::bounded_out_of_orderness(ooo);
            match idle {
                Some(idle) => s.with_idleness(idle),
                None => s,
            }
        });
        // The checkpoint store first: a checkpoint of another job is refused before anything
        // (the dead-letter file, the sinks) is created.
        let store = self
            .checkpoints
            .open(self.fingerprint(job)?, &splits, self.execution.process)?;
        let mut ctx = crate::job_end::context(self.strict, self.max_malformed_ratio, self.dead_letter.as_deref())?;
        if let Some(store) = store {
            ctx = ctx.with_checkpoints(store);
        }
        Ok(TextInput {
            exec,
            splits,
            strategy,
            ctx: std::sync::Arc::new(ctx),
            chunk_lines: self.chunk_lines,
            max_malformed_ratio: self.max_malformed_ratio,
            json: (self.input_format == InputFormat::Json).then(|| {
                let time = (self.time == TimeArg::Event).then_some(self.time_field.as_str());
                riffle_connectors::json::JsonTextFormat::new(&self.text_field, time)
            }),
        })
    }
}

/// Fixed time windows of a job: tumbling, or sliding with `--slide`; none for the whole input.
#[derive(clap::Args, Debug, Clone)]
pub struct FixedWindowArgs {
    /// Window size (e.g. 5s). Without it, one result for the whole input.
    #[arg(long, allow_hyphen_values = true)]
    pub window: Option<String>,
    /// Slide of sliding (hopping) windows (e.g. 2s).
    #[arg(long, requires = "window", allow_hyphen_values = true)]
    pub slide: Option<String>,
}

impl FixedWindowArgs {
    /// Adds the windows to a job's fingerprint (`--window`, `--slide`, normalised).
    pub fn fingerprint(&self, job: JobFingerprint) -> Result<JobFingerprint> {
        Ok(job
            .with_opt("--window", duration_field("window", &self.window)?)
            .with_opt("--slide", duration_field("slide", &self.slide)?))
    }

    /// The windows: tumbling, sliding or global.
    pub fn windows(&self) -> Result<riffle_core::window::TimeWindows> {
        use riffle_core::window::{GlobalWindows, SlidingWindows, TumblingWindows};
        Ok(match (millis("window", &self.window)?, millis("slide", &self.slide)?) {
            (Some(size), None) => TumblingWindows::of_millis(size)?.into(),
            (Some(size), Some(slide)) => SlidingWindows::of_millis(size, slide)?.into(),
            (None, _) => GlobalWindows.into(),
        })
    }
}

/// Where results go.
pub fn result_sink(output: &Option<std::path::PathBuf>) -> Result<riffle_connectors::LineSink> {
    match output {
        Some(path) => riffle_connectors::LineSink::file(path),
        None => Ok(riffle_connectors::LineSink::stdout()),
    }
}

/// Appends `s` as a JSON string.
pub fn json_str(s: &str, out: &mut Vec<u8>) {
    // serde_json escapes exactly what JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}
