//! Nexmark events as a riffle source: generated on the fly, from memory, or from a JSON-lines
//! file; always in event time with nexmark-flink's watermark (dateTime − 4 s).
//!
//! Generated events come in splits (split `i` of `k`: events `i, i + k, …`, in time order), one
//! watermark per split, so every split count and worker count sees the same events and, since
//! no event is late, the same results.

use riffle_connectors::{SplitPosition, SplitSpec};
use riffle_core::{EventTime, WatermarkStrategy};
use riffle_runtime::source::{RecordParser, SplitPoll, SplitReader};
use riffle_runtime::{DataStream, StreamEnv, TextSource};

use crate::generator::{GeneratorConfig, WATERMARK_DELAY_MS};
use crate::model::Event;

/// Events per chunk: the watermark advances between chunks. A chunk of events (up to 136 bytes
/// each) stays below glibc's mmap threshold (128 KiB): larger ones were mapped and unmapped
/// chunk by chunk, and the page faults cost a quarter of q2's time.
pub const CHUNK: usize = 512;

/// nexmark-flink's watermark: the highest dateTime seen − 4 s.
pub fn watermarks() -> WatermarkStrategy {
    WatermarkStrategy::bounded_out_of_orderness(WATERMARK_DELAY_MS)
}

/// One split of the generator, resumable from a checkpointed position.
pub struct GeneratorSplit {
    config: GeneratorConfig,
    index: u64,
    splits: u64,
    events: u64,
    produced: u64,
    events_iter: Box<dyn Iterator<Item = Event>>,
}

impl GeneratorSplit {
    /// Split `index` of `splits` of the first `events` events.
    pub fn new(config: GeneratorConfig, index: u64, splits: u64, events: u64) -> Self {
        GeneratorSplit {
            config,
            index,
            splits,
            events,
            produced: 0,
            events_iter: Box::new(config.split(index, splits, events)),
        }
    }
}

impl SplitReader<Event> for GeneratorSplit {
    fn poll(&mut self, max: usize) -> riffle_core::Result<SplitPoll<Event>> {
        let batch: Vec<(EventTime, Event)> = self
            .events_iter
            .by_ref()
            .take(max.max(1))
            .map(|e| (e.date_time(), e))
            .collect();
        self.produced += batch.len() as u64;
        Ok(SplitPoll::records_or_finished(batch))
    }

    fn position(&self) -> Option<SplitPosition> {
        Some(SplitPosition::at_record(self.produced))
    }

    fn seek(&mut self, position: SplitPosition) -> riffle_core::Result<()> {
        // The split's n-th event is event index + n·splits: start the generator there.
        let first = self
            .index
            .saturating_add(position.offset.saturating_mul(self.splits.max(1)));
        self.events_iter = Box::new(self.config.split(first, self.splits, self.events));
        self.produced = position.offset;
        Ok(())
    }
}

/// Events held in memory, moved out a chunk at a time (for measuring a query without the
/// generator's cost).
pub struct MemorySplit {
    events: std::vec::IntoIter<(EventTime, Event)>,
}

impl SplitReader<Event> for MemorySplit {
    fn poll(&mut self, max: usize) -> riffle_core::Result<SplitPoll<Event>> {
        let batch: Vec<(EventTime, Event)> = self.events.by_ref().take(max.max(1)).collect();
        Ok(SplitPoll::records_or_finished(batch))
    }
}

type Readers = Vec<(u32, Box<dyn SplitReader<Event>>)>;

/// The first `events` generated events in `splits` splits (split `i` read by worker
/// `i mod workers`).
pub fn generated<'s>(
    env: &mut StreamEnv<'s>,
    config: GeneratorConfig,
    events: u64,
    splits: u64,
) -> DataStream<'s, Event> {
    let (me, workers) = (env.worker_index() as u64, env.workers() as u64);
    let readers: Readers = (0..splits.max(1))
        .filter(|i| i % workers == me)
        .map(|i| {
            let split = GeneratorSplit::new(config, i, splits.max(1), events);
            (i as u32, Box::new(split) as Box<dyn SplitReader<Event>>)
        })
        .collect();
    env.splits(
        "NexmarkGenerator",
        riffle_runtime::source::TimeMode::Event(watermarks()),
        readers,
        CHUNK,
    )
}

/// Events already in memory, one list per split (split `i` read by worker `i mod workers`;
/// the lists of other workers' splits are dropped).
pub fn in_memory<'s>(env: &mut StreamEnv<'s>, splits: Vec<Vec<Event>>) -> DataStream<'s, Event> {
    let (me, workers) = (env.worker_index(), env.workers());
    let readers: Readers = splits
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % workers == me)
        .map(|(i, events)| {
            let events: Vec<(EventTime, Event)> = events.into_iter().map(|e| (e.date_time(), e)).collect();
            let split = MemorySplit {
                events: events.into_iter(),
            };
            (i as u32, Box::new(split) as Box<dyn SplitReader<Event>>)
        })
        .collect();
    env.splits(
        "NexmarkMemory",
        riffle_runtime::source::TimeMode::Event(watermarks()),
        readers,
        CHUNK,
    )
}

/// Events from JSON-lines files as `riffle nexmark generate` writes them; malformed lines are
/// reported with their file and line and counted, the job goes on.
pub fn json_lines<'s>(env: &mut StreamEnv<'s>, splits: Vec<SplitSpec>) -> DataStream<'s, Event> {
    let parser: RecordParser<Event> = std::rc::Rc::new(|line: &str| {
        let event = Event::from_json(line)?;
        Ok((event.date_time(), event))
    });
    env.text_records(TextSource::new(splits).event_time(watermarks()), parser)
}
