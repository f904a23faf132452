//! Sources: splits read in order, stamped with `(epoch, watermark)` per chunk.
//!
//! A source is a list of splits. Split `i` is read by worker `i % workers`. Each split has its
//! own [`WatermarkGenerator`]; the chunk it hands out is stamped with the split's watermark
//! *before* the chunk, and the worker's capability is the least watermark over its active
//! splits. A split idle for longer than the strategy's idle timeout stops holding its
//! worker's watermark back until it produces data again; a worker all of whose splits are idle
//! follows the workers of its process that have active ones. When all of a worker's splits have
//! ended the worker drops its capability; when every worker has, the input has ended and
//! every open window fires. A job that fails or is stopped drops its capabilities too, but
//! its operators know the input did not end (`JobContext::is_halted`) and fire nothing more.
//!
//! In processing-time mode records are stamped with the wall clock when they are read, and
//! the watermark follows the clock, ticking while no data arrives so that windows fire on
//! time.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use riffle_connectors::{LineChunk, LineReader, Poll, SplitPosition, SplitSpec};
use riffle_core::time::{check_event_time, WATERMARK_MIN};
use riffle_core::{EventTime, Result, WatermarkGenerator, WatermarkStrategy};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, Stream};

use crate::context::JobContext;
use crate::time::Time;

/// How records get their event time.
#[derive(Clone, Copy, Debug)]
pub enum TimeMode {
    /// Stamped by the source with the wall clock; watermark = clock.
    Processing,
    /// Taken from the record; watermark from the strategy.
    Event(WatermarkStrategy),
}

/// What one poll of a split returned.
pub enum SplitPoll<D> {
    /// Records, each with its event time (ignored in processing-time mode).
    Records(Vec<(EventTime, D)>),
    /// Nothing now.
    Pending,
    /// The split has ended.
    Finished,
}

impl<D> SplitPoll<D> {
    /// `Records(batch)`, or `Finished` for an empty batch: what a split that never waits (a
    /// collection, a generator) returns.
    pub fn records_or_finished(batch: Vec<(EventTime, D)>) -> Self {
        if batch.is_empty() {
            SplitPoll::Finished
        } else {
            SplitPoll::Records(batch)
        }
    }
}

/// A split the source operator polls for records.
pub trait SplitReader<D> {
    /// Up to about `max` next records.
    fn poll(&mut self, max: usize) -> Result<SplitPoll<D>>;
    /// Where the next unread record is, for checkpoints; `None` if the split cannot be read
    /// again from a position (a socket, stdin).
    fn position(&self) -> Option<SplitPosition> {
        None
    }
    /// Continues from a checkpointed position.
    fn seek(&mut self, _position: SplitPosition) -> Result<()> {
        Err(riffle_core::Error::Config(
            "this split cannot be read again from a checkpoint".into(),
        ))
    }
    /// Asks the split to call `wake` (from any thread) when it may have records again after
    /// [`SplitPoll::Pending`]; returns whether it will (see
    /// [`riffle_connectors::LineReader::wake_on_data`]). The source then polls it as soon as
    /// it is woken rather than on its idle timer. Called after [`SplitReader::seek`].
    fn wake_on_data(&mut self, _wake: &Arc<dyn Fn() + Send + Sync>) -> bool {
        false
    }
}

/// What a checkpoint stores of a split.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct SplitCheckpoint {
    position: Option<SplitPosition>,
    finished: bool,
    max_seen: Option<EventTime>,
}

/// Records of one in-memory split, handed out `chunk` at a time (an in-memory generator for
/// tests: the watermark advances between chunks exactly as for a file).
pub struct CollectionSplit<D> {
    records: Vec<(EventTime, D)>,
    next: usize,
    chunk: usize,
}

impl<D> CollectionSplit<D> {
    /// A split over `records`, handed out `chunk` records at a time.
    pub fn new(records: Vec<(EventTime, D)>, chunk: usize) -> Self {
        CollectionSplit {
            records,
            next: 0,
            chunk: chunk.max(1),
        }
    }
}

