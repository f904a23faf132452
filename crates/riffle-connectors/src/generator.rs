//! A deterministic generator of timestamped word lines, for tests and benchmarks.
//!
//! Line `i` is `<ts> <word> <word> …` with `ts = start + i * step − jitter`, where the jitter
//! is uniform in `[0, disorder)`: records are out of order by less than `disorder`. Words are
//! `w<n>` with `n` skewed towards small numbers (about Zipfian), so a few words are hot and
//! most are rare, as in text; or, with `cyclic=true`, every word of the vocabulary in turn, so
//! that a job holds state for the whole vocabulary after `vocabulary / words` lines (the
//! recovery benchmark's way of building a state of a chosen size).

use std::io::Write;
use std::sync::Arc;

use riffle_core::{Error, Result};

use crate::source::{LineChunk, LineReader, Poll, Source, Split, SplitPosition, SplitSpec};

/// Parameters of generated word lines.
#[derive(Clone, Debug, PartialEq)]
pub struct WordGenerator {
    /// Number of lines.
    pub lines: u64,
    /// Words per line.
    pub words_per_line: u32,
    /// Number of distinct words.
    pub vocabulary: u64,
    /// Random seed.
    pub seed: u64,
    /// Event time of the first line (ms).
    pub start: i64,
    /// Event time between lines (ms).
    pub step: i64,
    /// Maximum disorder (ms).
    pub disorder: i64,
    /// Whether lines start with a timestamp.
    pub timestamps: bool,
    /// Lines per second handed out (Flink's `rows-per-second`); unlimited when `None`.
    pub rate: Option<u64>,
    /// Every word of the vocabulary in turn (`w0`, `w1`, …) instead of skewed random ones.
    pub cyclic: bool,
}

impl Default for WordGenerator {
    fn default() -> Self {
        WordGenerator {
            lines: 1000,
            words_per_line: 10,
            vocabulary: 10_000,
            seed: 1,
            start: 1_700_000_000_000,
            step: 1,
            disorder: 0,
            timestamps: true,
            rate: None,
            cyclic: false,
        }
    }
}

