//! The sink shell: one operator that drives every sink connector through the protocol of
//! `riffle_connectors::sink` (write, pre-commit, commit, recover), and the commit operator
//! that completes checkpoints.
//!
//! **Shell** (on every worker, no exchange): formats each record as the sink's [`Layout`]
//! asks (a line, or a keyed message) and writes the records of each message to the worker's
//! [`SinkWriter`](riffle_connectors::SinkWriter) for the message's epoch, at least once per
//! activation (a line sink flushes each write: results show up when they are produced). When
//! the input frontier passes an epoch, the writer pre-commits it, and only then does the shell
//! let its capability go, so that the commit operator downstream learns that epoch `e` is
//! written everywhere only once it is.
//!
//! **Commit** (on worker 0): once every sink has pre-committed an epoch and every operator has
//! written its snapshot, the checkpoint store writes the manifest and the sink commits the
//! epoch (renames pending part files). Without checkpoints it commits everything when the input
//! ends. A sink with two-phase commit is exactly once; the others (stdout, plain files) are at
//! least once: after a crash the results of epochs after the last checkpoint are written again.

use std::sync::Arc;

use riffle_connectors::sink::Restored;
use riffle_connectors::{
    BlackholeSink, Checkpoints, CommittedFileSink, Layout, LineSink, OutputBatch, Sink, WriterContext,
};
use riffle_core::{Error, EventTime, Result};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::checkpoint::{CheckpointStore, SnapshotKind};
use crate::context::JobContext;
use crate::progress::{hold_frontier, message_time, open_epoch, EpochAligner};
use crate::time::Time;

type VecBuilder<T> = CapacityContainerBuilder<Vec<T>>;

/// Formatted bytes of one epoch written to the sink beyond this size, within an activation.
const WRITE_ABOVE: usize = 60_000;

/// Makes `sink`'s destination agree with the checkpoint the job resumes from (or with a fresh
/// start): call it before the job starts, on every process (`process` is its index).
pub fn recover(sink: &dyn Sink, ctx: &JobContext, process: usize) -> Result<()> {
    let store = ctx.checkpoints();
    let restored = store.and_then(|s| s.restored_epoch());
    let parts = match (store, restored) {
        (Some(store), Some(_)) => store.restored_parts(sink.state_name()),
        _ => Arc::new(Vec::new()),
    };
    sink.recover(
        restored.map(|epoch| Restored {
            epoch,
            attempt: store.and_then(|s| s.restored_attempt()).unwrap_or(0),
            parts: &parts[..],
        }),
        process == 0,
    )
}

/// What a sink writer gets of the job's checkpoints.
struct JobCheckpoints {
    store: Arc<CheckpointStore>,
    ctx: Arc<JobContext>,
    name: String,
}

impl Checkpoints for JobCheckpoints {
    fn store(&self, epoch: u64, worker: usize, bytes: Vec<u8>) -> Result<()> {
        self.store
            .write(epoch, &self.name, worker, vec![(0, bytes)], SnapshotKind::Full)
    }
    fn completed_epoch(&self, wanted: u64) -> Option<u64> {
        self.store.completed_epoch(wanted)
    }
    fn job_failed(&self) -> bool {
        self.ctx.is_cancelled()
    }
    fn fail(&self, error: Error) {
        self.ctx.fail(error)
    }
}

