//! The in-memory indexes: where each event is in the segment files, the positions of each
//! stream (by version) and each category, and the event ids seen (for idempotent retries).
//!
//! They are not persisted: opening a store rebuilds them with the recovery scan, which reads
//! every segment once (the scan runs at the speed of reading the files; see the benchmark).
//! Holding them in memory costs about 70 bytes per event plus the stream names.

use crate::log::{self, Frame};
use crate::{category_of, RecordedEvent, StoreError, STREAM_DELETED};
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use uuid::Uuid;

/// A segment file as readers see it.
pub(crate) struct Segment {
    pub first_position: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// The bytes of whole appends in it (what readers may read).
    pub len: u64,
}

/// One stream: the global position of each of its versions, and whether it is deleted.
#[derive(Default)]
pub(crate) struct StreamEntry {
    pub positions: Vec<u64>,
    pub deleted: bool,
}

impl StreamEntry {
    pub fn current(&self) -> Option<u64> {
        (self.positions.len() as u64).checked_sub(1)
    }
}

/// Where one event is: its segment (index into `segments`) and byte offset.
#[derive(Clone, Copy)]
pub(crate) struct Location {
    pub segment: u32,
    pub offset: u32,
}

/// The indexes of the durable events.
#[derive(Default)]
pub(crate) struct Index {
    pub segments: Vec<Segment>,
    /// By global position.
    pub locations: Vec<Location>,
    pub streams: HashMap<String, StreamEntry>,
    pub categories: HashMap<String, Vec<u64>>,
    /// Event id → global position.
    pub ids: HashMap<Uuid, u64>,
    pub last_timestamp: i64,
}

/// The byte range of one read: a file and where in it.
pub(crate) struct Extent {
    pub file: Arc<File>,
    pub path: PathBuf,
    pub start: u64,
    pub end: u64,
}

impl Index {
    /// The number of durable events: the next position.
    pub fn head(&self) -> u64 {
        self.locations.len() as u64
    }

    /// Adds a durable event that lives at `location`.
    pub fn add(&mut self, event: &RecordedEvent, location: Location) {
        debug_assert_eq!(event.position, self.head());
        self.locations.push(location);
        let stream = match self.streams.get_mut(event.stream.as_str()) {
            Some(s) => s,
            None => self.streams.entry(event.stream.clone()).or_default(),
        };
        stream.positions.push(event.position);
        if event.event_type == STREAM_DELETED {
            stream.deleted = true;
        }
        let category = category_of(&event.stream);
        match self.categories.get_mut(category) {
            Some(c) => c.push(event.position),
            None => {
                self.categories.insert(category.to_string(), vec![event.position]);
            }
        }
        self.ids.insert(event.id, event.position);
        self.last_timestamp = self.last_timestamp.max(event.timestamp);
    }

    /// The extents that hold the events at `positions` (ascending), merging neighbours in one
    /// segment into one read.
    pub fn extents(&self, positions: impl Iterator<Item = u64>) -> Vec<Extent> {
        let mut out: Vec<Extent> = Vec::new();
        let mut last: Option<(u64, u32)> = None;
        for p in positions {
            let Some(loc) = self.locations.get(p as usize) else {
                break;
            };
            let end = self.end_of(p, *loc);
            match (out.last_mut(), last) {
                (Some(ext), Some((lp, seg))) if lp + 1 == p && seg == loc.segment => ext.end = end,
                _ => {
                    let s = &self.segments[loc.segment as usize];
                    out.push(Extent {
                        file: Arc::clone(&s.file),
                        path: s.path.clone(),
                        start: loc.offset as u64,
                        end,
                    });
                }
            }
            last = Some((p, loc.segment));
        }
        out
    }

    fn end_of(&self, position: u64, loc: Location) -> u64 {
        match self.locations.get(position as usize + 1) {
            Some(next) if next.segment == loc.segment => next.offset as u64,
            _ => self.segments[loc.segment as usize].len,
        }
    }
}

