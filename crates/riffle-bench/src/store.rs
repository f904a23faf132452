//! `riffle bench store`: the embedded event store's durable appends/s and `$all` reads/s
//! (issue 15, part 6), each beside a hand-written loop doing the same I/O in the same run.
//!
//! * Appends: `W` writer threads each append one 200-byte event per append to its own stream
//!   with an exact expected version, and wait for it to be durable; the store groups
//!   concurrent appends into one write and one fdatasync. The hand loop writes the same bytes
//!   to a file with one fdatasync per batch of the size the store achieved (its events per
//!   group commit): the best a hand-written group commit could do at that batch size.
//! * Reads: `read(&Filter::All, from, 10_000)` in a loop over every event, beside a loop that
//!   reads a file of the same events' JSON lines in 1 MiB chunks and counts the lines.
//!
//! * Append → read-model visible: an open-loop appender (appends sent on a schedule, whatever
//!   the store and the projection do) at each `--latency-rates` into a store with a projection
//!   in the same process (a count of events per stream into a `table://`, on two workers,
//!   checkpointed every `--latency-intervals` ms). Per append, the time from the append call to
//!   the moment the table's position reaches the append's position; beside it the store's own
//!   append latency (call to acknowledgement) and the hand loop's: one 200-byte write and one
//!   fdatasync, the floor the store's acknowledgement cannot go under.
//!
//! Targets (issue 15; reported, not asserted): 100 K durable appends/s with 64 writers, 2 M
//! events/s reading `$all`, p99 append → visible ≤ 20 ms at 10 K appends/s.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use riffle_connectors::readmodel::TableUpdate;
use riffle_core::{Error, Result};
use riffle_eventstore::{EventStore, ExpectedVersion, Filter, NewEvent, StoreError, WriterStats};
use riffle_runtime::projection::{row_with_position, Projection, ProjectionConfig, StoreEvent};
use riffle_runtime::DataStream;