/// SplitMix64: small, fast and good enough to pick words.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl WordGenerator {
    /// Parses `words?lines=N&words=W&vocabulary=V&seed=S&start=MS&step=MS&disorder=MS&timestamps=BOOL&cyclic=BOOL`
    /// (every parameter optional).
    ///
    /// ```
    /// use riffle_connectors::generator::WordGenerator;
    /// let g = WordGenerator::parse("words?lines=5&words=3").unwrap();
    /// assert_eq!((g.lines, g.words_per_line), (5, 3));
    /// assert!(WordGenerator::parse("words?bogus=1").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<Self> {
        let (kind, query) = spec.split_once('?').unwrap_or((spec, ""));
        if kind.trim_end_matches('/') != "words" {
            return Err(Error::Config(format!(
                "generator '{spec}': only generate://words is known"
            )));
        }
        let mut g = WordGenerator::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = || Error::Config(format!("generator parameter '{pair}': invalid value"));
            match k {
                "lines" => g.lines = v.parse().map_err(|_| bad())?,
                "words" => g.words_per_line = v.parse().map_err(|_| bad())?,
                "vocabulary" => g.vocabulary = v.parse::<u64>().map_err(|_| bad())?.max(1),
                "seed" => g.seed = v.parse().map_err(|_| bad())?,
                "start" => g.start = v.parse().map_err(|_| bad())?,
                "step" => g.step = v.parse().map_err(|_| bad())?,
                "disorder" => g.disorder = v.parse::<i64>().map_err(|_| bad())?.max(0),
                "timestamps" => g.timestamps = v.parse().map_err(|_| bad())?,
                "rate" => g.rate = Some(v.parse::<u64>().map_err(|_| bad())?.max(1)),
                "cyclic" => g.cyclic = v.parse().map_err(|_| bad())?,
                _ => return Err(Error::Config(format!("generator parameter '{k}' is unknown"))),
            }
        }
        Ok(g)
    }

    /// Appends line `i` (without newline) to `out`.
    pub fn line(&self, i: u64, out: &mut Vec<u8>) {
        let mut rng = self.seed ^ i.wrapping_mul(0xA24B_AED4_963E_E407);
        if self.timestamps {
            let jitter = if self.disorder > 0 {
                (splitmix(&mut rng) % self.disorder as u64) as i64
            } else {
                0
            };
            let ts = self.start + i as i64 * self.step - jitter;
            let _ = write!(out, "{ts}");
        }
        for w in 0..self.words_per_line {
            if self.timestamps || w > 0 {
                out.push(b' ');
            }
            let n = if self.cyclic {
                (i.wrapping_mul(u64::from(self.words_per_line)) + u64::from(w)) % self.vocabulary
            } else {
                // u^3 skews towards 0: word n has probability ~ n^(-2/3) — a heavy head, long tail.
                let u = (splitmix(&mut rng) >> 11) as f64 / (1u64 << 53) as f64;
                ((u * u * u) * self.vocabulary as f64) as u64
            };
            let _ = write!(out, "w{n}");
        }
    }

    /// Writes all lines to `out`.
    pub fn write_all(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(1 << 16);
        for i in 0..self.lines {
            self.line(i, &mut buf);
            buf.push(b'\n');
            if buf.len() > 60_000 {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        out.write_all(&buf)
    }
}

/// `generate://words?…`: one split, replayable from a line index.
impl Source for WordGenerator {
    fn name(&self) -> String {
        "generator".into()
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        Ok(vec![SplitSpec::new(self.clone())])
    }
}

impl Split for WordGenerator {
    fn name(&self) -> String {
        "generator".into()
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn is_replayable(&self) -> bool {
        true
    }

    fn open_at(&self, position: Option<SplitPosition>) -> Result<Box<dyn LineReader>> {
        let mut reader = GeneratedLines::new("generator".into(), self.clone());
        if let Some(p) = position {
            reader.seek(p.offset);
        }
        Ok(Box::new(reader))
    }
}

/// A reader over generated lines.
struct GeneratedLines {
    origin: Arc<str>,
    gen: WordGenerator,
    next: u64,
    /// When the first line was handed out, and from which line (for `rate`).
    started: Option<(std::time::Instant, u64)>,
}

impl GeneratedLines {
    fn new(origin: Arc<str>, gen: WordGenerator) -> Self {
        GeneratedLines {
            origin,
            gen,
            next: 0,
            started: None,
        }
    }

    fn seek(&mut self, line_index: u64) {
        self.next = line_index;
    }
}

impl LineReader for GeneratedLines {
    fn origin(&self) -> &Arc<str> {
        &self.origin
    }

    fn position(&self) -> Option<SplitPosition> {
        Some(SplitPosition::at_record(self.next))
    }

    fn poll(&mut self, max_lines: usize) -> Result<Poll> {
        if self.next >= self.gen.lines {
            return Ok(Poll::Finished);
        }
        let mut end = (self.next + max_lines as u64).min(self.gen.lines);
        if let Some(rate) = self.gen.rate {
            // `rate` is lines per second of wall time, as Flink's `rows-per-second`.
            #[allow(clippy::disallowed_methods)]
            let (since, from) = *self.started.get_or_insert((std::time::Instant::now(), self.next));
            let due = from + (since.elapsed().as_secs_f64() * rate as f64) as u64 + 1;
            end = end.min(due);
            if end <= self.next {
                return Ok(Poll::Pending);
            }
        }
        let mut chunk = LineChunk {
            first_line: self.next + 1,
            lines: Vec::with_capacity((end - self.next) as usize),
        };
        for i in self.next..end {
            let mut line = Vec::with_capacity(16 + 6 * self.gen.words_per_line as usize);
            self.gen.line(i, &mut line);
            chunk.lines.push(line);
        }
        self.next = end;
        Ok(Poll::Chunk(chunk))
    }
}
