//! Riffle's benchmarks, behind `riffle bench`: each runs a job on the engine beside a
//! hand-written loop doing the same work on the same data, in the same run, so that the
//! framework's overhead is a measured ratio (see `docs/benchmarks.md` for results).
//!
//! They live in their own crate, not in the CLI or the engine's library modules, so that the
//! `riffle` binary's jobs and the engine stay free of measurement code and of what only the
//! hand-written loops need (librdkafka driven directly, for one). The CLI exposes them as
//! `riffle bench …` through [`BenchCommand`] and [`run`]. The Kafka benchmark is behind the
//! `kafka` feature (on by default).

pub mod checkpoint;
pub mod join;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod recovery;
pub mod sketches;
pub mod store;
pub mod wordcount;

use riffle_core::Result;

/// Benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Word count: whole input, 5 s tumbling and 10 s / 2 s hopping windows.
    Wordcount(wordcount::WordcountBenchArgs),
    /// Inserts/s of exact set, HyperLogLog, counting Bloom filter, Count-Min and top-k.
    Sketches(sketches::SketchBenchArgs),
    /// Interval and window joins on skewed keys against a hand-written symmetric hash join.
    Join(join::JoinBenchArgs),
    /// Snapshot and restore time of keyed window state of several sizes.
    Checkpoint(checkpoint::CheckpointBenchArgs),
    /// Time from a process's death to the job processing again under `riffle supervise`.
    Recovery(recovery::RecoveryBenchArgs),
    /// Durable appends/s and `$all` reads/s of the event store against hand-written file loops.
    Store(store::StoreBenchArgs),
    /// Messages/s through the Kafka source and sink against a hand-written librdkafka loop.
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaBenchArgs),
}

/// Runs a benchmark, printing its table on stdout.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Wordcount(args) => wordcount::run(args),
        BenchCommand::Sketches(args) => sketches::run(args),
        BenchCommand::Join(args) => join::run(args),
        BenchCommand::Checkpoint(args) => checkpoint::run(args),
        BenchCommand::Store(args) => store::run(args),
        BenchCommand::Recovery(args) => recovery::run(args),
        #[cfg(feature = "kafka")]
        BenchCommand::Kafka(args) => kafka::run(args),
    }
}
