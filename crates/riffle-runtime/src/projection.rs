//! Projections: a Riffle job that reads an event store and keeps a read-model table, run in a
//! background thread of the application that serves the table (the CQRS read side).
//!
//! [`Projection::spawn`] starts the job: the events of a `store://` (or `store+http://`)
//! source as [`StoreEvent`]s, turned by the application's `build` function into
//! [`TableUpdate`]s (rows and position markers), written to a `table://` sink
//! ([`ReadModelSink`]) with checkpoints, so that every event is reflected exactly once across
//! stops, crashes and restarts (a restart with the same checkpoint directory resumes after the
//! last checkpointed event). The application queries [`Projection::model`] (or
//! [`ReadModel::open`] on the same path) and waits for its writes with
//! [`ReadModel::wait_for_position`]. [`Projection::stop`] ends the job cleanly (a final
//! checkpoint, its rows committed).
//!
//! A typical `build`: key the events by stream (each stream's events stay in order on one
//! worker), fold them (`rolling`), and emit each changed row with a marker of the position it
//! reflects ([`row_with_position`]).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use riffle_connectors::eventstore::parse_event;
use riffle_connectors::readmodel::{ReadModel, ReadModelSink, TableUpdate};
use riffle_connectors::{Sink, SourceUri, SplitSpec};
use riffle_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointConfig, CheckpointStore, JobFingerprint};
use crate::context::{JobContext, MetricsSnapshot, SystemClock};
use crate::source::{TimeMode, DEFAULT_CHUNK_LINES};
use crate::stream::{DataStream, StreamEnv};
use crate::{execute, ExecutionConfig};

/// An event of the store as a projection's records carry it (the fields a fold needs; the
/// event's JSON line, parsed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreEvent {
    /// Its stream.
    pub stream: String,
    /// Its type.
    pub event_type: String,
    /// Its data, JSON text.
    pub data: String,
    /// Its version within the stream.
    pub version: u64,
    /// Its global position.
    pub position: u64,
    /// When the store appended it (ms since the Unix epoch).
    pub timestamp: i64,
}

/// Parses a line of a store source into a [`StoreEvent`] with its event time (the store's
/// timestamp): a record parser for [`crate::StreamEnv::text_records`].
pub fn store_event(line: &str) -> std::result::Result<(i64, StoreEvent), String> {
    let e = parse_event(line)?;
    Ok((
        e.timestamp,
        StoreEvent {
            stream: e.stream,
            event_type: e.event_type,
            data: e.data,
            version: e.version,
            position: e.position,
            timestamp: e.timestamp,
        },
    ))
}

/// The events of a store source's splits (`store://`, `store+http://`) in the order of the
/// log, as records on the worker that reads each split, in processing time.
///
/// Unlike [`StreamEnv::text_records`], which spreads the records of a source with fewer
/// splits than workers over every worker (round robin) and so lets two events of one stream
/// overtake each other on their way to the stream's worker, this keeps them where they are
/// read: a `key_by` on the stream then keeps each stream's order (timely's channels between
/// two workers are FIFO). A line that is not an event is reported as malformed with its
/// position.
pub fn store_events<'s>(env: &mut StreamEnv<'s>, splits: &[SplitSpec]) -> DataStream<'s, StoreEvent> {
    let (me, workers) = (env.worker_index(), env.workers());
    let ctx = Arc::clone(env.context());
    // Processing time: the events' own timestamps are not checked as event times.
    let decode = crate::source::record_decoder(std::rc::Rc::new(store_event), false);
    let readers = crate::source::open_line_splits(splits, me, workers, &decode, &ctx);
    env.splits("StoreSource", TimeMode::Processing, readers, DEFAULT_CHUNK_LINES)
}

/// The two updates of a changed row: the row itself and a marker of the position it reflects.
///
/// ```
/// use riffle_runtime::projection::row_with_position;
/// use riffle_connectors::readmodel::TableUpdate;
/// let [row, marker] = row_with_position("account-1".into(), r#"{"balance":5}"#.into(), 7);
/// assert_eq!(marker, TableUpdate::Position(7));
/// assert!(matches!(row, TableUpdate::Put { .. }));
/// ```
pub fn row_with_position(key: String, value: String, position: u64) -> [TableUpdate; 2] {
    [TableUpdate::Put { key, value }, TableUpdate::Position(position)]
}