impl<D: Clone> SplitReader<D> for CollectionSplit<D> {
    fn poll(&mut self, _max: usize) -> Result<SplitPoll<D>> {
        let end = (self.next + self.chunk).min(self.records.len());
        let batch = self.records[self.next..end].to_vec();
        self.next = end;
        Ok(SplitPoll::records_or_finished(batch))
    }

    fn position(&self) -> Option<SplitPosition> {
        Some(SplitPosition::at_record(self.next as u64))
    }

    fn seek(&mut self, position: SplitPosition) -> Result<()> {
        self.next = (position.offset as usize).min(self.records.len());
        Ok(())
    }
}

/// How a text line yields its event time and its text.
pub type TimestampParser = Rc<dyn Fn(&str) -> std::result::Result<(EventTime, &str), String>>;

/// Parses `<unix-millis><comma, tab or space><text>`, the CLI's event-time line format.
///
/// ```
/// use riffle_runtime::source::leading_millis;
/// assert_eq!(leading_millis("1700000000000,hello world"), Ok((1_700_000_000_000, "hello world")));
/// assert_eq!(leading_millis("-5\tx"), Ok((-5, "x")));
/// assert!(leading_millis("hello").is_err());
/// ```
pub fn leading_millis(line: &str) -> std::result::Result<(EventTime, &str), String> {
    let bytes = line.as_bytes();
    let digits_from = usize::from(bytes.first() == Some(&b'-'));
    let end = bytes[digits_from..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(bytes.len(), |p| p + digits_from);
    if end == digits_from {
        return Err("expected <unix-millis><comma, tab or space><text>".into());
    }
    let ts: i64 = line[..end]
        .parse()
        .map_err(|_| format!("timestamp '{}' out of range", &line[..end]))?;
    match bytes.get(end) {
        None => Ok((ts, "")),
        Some(b',' | b'\t' | b' ') => Ok((ts, &line[end + 1..])),
        Some(_) => Err("expected a comma, tab or space after the timestamp".into()),
    }
}

/// Decodes a chunk's lines: skips blank ones, reports invalid UTF-8 with its position, and
/// hands the others to `f` with their line number.
fn decode_lines(chunk: LineChunk, origin: &str, ctx: &JobContext, mut f: impl FnMut(u64, String)) {
    for (i, bytes) in chunk.lines.into_iter().enumerate() {
        let line_no = chunk.first_line + i as u64;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match String::from_utf8(bytes) {
            Ok(line) => f(line_no, line),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                ctx.malformed(origin, line_no, &format!("invalid UTF-8 at byte {at}"), e.as_bytes());
            }
        }
    }
}

/// Turns a line into a record with its event time, or says why the line is malformed (and
/// gives it back, for the report). Owning the line lets the text decoder keep its buffer.
pub type LineDecoder<R> = Rc<dyn Fn(String) -> std::result::Result<(EventTime, R), (String, String)>>;

/// How a text line becomes a record with its event time (e.g. a JSON object with a time
/// field). An error message makes the line malformed: counted and reported with its position.
pub type RecordParser<R> = Rc<dyn Fn(&str) -> std::result::Result<(EventTime, R), String>>;

/// The decoder of text lines: the whole line in processing time (`parser` is `None`), the text
/// after the timestamp `parser` finds in event time. An event time outside
/// `riffle_core::time::check_event_time`'s range makes the line malformed.
pub(crate) fn text_decoder(parser: Option<TimestampParser>) -> LineDecoder<String> {
    Rc::new(move |mut line: String| match &parser {
        None => Ok((0, line)),
        Some(parse) => match parse(&line) {
            Ok((ts, text)) => {
                if let Err(message) = check_event_time(ts) {
                    return Err((message, line));
                }
                let skip = line.len() - text.len();
                line.drain(..skip);
                Ok((ts, line))
            }
            Err(message) => Err((message, line)),
        },
    })
}

/// The decoder of records that `parse` reads from a line. In event time (`event_time`), a
/// record whose event time is outside `riffle_core::time::check_event_time`'s range is
/// malformed: its windows could not be represented.
pub(crate) fn record_decoder<R: 'static>(parse: RecordParser<R>, event_time: bool) -> LineDecoder<R> {
    Rc::new(move |line: String| match parse(&line) {
        Ok((ts, record)) => match check_event_time(ts) {
            Err(message) if event_time => Err((message, line)),
            _ => Ok((ts, record)),
        },
        Err(message) => Err((message, line)),
    })
}

