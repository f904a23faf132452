//! Riffle's DataStream API and its execution on timely dataflow.
//!
//! This is the only crate of Riffle that knows timely dataflow. It turns a job, written
//! against [`StreamEnv`] and [`DataStream`] in the shape of Flink's DataStream API, into a
//! timely dataflow on every worker, with the operator logic of `riffle_core`.
//!
//! # Example
//! The seed's word count, on event time from an in-memory source:
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use riffle_runtime::{execute, ExecutionConfig, JobContext};
//! use riffle_core::window::TumblingEventTimeWindows;
//! use riffle_core::WatermarkStrategy;
//!
//! let out = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&out);
//! let lines = vec![(1_000, "a b".to_string()), (2_000, "a".to_string()), (6_000, "b".to_string())];
//! execute(ExecutionConfig::threads(2), Arc::new(JobContext::default()), move |env| {
//!     env.from_splits(vec![lines.clone()], 2, WatermarkStrategy::bounded_out_of_orderness(0))
//!         .flat_map(|line: String| line.split_whitespace().map(|w| (w.to_string(), 1u64)).collect::<Vec<_>>())
//!         .key_by(|(w, _)| w.clone())
//!         .window(TumblingEventTimeWindows::of(Duration::from_secs(5)))
//!         .sum(|(_, n)| *n)
//!         .collect_into(Arc::clone(&sink));
//! }).unwrap();
//! let mut got: Vec<_> = out.lock().unwrap().iter().map(|(_, r)| (r.window.start, r.key.clone(), r.value)).collect();
//! got.sort();
//! assert_eq!(got, vec![(0, "a".into(), 2), (0, "b".into(), 1), (5_000, "b".into(), 1)]);
//! ```

// A library does not panic on a value it could not get: it returns an error that says which.
#![warn(clippy::expect_used)]

pub mod checkpoint;
mod combiner;
pub mod context;
mod dedup_op;
mod env;
mod epoch_op;
pub mod execute;
pub mod join_op;
mod keyed;
mod progress;
pub mod projection;
pub mod restart;
mod rolling_op;
pub mod sink;
pub mod source;
pub mod stream;
pub mod time;
pub mod window_op;

pub use context::{Clock, JobContext, ManualClock, MetricsSnapshot, StateGauge, SystemClock};
pub use execute::{execute, ExecutionConfig};
pub use join_op::{JoinResult, Joined};
// riffle-state's, where the runtime's jobs have always found it.
pub use riffle_state::fingerprint;
pub use stream::{CountWindowedStream, DataStream, KeyedStream, StreamEnv, TextSource, WindowResult, WindowedStream};
pub use time::Time;

/// The README's examples compile (they are `no_run`: they need a server and a folder).
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