/// Reads the segment files into an index, from where it stopped last time: the whole log at
/// open, the new bytes when a read-only store looks again.
pub(crate) struct Scanner {
    /// The segment being scanned (index into `Index::segments`) and the offset after its last
    /// whole append.
    at: Option<(usize, u64)>,
}

/// What a scan found at the end of the log.
pub(crate) struct ScanEnd {
    /// The file and offset after which the bytes are not whole appends (a torn tail, or an
    /// append still being written by another process).
    pub path: Option<PathBuf>,
    pub valid_len: u64,
    pub file_len: u64,
    /// Damage found before the tail, if any.
    pub damage: Option<(PathBuf, u64, String)>,
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner { at: None }
    }

    /// Scans what is new in the files of `dir` into `index`.
    pub fn scan(&mut self, dir: &std::path::Path, index: &mut Index) -> Result<ScanEnd, StoreError> {
        let files = log::list_segments(dir)?;
        let mut end = ScanEnd {
            path: None,
            valid_len: 0,
            file_len: 0,
            damage: None,
        };
        let start_segment = self.at.map_or(0, |(s, _)| s);
        for (i, (first, path)) in files.iter().enumerate().skip(start_segment) {
            if i >= index.segments.len() {
                if *first != index.head() {
                    end.damage = Some((
                        path.clone(),
                        0,
                        format!(
                            "segment starts at position {first}, the log before it ends at {}",
                            index.head()
                        ),
                    ));
                    break;
                }
                let file = File::open(path).map_err(|e| StoreError::io("cannot open event store segment", path, e))?;
                index.segments.push(Segment {
                    first_position: *first,
                    path: path.clone(),
                    file: Arc::new(file),
                    len: 0,
                });
            }
            let from = match self.at {
                Some((s, off)) if s == i => off,
                _ => 0,
            };
            let bytes = log::read_from(path, from)?;
            let (valid, damage) = scan_bytes(&bytes, from, i as u32, index);
            index.segments[i].len = valid;
            self.at = Some((i, valid));
            end.path = Some(path.clone());
            end.valid_len = valid;
            end.file_len = from + bytes.len() as u64;
            let is_last = i + 1 == files.len();
            if let Some((offset, reason)) = damage {
                end.damage = Some((path.clone(), offset, reason));
                break;
            }
            if !is_last && valid != from + bytes.len() as u64 {
                // A segment is closed only after its last append was synced: a later one
                // existing means this one is whole, so a short tail here is damage.
                end.damage = Some((path.clone(), valid, "the segment ends inside an append".to_string()));
                break;
            }
        }
        Ok(end)
    }
}

/// Adds the whole appends in `bytes` (the segment's bytes from offset `base`) to `index`;
/// returns the offset after the last one and, when a frame is damaged (not merely cut short),
/// where and why.
fn scan_bytes(bytes: &[u8], base: u64, segment: u32, index: &mut Index) -> (u64, Option<(u64, String)>) {
    let mut at = 0usize;
    let mut valid = at;
    let mut pending: Vec<(RecordedEvent, Location)> = Vec::new();
    while at < bytes.len() {
        match log::decode_frame(&bytes[at..]) {
            Frame::Event(event, last, len) => {
                let expected = index.head() + pending.len() as u64;
                if event.position != expected {
                    return (
                        base + valid as u64,
                        Some((
                            base + at as u64,
                            format!("event at position {} where {expected} was expected", event.position),
                        )),
                    );
                }
                pending.push((
                    event,
                    Location {
                        segment,
                        offset: (base + at as u64) as u32,
                    },
                ));
                at += len;
                if last {
                    for (e, loc) in pending.drain(..) {
                        index.add(&e, loc);
                    }
                    valid = at;
                }
            }
            Frame::Incomplete => break,
            Frame::Damaged(reason) => {
                // Damage at the very tail is a torn write; the caller decides with what follows.
                return (base + valid as u64, Some((base + at as u64, reason)));
            }
        }
    }
    (base + valid as u64, None)
}