/// Arguments of `riffle bench store`.
#[derive(clap::Args, Debug)]
pub struct StoreBenchArgs {
    /// Numbers of concurrent writer threads to measure (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    writers: Vec<usize>,
    /// Numbers of concurrent asynchronous writers to measure (comma separated):
    /// each issues its next append from the acknowledgement of its previous one
    /// (`append_with`), as the HTTP server's tasks do, so no thread waits per writer.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    async_writers: Vec<usize>,
    /// Appends each writer makes (one event each).
    #[arg(long, default_value_t = 200)]
    appends_per_writer: u64,
    /// Bytes of each event's data (JSON).
    #[arg(long, default_value_t = 200)]
    event_bytes: usize,
    /// Events in the store read through `$all` (0: no read benchmark).
    #[arg(long, default_value_t = 20_000)]
    read_events: u64,
    /// Append rates (appends/s) of the append → read-model-visible measurement (comma
    /// separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    latency_rates: Vec<u64>,
    /// Checkpoint intervals (ms) of the projection in the latency measurement (comma
    /// separated).
    #[arg(long, value_delimiter = ',', default_value = "5,10,50")]
    latency_intervals: Vec<u64>,
    /// Seconds of appends per rate and interval (0: no latency measurement).
    #[arg(long, default_value_t = 1.0)]
    latency_secs: f64,
    /// Directory for the stores and files (a temporary one by default; it should be on the
    /// disk being measured, not a tmpfs).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Events per `$all` read call, as a projection reads.
const READ_BATCH: usize = 10_000;

fn store_error(what: &str) -> impl Fn(StoreError) -> Error + '_ {
    move |e| Error::Execution(format!("bench store: {what}: {e}"))
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

/// Runs the benchmark.
pub fn run(args: StoreBenchArgs) -> Result<()> {
    if args.writers.contains(&0) || args.appends_per_writer == 0 {
        return Err(Error::Config(
            "--writers and --appends-per-writer must be at least 1".into(),
        ));
    }
    if args.event_bytes < 8 {
        return Err(Error::Config("--event-bytes must be at least 8 (a JSON object)".into()));
    }
    let base = match &args.dir {
        Some(d) => d.join(format!("riffle-bench-store-{}", std::process::id())),
        None => std::env::temp_dir().join(format!("riffle-bench-store-{}", std::process::id())),
    };
    let data = event_data(args.event_bytes);
    println!(
        "riffle bench store: durable appends of {}-byte events, one event per append, exact expected versions; {}",
        args.event_bytes,
        base.display()
    );
    println!(
        "{:>8} {:>9} {:>9} {:>12} {:>9} {:>11} {:>16} {:>7}",
        "writers", "appends", "secs", "appends/s", "commits", "ev/commit", "loop events/s", "ratio"
    );
    let runs = args
        .writers
        .iter()
        .map(|w| (*w, false))
        .chain(args.async_writers.iter().map(|w| (*w, true)));
    for (writers, asynchronous) in runs {
        let dir = base.join(format!("append-{writers}"));
        let _ = std::fs::remove_dir_all(&dir);
        let f = if asynchronous {
            measure_async_appends(&dir, writers, args.appends_per_writer, &data)?
        } else {
            measure_appends(&dir, writers, args.appends_per_writer, &data)?
        };
        let label = if asynchronous {
            format!("{writers}-async")
        } else {
            writers.to_string()
        };
        let batch = (f.appends as f64 / f.commits.max(1) as f64).round().max(1.0) as u64;
        let loop_rate = hand_group_commit(&dir.join("hand-loop.log"), f.appends, batch, &data)?;
        let rate = f.appends as f64 / f.secs;
        println!(
            "{:>8} {:>9} {:>9.3} {:>12.0} {:>9} {:>11.1} {:>16.0} {:>6.2}x",
            label,
            f.appends,
            f.secs,
            rate,
            f.commits,
            f.appends as f64 / f.commits.max(1) as f64,
            loop_rate,
            rate / loop_rate
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    if args.read_events > 0 {
        let dir = base.join("read");
        let _ = std::fs::remove_dir_all(&dir);
        let r = measure_reads(&dir, args.read_events, &data)?;
        println!();
        println!(
            "{:>10} {:>9} {:>12} {:>16} {:>16} {:>7}",
            "$all read", "events", "MB (JSON)", "store events/s", "loop events/s", "ratio"
        );
        let store_rate = r.events as f64 / r.store_secs;
        let loop_rate = r.events as f64 / r.loop_secs;
        println!(
            "{:>10} {:>9} {:>12.1} {:>16.0} {:>16.0} {:>6.2}x",
            "",
            r.events,
            r.json_bytes as f64 / 1e6,
            store_rate,
            loop_rate,
            store_rate / loop_rate
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    if args.latency_secs > 0.0 && !args.latency_rates.is_empty() && !args.latency_intervals.is_empty() {
        println!();
        println!(
            "append -> read-model visible: open-loop appends of {}-byte events over 64 streams, a projection (count per stream into table://, 2 workers) in the same process",
            args.event_bytes
        );
        println!(
            "{:>8} {:>8} {:>8} {:>26} {:>20} {:>20}",
            "rate/s", "ckpt ms", "appends", "visible p50/p99/max ms", "append p50/p99 ms", "loop sync p50/p99 ms"
        );
        for &rate in &args.latency_rates {
            let sync = hand_sync_latency(&base.join("hand-sync.log"), 200, &data)?;
            for &interval in &args.latency_intervals {
                let dir = base.join(format!("latency-{rate}-{interval}"));
                let _ = std::fs::remove_dir_all(&dir);
                let l = measure_visible_latency(&dir, rate, Duration::from_millis(interval), args.latency_secs, &data)?;
                println!(
                    "{:>8} {:>8} {:>8} {:>26} {:>20} {:>20}",
                    rate,
                    interval,
                    l.appends,
                    format!(
                        "{:.1} / {:.1} / {:.1}",
                        ms(l.visible[0]),
                        ms(l.visible[1]),
                        ms(l.visible[2])
                    ),
                    format!("{:.2} / {:.2}", ms(l.append[0]), ms(l.append[1])),
                    format!("{:.2} / {:.2}", ms(sync[0]), ms(sync[1])),
                );
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50, p99 and the maximum of `samples` (sorted here); zeros when there are none.
fn quantiles(samples: &mut [Duration]) -> [Duration; 3] {
    samples.sort_unstable();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    [at(0.5), at(0.99), at(1.0)]
}

/// Figures of one append → visible run.
#[derive(Debug, Clone, Copy)]
struct LatencyFigures {
    appends: u64,
    /// Append call → the table's position reaches the append's: p50, p99, max.
    visible: [Duration; 3],
    /// Append call → acknowledgement (durable): p50, p99, max.
    append: [Duration; 3],
}

/// The projection of the latency run: each stream's count of events, a row per stream with a
/// marker of the position it reflects.
fn count_per_stream(events: DataStream<'_, StoreEvent>) -> DataStream<'_, TableUpdate> {
    events
        .map(|e: StoreEvent| (e.stream, e.position))
        .key_by(|(stream, _): &(String, u64)| stream.clone())
        .rolling(riffle_core::aggregate::FnAggregate::new(
            || (0u64, 0u64),
            |acc: &mut (u64, u64), (_, position): (String, u64)| *acc = (acc.0 + 1, acc.1.max(position)),
            |acc: &mut (u64, u64), o: (u64, u64)| *acc = (acc.0 + o.0, acc.1.max(o.1)),
            |acc: &(u64, u64)| *acc,
        ))
        .flat_map(|(stream, (count, position)): (String, (u64, u64))| {
            row_with_position(stream, count.to_string(), position)
        })
}

/// Appends at `rate` per second for `secs` (open loop: each append is sent at its scheduled
/// time, whether or not the earlier ones are done) into a store with a projection checkpointed
/// every `interval`; times each append from its call to its acknowledgement and to the moment
/// the table's position reaches it.
fn measure_visible_latency(dir: &Path, rate: u64, interval: Duration, secs: f64, data: &str) -> Result<LatencyFigures> {
    let store_dir = dir.join("store");
    let store = EventStore::open(&store_dir).map_err(store_error("cannot open the store"))?;
    let _registered = riffle_connectors::eventstore::register_open_store(&store);
    let mut config = ProjectionConfig::new(
        format!("store://{}?follow=true", store_dir.display()),
        dir.join("counts.redb"),
        dir.join("checkpoints"),
    );
    config.checkpoint_interval = interval;
    config.workers = 2;
    let projection = Projection::spawn(config, count_per_stream)?;
    let model = projection.model().clone();
    let total = ((rate.max(1) as f64) * secs).ceil().max(1.0) as u64;
    // The table's position as it moves (position reached, when), seen by a thread woken by
    // each commit of the table.
    let observer = {
        let model = model.clone();
        std::thread::spawn(move || -> Vec<(u64, Instant)> {
            let mut seen = Vec::new();
            let mut next = 0;
            while next < total {
                if !model.wait_for_position(next, Duration::from_secs(30)) {
                    break;
                }
                let now = Instant::now();
                let reached = model.position().unwrap_or(0);
                seen.push((reached, now));
                next = reached + 1;
            }
            seen
        })
    };
    // (position, call, acknowledgement) of each append, filled by the store's callbacks.
    let acks: Arc<Mutex<Vec<(u64, Instant, Instant)>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate.max(1));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let event = NewEvent {
            id: None,
            event_type: "Benchmarked".to_string(),
            data: data.to_string(),
            metadata: None,
        };
        let (acks, failures) = (Arc::clone(&acks), Arc::clone(&failures));
        let called = Instant::now();
        store.append_with(
            &format!("latency-{}", i % 64),
            ExpectedVersion::Any,
            vec![event],
            move |r| {
                let now = Instant::now();
                match r {
                    Ok(r) => acks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((r.position, called, now)),
                    Err(e) => failures.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string()),
                }
            },
        );
    }
    let seen = observer
        .join()
        .map_err(|_| Error::Execution("bench store: the latency observer panicked".into()))?;
    projection.stop()?;
    if let Some(e) = failures.lock().unwrap_or_else(|p| p.into_inner()).first() {
        return Err(Error::Execution(format!("bench store: a latency append failed: {e}")));
    }
    let acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|p| p.into_inner()));
    if acks.len() as u64 != total || seen.last().is_none_or(|(p, _)| *p + 1 < total) {
        return Err(Error::Execution(format!(
            "bench store: {} of {total} latency appends acknowledged, the table reached position {:?}",
            acks.len(),
            seen.last().map(|(p, _)| *p)
        )));
    }
    let mut visible = Vec::with_capacity(acks.len());
    let mut append = Vec::with_capacity(acks.len());
    for &(position, called, acked) in &acks {
        append.push(acked.saturating_duration_since(called));
        // The first observation at or past the append's position.
        let i = seen.partition_point(|(p, _)| *p < position);
        if let Some((_, at)) = seen.get(i) {
            visible.push(at.saturating_duration_since(called));
        }
    }
    Ok(LatencyFigures {
        appends: total,
        visible: quantiles(&mut visible),
        append: quantiles(&mut append),
    })
}

/// The hand loop of the latency measurement: `n` times one write of `data` and a newline and
/// one fdatasync; p50, p99 and max of each.
fn hand_sync_latency(path: &Path, n: usize, data: &str) -> Result<[Duration; 3]> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error("cannot create", parent))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_error("cannot create", path))?;
    let mut line = data.as_bytes().to_vec();
    line.push(b'\n');
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        file.write_all(&line).map_err(io_error("cannot write", path))?;
        file.sync_data().map_err(io_error("cannot sync", path))?;
        samples.push(t.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(path);
    Ok(quantiles(&mut samples))
}

/// A JSON object of exactly `bytes` bytes: `{"p":"xxx…"}`.
fn event_data(bytes: usize) -> String {
    format!("{{\"p\":\"{}\"}}", "x".repeat(bytes.saturating_sub(8)))
}

/// Figures of one append run.
#[derive(Debug, Clone, Copy)]
struct AppendFigures {
    appends: u64,
    secs: f64,
    commits: u64,
}

/// `writers` threads each append `per_writer` single-event appends to their own stream with
/// the exact expected version, all at once; checks every version.
fn measure_appends(dir: &Path, writers: usize, per_writer: u64, data: &str) -> Result<AppendFigures> {
    let store = EventStore::open(dir).map_err(store_error("cannot open the store"))?;
    let before = store.writer_stats();
    let start = Arc::new(Barrier::new(writers + 1));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (store, start, data) = (store.clone(), Arc::clone(&start), data.to_string());
            std::thread::spawn(move || -> Result<()> {
                let stream = format!("bench-{w}");
                start.wait();
                for v in 0..per_writer {
                    let expected = match v {
                        0 => ExpectedVersion::NoStream,
                        v => ExpectedVersion::Exact(v - 1),
                    };
                    let event = NewEvent {
                        id: None,
                        event_type: "Benchmarked".to_string(),
                        data: data.clone(),
                        metadata: None,
                    };
                    let r = store
                        .append(&stream, expected, vec![event])
                        .map_err(store_error("append"))?;
                    if r.first_version != v {
                        return Err(Error::Execution(format!(
                            "bench store: {stream} appended at version {}, {v} expected",
                            r.first_version
                        )));
                    }
                }
                Ok(())
            })
        })
        .collect();
    start.wait();
    let t = Instant::now();
    for thread in threads {
        thread
            .join()
            .map_err(|_| Error::Execution("bench store: a writer thread panicked".into()))??;
    }
    append_figures(&store, &before, writers as u64 * per_writer, t.elapsed().as_secs_f64())
}

/// `writers` asynchronous writers, each appending `per_writer` single-event appends to its own
/// stream with the exact expected version: the next append of a writer is sent from the
/// acknowledgement of its previous one (on the store's writer thread), the way an async server
/// answers its clients, so the measurement is the store's, not the cost of waking a blocked
/// thread per append. Checks every version.
fn measure_async_appends(dir: &Path, writers: usize, per_writer: u64, data: &str) -> Result<AppendFigures> {
    let store = EventStore::open(dir).map_err(store_error("cannot open the store"))?;
    let before = store.writer_stats();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<()>>();
    let data: Arc<str> = Arc::from(data);
    let t = Instant::now();
    for w in 0..writers {
        append_chain(
            store.clone(),
            Arc::from(format!("bench-{w}").as_str()),
            0,
            per_writer,
            Arc::clone(&data),
            done_tx.clone(),
        );
    }
    drop(done_tx);
    for _ in 0..writers {
        done_rx
            .recv()
            .map_err(|_| Error::Execution("bench store: an async writer was dropped unanswered".into()))??;
    }
    append_figures(&store, &before, writers as u64 * per_writer, t.elapsed().as_secs_f64())
}

/// The figures of `appends` appends that took `secs`, once the store's head shows every one of
/// them; `before`: the writer's counters before the first.
fn append_figures(store: &EventStore, before: &WriterStats, appends: u64, secs: f64) -> Result<AppendFigures> {
    if store.head() != appends {
        return Err(Error::Execution(format!(
            "bench store: the head is {} after {appends} appends",
            store.head()
        )));
    }
    Ok(AppendFigures {
        appends,
        secs,
        commits: store.writer_stats().commits - before.commits,
    })
}

/// Appends version `v` of `stream`, and from its acknowledgement the next one, up to `n`;
/// reports the end (or the first failure) on `done`.
fn append_chain(
    store: EventStore,
    stream: Arc<str>,
    v: u64,
    n: u64,
    data: Arc<str>,
    done: std::sync::mpsc::Sender<Result<()>>,
) {
    let expected = match v {
        0 => ExpectedVersion::NoStream,
        v => ExpectedVersion::Exact(v - 1),
    };
    let event = NewEvent {
        id: None,
        event_type: "Benchmarked".to_string(),
        data: data.to_string(),
        metadata: None,
    };
    let next = store.clone();
    let name = Arc::clone(&stream);
    store.append_with(&name, expected, vec![event], move |r| match r {
        Ok(r) if r.first_version == v => {
            if v + 1 == n {
                let _ = done.send(Ok(()));
            } else {
                append_chain(next, stream, v + 1, n, data, done);
            }
        }
        Ok(r) => {
            let _ = done.send(Err(Error::Execution(format!(
                "bench store: {stream} appended at version {}, {v} expected",
                r.first_version
            ))));
        }
        Err(e) => {
            let _ = done.send(Err(Error::Execution(format!("bench store: append: {e}"))));
        }
    });
}

/// The hand-written group commit: `events` records of `data` (and a newline) appended to one
/// file, one fdatasync per `batch` records. Returns events/s.
fn hand_group_commit(path: &Path, events: u64, batch: u64, data: &str) -> Result<f64> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_error("cannot create", path))?;
    let mut buf = Vec::with_capacity((data.len() + 1) * batch as usize);
    let t = Instant::now();
    let mut written = 0;
    while written < events {
        let n = batch.min(events - written);
        buf.clear();
        for _ in 0..n {
            buf.extend_from_slice(data.as_bytes());
            buf.push(b'\n');
        }
        file.write_all(&buf).map_err(io_error("cannot write", path))?;
        file.sync_data().map_err(io_error("cannot sync", path))?;
        written += n;
    }
    Ok(events as f64 / t.elapsed().as_secs_f64())
}

