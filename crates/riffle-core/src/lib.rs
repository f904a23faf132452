//! Engine-agnostic operator logic for Riffle.
//!
//! Everything a stream processor decides about *records* lives here as plain Rust that
//! can be tested without an execution engine: event time and watermarks, window
//! assignment (tumbling, sliding, session, global, count), incremental aggregates,
//! the state machines of the window operators, and the key groups that partition
//! keyed state. The runtime crate (`riffle-runtime`) is the only crate that knows
//! timely dataflow; it wraps these pieces into dataflow operators.
//!
//! # Example
//! ```
//! use riffle_core::window::{SlidingWindows, WindowAssigner};
//! let hop = SlidingWindows::of_millis(10_000, 2_000).unwrap();
//! let mut windows = Vec::new();
//! hop.assign(12_345, &mut |w| windows.push(w)).unwrap();
//! assert_eq!(windows.len(), 5);
//! assert!(windows.iter().all(|w| w.start <= 12_345 && 12_345 < w.end));
//! ```

// A library does not panic on a value it could not get: it returns an error that says which.
#![warn(clippy::expect_used)]

pub mod aggregate;
pub mod count_window;
pub mod duration;
pub mod error;
pub mod join;
pub mod key_group;
pub mod text;
pub mod time;
pub mod window;
pub mod window_state;

pub use error::{Error, Result};
pub use time::{EventTime, Watermark, WatermarkGenerator, WatermarkStrategy};
pub use window::Window;