/// Writes `stream` into `sink`: each record as `value` formats it (a line with its newline, or
/// a message's value), keyed by what `key` writes for sinks of keyed messages. `results`: the
/// records are the job's results (counted in `records_out`), not a side output.
pub(crate) fn write_to_sink<'s, D: crate::stream::Data>(
    stream: Stream<'s, Time, Vec<(EventTime, D)>>,
    ctx: Arc<JobContext>,
    sink: Arc<dyn Sink>,
    mut key: impl FnMut(&D, &mut Vec<u8>) + 'static,
    mut value: impl FnMut(EventTime, &D, &mut Vec<u8>) + 'static,
    results: bool,
) {
    let worker = stream.scope().index();
    let peers = stream.scope().peers();
    let store = ctx.checkpoints().cloned();
    // Results of a resumed run belong to its epochs, even those produced before the sources
    // have moved the frontier there (epochs before the restored checkpoint are committed).
    let first_epoch = store.as_ref().map_or(0, |s| s.start_epoch());
    let attempt = store.as_ref().map_or(0, |s| s.attempt());
    let checkpoints = store.map(|store| {
        Arc::new(JobCheckpoints {
            store,
            ctx: Arc::clone(&ctx),
            name: sink.state_name().to_string(),
        }) as Arc<dyn Checkpoints>
    });
    let mut writer = match sink.writer(WriterContext {
        worker,
        peers,
        attempt,
        checkpoints,
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            ctx.fail(e);
            None
        }
    };
    let layout: Layout = sink.layout();
    let name = sink.name();
    let op_ctx = Arc::clone(&ctx);
    let done = stream.unary_frontier::<VecBuilder<()>, _, _, _>(Pipeline, "Sink", move |cap, _info| {
        let ctx = op_ctx;
        let mut held = vec![cap];
        // Which epochs are closed: the writer pre-commits each as the frontier passes it.
        let mut epochs: EpochAligner<()> = EpochAligner::new(first_epoch);
        let mut batch = OutputBatch::new(layout);
        let mut batch_epoch = first_epoch;
        let mut ended = false;
        move |(input, frontier), output| {
            let Some(w) = writer.as_mut() else {
                input.for_each(|_, data| data.clear());
                held.clear();
                return;
            };
            // A reader that went away (stdout into `head`): what follows is dropped.
            let closed = w.is_closed();
            let mut write = |epoch: u64, batch: &mut OutputBatch| {
                if !batch.is_empty() {
                    if let Err(e) = w.write(epoch, batch) {
                        ctx.fail(e);
                        batch.clear();
                    }
                }
            };
            input.for_each(|cap, data| {
                // One token per message: the commit operator learns the epochs.
                output.session(&cap).give(());
                let epoch = message_time(&cap).epoch.max(first_epoch);
                if epochs.is_ahead(epoch) {
                    // Remembered so that the end closes it.
                    epochs.hold(epoch, None);
                }
                if closed {
                    data.clear();
                    return;
                }
                if results {
                    ctx.metrics()
                        .records_out
                        .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                if layout == Layout::Nothing {
                    // The sink drops them: no formatting, nothing written.
                    data.clear();
                    return;
                }
                if epoch != batch_epoch {
                    write(batch_epoch, &mut batch);
                    batch_epoch = epoch;
                }
                for (ts, d) in data.iter() {
                    batch.push_with(|out| key(d, out), |out| value(*ts, d, out));
                    if batch.bytes() > WRITE_ABOVE {
                        write(epoch, &mut batch);
                    }
                }
                data.clear();
            });
            write(batch_epoch, &mut batch);
            if w.is_closed() && !ctx.stop_requested() {
                ctx.request_stop(&format!("the reader of {name} closed it"));
            }
            // Pre-commit every epoch the frontier has passed (at the end, every one).
            let open = open_epoch(frontier.frontier());
            epochs.advance(open, |epoch, _| {
                if let Err(e) = w.pre_commit(epoch) {
                    ctx.fail(e);
                }
            });
            if open.is_none() && !ended {
                ended = true;
                if let Err(e) = w.pre_commit(epochs.epoch()) {
                    ctx.fail(e);
                }
            }
            hold_frontier(&mut held, frontier.frontier());
        }
    });
    commit_operator(done, ctx, sink);
}

/// Completes checkpoints: on worker 0, once the frontier of `done` (the completion stream of a
/// sink, gathered from every worker) passes an epoch, every operator has written its snapshot
/// of it and every sink has pre-committed it; the store then writes the manifest and the sink
/// commits the epoch ([`Sink::commit`]).
fn commit_operator(done: Stream<'_, Time, Vec<()>>, ctx: Arc<JobContext>, sink: Arc<dyn Sink>) {
    let worker = done.scope().index();
    let Some(store) = ctx.checkpoints().cloned() else {
        // Without checkpoints a sink commits everything at the end of the job.
        done.unary_frontier::<VecBuilder<()>, _, _, _>(Exchange::new(|_: &()| 0), "Commit", move |_cap, _info| {
            let mut committed = false;
            move |(input, frontier), _output| {
                input.for_each(|_cap, data| data.clear());
                if worker == 0 && frontier.frontier().is_empty() && !committed {
                    committed = true;
                    if let Err(e) = sink.commit(u64::MAX, 0) {
                        ctx.fail(e);
                    }
                }
            }
        });
        return;
    };
    let sink_id = (worker == 0).then(|| store.register_sink());
    done.unary_frontier::<VecBuilder<()>, _, _, _>(
        Exchange::new(|_: &()| 0),
        "CheckpointCommit",
        move |_cap, _info| {
            let mut last_open = store.start_epoch();
            move |(input, frontier), _output| {
                input.for_each(|cap, data| {
                    last_open = last_open.max(message_time(&cap).epoch);
                    data.clear();
                });
                let Some(id) = sink_id else { return };
                // Once the job has failed no checkpoint completes: an operator's state may be
                // wrong (a restore that failed), and the sources stop without recording where.
                if ctx.is_cancelled() {
                    return;
                }
                let complete = match open_epoch(frontier.frontier()) {
                    Some(e) => {
                        last_open = last_open.max(e);
                        e.checked_sub(1)
                    }
                    // The end of the job (or a stop, whose sources recorded where they were):
                    // the last open epoch is complete too.
                    None => Some(last_open),
                };
                let Some(epoch) = complete else { return };
                if epoch < store.start_epoch() {
                    return;
                }
                match complete_checkpoint(&store, id, epoch, &*sink) {
                    Ok(()) => {}
                    Err(e) => ctx.fail(e),
                }
            }
        },
    );
}

fn complete_checkpoint(store: &CheckpointStore, id: usize, epoch: u64, sink: &dyn Sink) -> Result<()> {
    if let Some(done) = store.sink_complete(id, epoch)? {
        // The manifest is written: the sink's commit obeys the same fence (a zombie that was
        // stopped between the two must not rename what it pre-committed).
        store.check_fence(&format!("commit the output of checkpoint {done} to {}", sink.name()))?;
        sink.commit(done, store.attempt())?;
    }
    Ok(())
}

impl<'s, D: crate::stream::Data> crate::stream::DataStream<'s, D> {
    /// Calls `f` with every record and its event time: a sink.
    pub fn for_each(self, mut f: impl FnMut(EventTime, D) + 'static) {
        let ctx = Arc::clone(&self.ctx);
        self.stream
            .unary::<VecBuilder<()>, _, _, _>(Pipeline, "ForEach", |_, _| {
                move |input, _output| {
                    input.for_each(|_cap, data| {
                        ctx.metrics()
                            .records_out
                            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        for (ts, d) in data.drain(..) {
                            f(ts, d);
                        }
                    });
                }
            });
    }

    /// Counts and drops every record, as Flink's blackhole sink: for measuring a job without
    /// the cost of writing its results. Takes part in checkpoints as any sink.
    pub fn discard(self) {
        self.write_to(Arc::new(BlackholeSink), |_, _| {}, |_, _, _| {})
    }

    /// Writes every record into `sink` (any connector, e.g. from
    /// [`SinkUri`](riffle_connectors::SinkUri)): `value` formats it (a line with its newline,
    /// or a message's value), `key` writes its key for sinks of keyed messages (nothing: no
    /// key). Exactly once with checkpoints when the sink has two-phase commit, at least once
    /// otherwise (see [`crate::sink`]). Before the job starts, call [`crate::sink::recover`];
    /// once it has ended, [`Sink::finish`].
    pub fn write_to(
        self,
        sink: Arc<dyn Sink>,
        key: impl FnMut(&D, &mut Vec<u8>) + 'static,
        value: impl FnMut(EventTime, &D, &mut Vec<u8>) + 'static,
    ) {
        crate::sink::write_to_sink(self.stream, self.ctx, sink, key, value, true)
    }

    /// Formats every record with `format` (which appends one line, newline included) and
    /// writes the lines to `sink` batch by batch, each flushed when written. The records are
    /// the job's results (counted in `records_out`). A sink whose reader went away (stdout
    /// into `head`) stops the job cleanly.
    pub fn write_lines(self, sink: LineSink, format: impl FnMut(EventTime, &D, &mut Vec<u8>) + 'static) {
        self.write_to(Arc::new(sink), |_, _| {}, format)
    }

    /// As [`write_lines`](Self::write_lines) for a side output, such as the records later than
    /// the allowed lateness: its records are not counted as results.
    pub fn write_side_lines(self, sink: LineSink, format: impl FnMut(EventTime, &D, &mut Vec<u8>) + 'static) {
        crate::sink::write_to_sink(self.stream, self.ctx, Arc::new(sink), |_, _| {}, format, false)
    }

    /// Writes every record with `format` into files under `dir`, exactly once with
    /// checkpoints (see [`CommittedFileSink`]): results of an epoch become visible, as
    /// `dir/part-<epoch>-w<worker>`, when the epoch's checkpoint completes. Call
    /// [`crate::sink::recover`] with the same sink before the job starts.
    pub fn write_committed(self, dir: std::path::PathBuf, format: impl FnMut(EventTime, &D, &mut Vec<u8>) + 'static) {
        self.write_to(Arc::new(CommittedFileSink::new(dir)), |_, _| {}, format)
    }

    /// Prints every record with `Debug` to stdout, one per line.
    pub fn print(self)
    where
        D: std::fmt::Debug,
    {
        self.write_lines(LineSink::stdout(), |_, d, out| {
            use std::io::Write;
            let _ = writeln!(out, "{d:?}");
        })
    }

    /// Collects every record of this worker into `into`, for tests.
    pub fn collect_into(self, into: Arc<std::sync::Mutex<Vec<(EventTime, D)>>>) {
        self.for_each(move |ts, d| into.lock().unwrap_or_else(|p| p.into_inner()).push((ts, d)));
    }
}