/// How a projection runs.
#[derive(Clone, Debug)]
pub struct ProjectionConfig {
    /// The source: `store://DIR?…` or `store+http://…`.
    pub source: String,
    /// The read-model table's file.
    pub table: PathBuf,
    /// Where its checkpoints go: a restart with the same directory resumes the projection.
    pub checkpoint_dir: PathBuf,
    /// How often a checkpoint is cut; rows become visible at each (the latency knob).
    pub checkpoint_interval: Duration,
    /// Worker threads.
    pub workers: usize,
}

impl ProjectionConfig {
    /// A projection of `source` into `table`, checkpointed in `checkpoint_dir` every 10 ms on
    /// two workers.
    pub fn new(source: impl Into<String>, table: impl Into<PathBuf>, checkpoint_dir: impl Into<PathBuf>) -> Self {
        ProjectionConfig {
            source: source.into(),
            table: table.into(),
            checkpoint_dir: checkpoint_dir.into(),
            checkpoint_interval: Duration::from_millis(10),
            workers: 2,
        }
    }
}

/// A projection job running in a background thread (see the [module docs](self)).
pub struct Projection {
    model: ReadModel,
    ctx: Arc<JobContext>,
    thread: Option<std::thread::JoinHandle<Result<MetricsSnapshot>>>,
}

/// What a projection's `build` function is: events in, table updates out (called once per
/// worker as the dataflow is built).
pub trait BuildProjection:
    for<'s> Fn(DataStream<'s, StoreEvent>) -> DataStream<'s, TableUpdate> + Send + Sync + 'static
{
}
impl<F> BuildProjection for F where
    F: for<'s> Fn(DataStream<'s, StoreEvent>) -> DataStream<'s, TableUpdate> + Send + Sync + 'static
{
}

impl Projection {
    /// Runs `build` over the events of `config.source` into `config.table`, resuming from
    /// the newest checkpoint in `config.checkpoint_dir` (rebuilding the table from the start
    /// when there is none). Returns once the table is open and recovered; the job runs until
    /// [`Projection::stop`] (or, for a bounded source, its end: see [`Projection::join`]).
    pub fn spawn(config: ProjectionConfig, build: impl BuildProjection) -> Result<Projection> {
        let splits = SourceUri::parse(&config.source)?.splits()?;
        let store = CheckpointStore::open(CheckpointConfig {
            dir: config.checkpoint_dir.clone(),
            interval: config.checkpoint_interval,
            retain: 3,
            fingerprint: JobFingerprint::default(),
        })?;
        let ctx = Arc::new(
            JobContext::new(true, Arc::new(SystemClock))
                .with_checkpoints(store)
                .with_stop_flag(Arc::new(AtomicBool::new(false))),
        );
        let sink = ReadModelSink::new(&config.table);
        crate::sink::recover(&sink, &ctx, 0)?;
        let model = sink.model()?;
        let job_ctx = Arc::clone(&ctx);
        let sink: Arc<dyn Sink> = Arc::new(sink);
        let thread = std::thread::Builder::new()
            .name(format!("riffle-projection {}", config.table.display()))
            .spawn(move || {
                let job_sink = Arc::clone(&sink);
                let result = execute(ExecutionConfig::threads(config.workers.max(1)), job_ctx, move |env| {
                    let events = store_events(env, &splits);
                    build(events).write_to(
                        Arc::clone(&job_sink),
                        |u, out| u.write_key(out),
                        |_, u, out| u.write_value(out),
                    );
                });
                sink.finish()?;
                result
            })
            .map_err(|e| Error::Execution(format!("cannot start the projection's thread: {e}")))?;
        Ok(Projection {
            model,
            ctx,
            thread: Some(thread),
        })
    }

    /// The read-model table.
    pub fn model(&self) -> &ReadModel {
        &self.model
    }

    /// The job's context (metrics; [`JobContext::fail`] to simulate a crash in tests).
    pub fn context(&self) -> &Arc<JobContext> {
        &self.ctx
    }

    /// Stops the job cleanly (its last epoch is checkpointed and committed) and waits for it.
    pub fn stop(mut self) -> Result<MetricsSnapshot> {
        self.ctx.request_stop("the projection was stopped");
        self.wait()
    }

    /// Waits for the job to end by itself (a bounded source read to its end).
    pub fn join(mut self) -> Result<MetricsSnapshot> {
        self.wait()
    }

    fn wait(&mut self) -> Result<MetricsSnapshot> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::Execution("the projection's thread panicked".into()))?,
            None => Ok(self.ctx.snapshot()),
        }
    }
}

impl Drop for Projection {
    /// A projection dropped without [`Projection::stop`] is stopped.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.ctx.request_stop("the projection was dropped");
            let _ = self.wait();
        }
    }
}
