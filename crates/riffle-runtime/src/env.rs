//! Where a job starts: the environment it builds its dataflow in on each worker
//! ([`StreamEnv`]), and its sources (text from any connector's splits, [`TextSource`]; records
//! from split readers; in-memory collections for tests).

use std::rc::Rc;
use std::sync::Arc;

use riffle_connectors::{SocketSplit, SplitSpec};
use riffle_core::EventTime;
use timely::dataflow::Scope;

use crate::context::JobContext;
use crate::source::{
    leading_millis, open_line_splits, record_decoder, split_source, text_decoder, LineDecoder, SplitReader, TimeMode,
    TimestampParser, DEFAULT_CHUNK_LINES,
};
use crate::stream::{Data, DataStream};
use crate::time::Time;

/// The environment a job builds its dataflow in, on one worker.
pub struct StreamEnv<'s> {
    pub(crate) scope: Scope<'s, Time>,
    pub(crate) ctx: Arc<JobContext>,
}

impl<'s> StreamEnv<'s> {
    pub(crate) fn new(scope: Scope<'s, Time>, ctx: Arc<JobContext>) -> Self {
        StreamEnv { scope, ctx }
    }

    /// This worker's index among all workers of all processes.
    pub fn worker_index(&self) -> usize {
        self.scope.index()
    }

    /// The number of workers of all processes.
    pub fn workers(&self) -> usize {
        self.scope.peers()
    }

    /// The job context (counters, errors, clock).
    pub fn context(&self) -> &Arc<JobContext> {
        &self.ctx
    }

    /// Lines read from a TCP server, as Flink's `socketTextStream`: processing time, and the
    /// job's input ends when the server closes the connection.
    pub fn socket_text(&mut self, address: &str) -> DataStream<'s, String> {
        self.text(TextSource::new(vec![SplitSpec::new(SocketSplit::new(address))]))
    }

    /// Lines of a text source.
    pub fn text(&mut self, source: TextSource) -> DataStream<'s, String> {
        let parser = match source.mode {
            TimeMode::Processing => None,
            TimeMode::Event(_) => Some(source.parser.clone().unwrap_or_else(|| Rc::new(leading_millis))),
        };
        self.decoded_lines("TextSource", source, text_decoder(parser))
    }

    /// Records parsed from the lines of a text source by `parser` (which also gives each its
    /// event time; the source's time mode decides whether that time or the clock is used).
    /// Lines the parser rejects are counted and reported with their position.
    pub fn text_records<R: Data>(
        &mut self,
        source: TextSource,
        parser: crate::source::RecordParser<R>,
    ) -> DataStream<'s, R> {
        let decode = record_decoder(parser, matches!(source.mode, TimeMode::Event(_)));
        self.decoded_lines("RecordSource", source, decode)
    }

    /// The records `decode` makes of the lines of `source`'s splits that this worker reads,
    /// spread over every worker when there are fewer splits than workers.
    fn decoded_lines<R: Data>(&mut self, name: &str, source: TextSource, decode: LineDecoder<R>) -> DataStream<'s, R> {
        let readers = open_line_splits(&source.splits, self.worker_index(), self.workers(), &decode, &self.ctx);
        let stream = self.splits(name, source.mode, readers, source.chunk_lines);
        if source.splits.len() < self.workers() {
            stream.rebalance()
        } else {
            stream
        }
    }

    /// Records from splits this worker reads (split readers built by the caller for this
    /// worker only), stamped per chunk of `chunk` records.
    pub fn splits<D: Data>(
        &mut self,
        name: &str,
        mode: TimeMode,
        readers: Vec<(u32, Box<dyn SplitReader<D>>)>,
        chunk: usize,
    ) -> DataStream<'s, D> {
        let stream = split_source(self.scope, name, Arc::clone(&self.ctx), mode, readers, chunk);
        DataStream {
            stream,
            ctx: Arc::clone(&self.ctx),
        }
    }

    /// In-memory records, one list per split (split `i` is read by worker `i % workers`),
    /// `chunk` records per watermark step, in event time with `strategy`. An in-memory
    /// generator for tests and examples.
    pub fn from_splits<D: Data>(
        &mut self,
        splits: Vec<Vec<(EventTime, D)>>,
        chunk: usize,
        strategy: riffle_core::WatermarkStrategy,
    ) -> DataStream<'s, D> {
        let (me, n) = (self.worker_index(), self.workers());
        let readers: Vec<(u32, Box<dyn SplitReader<D>>)> = splits
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == me)
            .map(|(i, records)| {
                (
                    i as u32,
                    Box::new(crate::source::CollectionSplit::new(records, chunk)) as Box<dyn SplitReader<D>>,
                )
            })
            .collect();
        self.splits("Collection", TimeMode::Event(strategy), readers, chunk)
    }
}

/// A text source: splits, their time mode and how lines carry timestamps.
#[derive(Clone)]
pub struct TextSource {
    splits: Vec<SplitSpec>,
    mode: TimeMode,
    parser: Option<TimestampParser>,
    chunk_lines: usize,
}

impl TextSource {
    /// Lines of `splits` in processing time.
    pub fn new(splits: Vec<SplitSpec>) -> Self {
        TextSource {
            splits,
            mode: TimeMode::Processing,
            parser: None,
            chunk_lines: DEFAULT_CHUNK_LINES,
        }
    }

    /// Event time: every line starts with `<unix-millis><comma, tab or space>` (or what
    /// [`TextSource::timestamp_parser`] says), watermarks follow `strategy`.
    pub fn event_time(mut self, strategy: riffle_core::WatermarkStrategy) -> Self {
        self.mode = TimeMode::Event(strategy);
        self
    }

    /// How a line yields its event time and its text (default: [`leading_millis`]).
    pub fn timestamp_parser(mut self, parser: TimestampParser) -> Self {
        self.parser = Some(parser);
        self
    }

    /// Lines per chunk: watermarks advance between chunks (default 1024).
    pub fn chunk_lines(mut self, lines: usize) -> Self {
        self.chunk_lines = lines.max(1);
        self
    }
}