/// Figures of the `$all` read.
#[derive(Debug, Clone, Copy)]
struct ReadFigures {
    events: u64,
    json_bytes: u64,
    store_secs: f64,
    loop_secs: f64,
}

/// Fills a store with `events` events (1,000 per append over 100 streams) and a file with the
/// same events' JSON lines, then reads both in full, timed.
fn measure_reads(dir: &Path, events: u64, data: &str) -> Result<ReadFigures> {
    const PER_APPEND: u64 = 1000;
    let store = EventStore::open(dir).map_err(store_error("cannot open the store"))?;
    let mut appended = 0;
    let mut a = 0u64;
    while appended < events {
        let n = PER_APPEND.min(events - appended);
        let batch = (0..n)
            .map(|_| NewEvent {
                id: None,
                event_type: "Benchmarked".to_string(),
                data: data.to_string(),
                metadata: None,
            })
            .collect();
        store
            .append(&format!("read-{}", a % 100), ExpectedVersion::Any, batch)
            .map_err(store_error("append"))?;
        appended += n;
        a += 1;
    }
    // The same events as JSON lines, for the hand loop.
    let lines_path = dir.join("hand-loop.jsonl");
    let mut json_bytes = 0u64;
    {
        let file = std::fs::File::create(&lines_path).map_err(io_error("cannot create", &lines_path))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut from = 0;
        let mut line = String::new();
        loop {
            let page = store
                .read(&Filter::All, from, READ_BATCH)
                .map_err(store_error("read"))?;
            let Some(last) = page.last() else { break };
            from = last.position + 1;
            for e in &page {
                line.clear();
                e.write_json(&mut line);
                line.push('\n');
                json_bytes += line.len() as u64;
                out.write_all(line.as_bytes())
                    .map_err(io_error("cannot write", &lines_path))?;
            }
        }
        out.flush().map_err(io_error("cannot write", &lines_path))?;
    }

    let t = Instant::now();
    let mut read = 0u64;
    let mut data_bytes = 0usize;
    let mut from = 0;
    loop {
        let page = store
            .read(&Filter::All, from, READ_BATCH)
            .map_err(store_error("read"))?;
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        read += page.len() as u64;
        data_bytes += page.iter().map(|e| e.data.len()).sum::<usize>();
    }
    let store_secs = t.elapsed().as_secs_f64();
    if read != events || data_bytes != events as usize * data.len() {
        return Err(Error::Execution(format!(
            "bench store: $all read {read} events ({data_bytes} data bytes) of {events}"
        )));
    }

    let t = Instant::now();
    let mut file = std::fs::File::open(&lines_path).map_err(io_error("cannot open", &lines_path))?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = file.read(&mut chunk).map_err(io_error("cannot read", &lines_path))?;
        if n == 0 {
            break;
        }
        lines += count_newlines(&chunk[..n]);
    }
    let loop_secs = t.elapsed().as_secs_f64();
    if lines != events {
        return Err(Error::Execution(format!(
            "bench store: the hand loop read {lines} lines of {events}"
        )));
    }
    Ok(ReadFigures {
        events,
        json_bytes,
        store_secs,
        loop_secs,
    })
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_is_json_of_the_size_asked_for() {
        let data = event_data(200);
        assert_eq!(data.len(), 200);
        assert!(serde_json::from_str::<serde_json::Value>(&data).is_ok());
    }

    #[test]
    fn appends_and_reads_count_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let data = event_data(50);
        let f = measure_appends(&dir.path().join("a"), 4, 25, &data).unwrap();
        assert_eq!(f.appends, 100);
        assert!(f.commits >= 1 && f.commits <= 100, "{f:?}");
        let r = measure_reads(&dir.path().join("r"), 2_500, &data).unwrap();
        assert_eq!(r.events, 2_500);
        assert!(r.json_bytes > 2_500 * 50, "{r:?}");
    }
}