/// A split of lines of a [`LineReader`], validated as UTF-8 and decoded into records.
/// Malformed lines are reported to the job context with their position and skipped; blank
/// lines are skipped (they hold no text).
pub struct LineSplit<R> {
    reader: Box<dyn LineReader>,
    spec: SplitSpec,
    decode: LineDecoder<R>,
    ctx: Arc<JobContext>,
    /// The source's waker, for a reader opened again by `seek`.
    wake: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl<R> SplitReader<R> for LineSplit<R> {
    fn poll(&mut self, max: usize) -> Result<SplitPoll<R>> {
        let chunk = match self.reader.poll(max)? {
            Poll::Chunk(c) => c,
            Poll::Pending => return Ok(SplitPoll::Pending),
            Poll::Finished => return Ok(SplitPoll::Finished),
        };
        let mut out = Vec::with_capacity(chunk.lines.len());
        let (origin, ctx, decode) = (self.reader.origin(), &self.ctx, &self.decode);
        decode_lines(chunk, origin, ctx, |line_no, line| match decode(line) {
            Ok(record) => out.push(record),
            Err((message, line)) => ctx.malformed(origin, line_no, &message, line.as_bytes()),
        });
        Ok(SplitPoll::Records(out))
    }

    fn position(&self) -> Option<SplitPosition> {
        self.reader.position()
    }

    fn seek(&mut self, position: SplitPosition) -> Result<()> {
        self.reader = self.spec.open_at(Some(position))?;
        if let Some(wake) = &self.wake {
            self.reader.wake_on_data(wake);
        }
        Ok(())
    }

    fn wake_on_data(&mut self, wake: &Arc<dyn Fn() + Send + Sync>) -> bool {
        self.wake = Some(Arc::clone(wake));
        self.reader.wake_on_data(wake)
    }
}

/// Opens this worker's splits of `splits` (split `i` belongs to worker `i % workers`), each
/// decoded with `decode`; a split that cannot be opened fails the job.
pub(crate) fn open_line_splits<R: 'static>(
    splits: &[SplitSpec],
    worker: usize,
    workers: usize,
    decode: &LineDecoder<R>,
    ctx: &Arc<JobContext>,
) -> Vec<(u32, Box<dyn SplitReader<R>>)> {
    let mut readers: Vec<(u32, Box<dyn SplitReader<R>>)> = Vec::new();
    for (i, spec) in splits.iter().enumerate() {
        if i % workers != worker {
            continue;
        }
        match spec.open() {
            Ok(reader) => readers.push((
                i as u32,
                Box::new(LineSplit {
                    reader,
                    spec: spec.clone(),
                    decode: Rc::clone(decode),
                    ctx: Arc::clone(ctx),
                    wake: None,
                }) as Box<dyn SplitReader<R>>,
            )),
            Err(e) => ctx.fail(e),
        }
    }
    readers
}

impl<D> SplitState<D> {
    /// What a checkpoint records of this split now.
    fn checkpoint(&self, finished: bool) -> SplitCheckpoint {
        SplitCheckpoint {
            position: self.reader.position(),
            finished,
            max_seen: self.watermark.max_seen(),
        }
    }
}

struct SplitState<D> {
    index: u32,
    reader: Box<dyn SplitReader<D>>,
    watermark: WatermarkGenerator,
    last_data: i64,
    idle: bool,
    /// Records this split handed out in this run (for the log line when it ends).
    records: u64,
}

/// Writes where every split of this worker is at the end of `epoch` (those still read and
/// those `finished`), the source's part of the epoch's checkpoint.
fn write_cut<D>(
    store: &crate::checkpoint::CheckpointStore,
    epoch: u64,
    op_name: &str,
    worker: usize,
    splits: &[SplitState<D>],
    finished: &[(u32, SplitCheckpoint)],
) -> Result<()> {
    let parts = splits
        .iter()
        .map(|s| (s.index, s.checkpoint(false)))
        .chain(finished.iter().copied())
        .map(|(i, c)| Ok((i, crate::checkpoint::encode(&c)?)))
        .collect::<Result<Vec<(u32, Vec<u8>)>>>()?;
    store.write(epoch, op_name, worker, parts, crate::checkpoint::SnapshotKind::Full)
}

/// Records per chunk: the watermark advances between chunks.
pub const DEFAULT_CHUNK_LINES: usize = 1024;

/// Builds the source operator for the splits this worker owns. `open` turns a split index
/// into a reader (called once per owned split, when the dataflow is built).
pub(crate) fn split_source<'s, D: timely::ExchangeData>(
    scope: Scope<'s, Time>,
    name: &str,
    ctx: Arc<JobContext>,
    mode: TimeMode,
    readers: Vec<(u32, Box<dyn SplitReader<D>>)>,
    chunk: usize,
) -> Stream<'s, Time, Vec<(EventTime, D)>> {
    let strategy = match mode {
        TimeMode::Event(s) => s,
        TimeMode::Processing => WatermarkStrategy::monotonous(),
    };
    let op_name = crate::checkpoint::stateful_name(name);
    let shared_watermark = ctx.source_watermark(&op_name);
    // The furthest watermark of this worker's active splits, which `announce_watermarks`
    // sends to every worker of every process (with an idle timeout only).
    let announced = Rc::new(std::cell::Cell::new(WATERMARK_MIN));
    let active_watermark = Rc::clone(&announced);
    let board = Arc::clone(&shared_watermark);
    let stream = source::<_, CapacityContainerBuilder<Vec<(EventTime, D)>>, _, _>(
        scope,
        name,
        move |capability, info| {
            let activator = scope.activator_for(Rc::clone(&info.address));
            let now = ctx.clock().now_millis();
            let store = ctx.checkpoints().cloned();
            let worker = scope.index();
            let restored: HashMap<u32, SplitCheckpoint> = match &store {
                Some(store) => store
                    .restored_parts(&op_name)
                    .iter()
                    .filter_map(|(i, bytes)| crate::checkpoint::decode(bytes, &op_name).ok().map(|c| (*i, c)))
                    .collect(),
                None => HashMap::new(),
            };
            // Splits already finished at the checkpoint, with what it recorded of them.
            let mut finished: Vec<(u32, SplitCheckpoint)> = Vec::new();
            let mut splits: Vec<SplitState<D>> = Vec::new();
            for (index, mut reader) in readers {
                let mut watermark = strategy.generator();
                if let Some(c) = restored.get(&index) {
                    if c.finished {
                        finished.push((index, *c));
                        continue;
                    }
                    watermark.restore(c.max_seen);
                    if let Some(p) = c.position {
                        if let Err(e) = reader.seek(p) {
                            ctx.fail(e);
                        }
                    }
                }
                if store.is_some() && reader.position().is_none() {
                    ctx.fail(riffle_core::Error::Config(format!(
                    "{name} split {index} reads standard input or a socket, which cannot be read again from a checkpoint: a job with checkpoints needs a source that can (a file, file://PATH; a Kafka topic; generated data)"
                )));
                }
                splits.push(SplitState {
                    index,
                    reader,
                    watermark,
                    last_data: now,
                    idle: false,
                    records: 0,
                });
            }
            // Splits that can say when they have data again (a store open in this process) wake
            // the operator from the thread that makes the data available; the others are polled
            // again after IDLE_REPOLL. The waker lives as long as the operator (the splits hold it
            // weakly or by clone).
            let sync_activator = scope.worker().sync_activator_for(info.address.to_vec());
            let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                // Fails only once the worker is gone, and then nobody is left to wake.
                let _ = sync_activator.activate();
            });
            for split in splits.iter_mut() {
                split.reader.wake_on_data(&wake);
            }
            let mut epoch = store.as_ref().map_or(0, |s| s.start_epoch());
            // Checkpoints are cut every `interval` of wall time (processing time of the job, not
            // the injected clock: a ManualClock would stop them).
            #[allow(clippy::disallowed_methods)]
            let mut last_cut = std::time::Instant::now();
            let mut cap = if splits.is_empty() && finished.is_empty() {
                None
            } else {
                let mut c = capability;
                c.downgrade(&Time::new(epoch, WATERMARK_MIN));
                Some(c)
            };
            move |output| {
                let Some(c) = cap.as_mut() else { return };
                if ctx.is_cancelled() {
                    cap = None;
                    return;
                }
                if ctx.stop_requested() {
                    // A clean stop: the open epoch ends here, with every split's position (the
                    // final checkpoint), and its records go on through the dataflow as usual.
                    if let Some(store) = &store {
                        if let Err(e) = write_cut(store, epoch, &op_name, worker, &splits, &finished) {
                            ctx.fail(e);
                        }
                    }
                    tracing::info!(
                        "{op_name} on worker {worker}: stopped, {} split(s) not read to the end",
                        splits.len()
                    );
                    cap = None;
                    return;
                }
                // A scheduling budget (20 ms per activation): wall time.
                #[allow(clippy::disallowed_methods)]
                let started = Instant::now();
                let mut more_now = false;
                let mut got_records = false;
                let mut i = 0;
                while i < splits.len() {
                    let mut finished_now = false;
                    // Poll this split a bounded number of times, so that downstream operators run
                    // between chunks and the watermark keeps moving.
                    for _ in 0..16 {
                        let split = &mut splits[i];
                        match split.reader.poll(chunk) {
                            // A record of this chunk failed the job (strict mode): nothing of
                            // the chunk leaves, and the watermark stays where it was.
                            Ok(SplitPoll::Records(_)) if ctx.is_cancelled() => {
                                cap = None;
                                return;
                            }
                            Ok(SplitPoll::Records(mut records)) => {
                                got_records = true;
                                let now = ctx.clock().now_millis();
                                split.last_data = now;
                                split.idle = false;
                                let wm = match mode {
                                    TimeMode::Processing => {
                                        for r in records.iter_mut() {
                                            r.0 = now;
                                        }
                                        now
                                    }
                                    TimeMode::Event(_) => split.watermark.current(),
                                };
                                for r in &records {
                                    split.watermark.observe(r.0);
                                }
                                split.records += records.len() as u64;
                                ctx.metrics()
                                    .records_in
                                    .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
                                let time = Time::new(c.time().epoch, wm.max(c.time().watermark));
                                let at = c.delayed(&time);
                                output.session(&at).give_container(&mut records);
                            }
                            Ok(SplitPoll::Pending) => break,
                            Ok(SplitPoll::Finished) => {
                                finished_now = true;
                                break;
                            }
                            Err(e) => {
                                ctx.fail(e);
                                finished_now = true;
                                break;
                            }
                        }
                        if started.elapsed() > Duration::from_millis(20) {
                            more_now = true;
                            break;
                        }
                    }
                    if finished_now {
                        let split = splits.swap_remove(i);
                        tracing::info!(
                            "{op_name}: split {} ended on worker {worker} after {} records in this run",
                            split.index,
                            split.records
                        );
                        finished.push((split.index, split.checkpoint(true)));
                    } else {
                        i += 1;
                    }
                }
                if ctx.is_cancelled() {
                    cap = None;
                    return;
                }
                // Cut the epoch here, between chunks: record every split's position for the
                // epoch whose records were all emitted, then move on to the next one. The last
                // cut, once every split has ended, records where they ended.
                if let Some(store) = &store {
                    if splits.is_empty() || last_cut.elapsed() >= store.config().interval {
                        if let Err(e) = write_cut(store, epoch, &op_name, worker, &splits, &finished) {
                            ctx.fail(e);
                        }
                        epoch += 1;
                        #[allow(clippy::disallowed_methods)] // see `last_cut` above
                        {
                            last_cut = std::time::Instant::now();
                        }
                        if !splits.is_empty() {
                            let t = Time::new(epoch, c.time().watermark);
                            c.downgrade(&t);
                        }
                    }
                }
                if splits.is_empty() {
                    cap = None;
                    return;
                }
                let now = ctx.clock().now_millis();
                let target = match mode {
                    TimeMode::Processing => now,
                    TimeMode::Event(s) => {
                        if let Some(timeout) = s.idle_timeout {
                            for split in splits.iter_mut() {
                                if now - split.last_data >= timeout {
                                    split.idle = true;
                                }
                            }
                        }
                        // Idle splits do not hold the watermark back. When every split of this
                        // worker is idle, the worker follows the furthest of its own splits and
                        // of the workers of this process that have active ones: an idle split's
                        // watermark stays valid until it has data again, and a worker whose splits
                        // never had any would otherwise hold the job at its start forever.
                        let active = splits.iter().filter(|s| !s.idle).map(|s| s.watermark.current()).min();
                        match active {
                            Some(w) => {
                                shared_watermark.fetch_max(w, std::sync::atomic::Ordering::Relaxed);
                                active_watermark.set(active_watermark.get().max(w));
                                w
                            }
                            None => splits
                                .iter()
                                .map(|s| s.watermark.current())
                                .max()
                                .unwrap_or(WATERMARK_MIN)
                                .max(shared_watermark.load(std::sync::atomic::Ordering::Relaxed)),
                        }
                    }
                };
                if target > c.time().watermark {
                    let t = Time::new(c.time().epoch, target);
                    c.downgrade(&t);
                }
                let _keep_waker = &wake;
                if more_now || got_records {
                    activator.activate();
                } else {
                    // Every split is waiting for data: look again soon. IDLE_REPOLL bounds the
                    // added latency of socket data and the granularity of processing-time ticks;
                    // a split with a waker is polled as soon as it has data. (Waking an idle source
                    // at each checkpoint's due time instead was tried: at 5 ms intervals it doubled
                    // the checkpoints written, each several fsyncs, and made latency worse.)
                    activator.activate_after(IDLE_REPOLL);
                }
            }
        },
    );
    match strategy.idle_timeout {
        Some(_) => announce_watermarks(scope, stream, announced, board),
        None => stream,
    }
}

/// How often a worker sends its active watermark to the others (with an idle timeout).
const ANNOUNCE_EVERY: Duration = Duration::from_millis(50);

/// Makes idleness global: every worker sends the watermark of its active splits
/// (`announced`) to every worker of every process, which fold it into their process's shared
/// source watermark (`board`), the one a worker all of whose splits are idle follows. Without
/// it, a process whose splits were all idle (say, it reads only an empty Kafka partition)
/// would hold back the windows of every process, as the workers of one process share
/// `board` in memory but not across processes. A small operator of its own beside the source
/// rather than a second output of it: it sends at most every [`ANNOUNCE_EVERY`], only what
/// grew, and ends once the source's stream has ended everywhere.
fn announce_watermarks<'s, D: timely::ExchangeData>(
    scope: Scope<'s, Time>,
    stream: Stream<'s, Time, Vec<(EventTime, D)>>,
    announced: Rc<std::cell::Cell<i64>>,
    board: Arc<std::sync::atomic::AtomicI64>,
) -> Stream<'s, Time, Vec<(EventTime, D)>> {
    use timely::dataflow::operators::vec::Broadcast;
    use timely::dataflow::operators::{Inspect, Probe};
    let (probe, stream) = stream.probe();
    source::<_, CapacityContainerBuilder<Vec<i64>>, _, _>(scope, "AnnounceWatermark", move |capability, info| {
        let activator = scope.activator_for(Rc::clone(&info.address));
        let mut cap = Some(capability);
        let mut sent = WATERMARK_MIN;
        move |output| {
            let Some(c) = cap.as_ref() else { return };
            if probe.done() {
                cap = None;
                return;
            }
            let w = announced.get();
            if w > sent {
                output.session(c).give(w);
                sent = w;
            }
            activator.activate_after(ANNOUNCE_EVERY);
        }
    })
    .broadcast()
    .inspect(move |w| {
        board.fetch_max(*w, std::sync::atomic::Ordering::Relaxed);
    });
    stream
}

/// How long a source whose splits all wait for data sleeps before polling them again.
const IDLE_REPOLL: Duration = Duration::from_millis(10);
