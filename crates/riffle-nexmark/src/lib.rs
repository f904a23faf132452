//! The Nexmark benchmark on Riffle.
//!
//! Nexmark is the streaming benchmark Flink, RisingWave, Feldera and Hazelcast Jet publish
//! figures for: an online auction whose people, auctions and bids arrive as one stream, and a
//! set of queries over it (filters, joins, tumbling, sliding and session windows). This crate
//! holds Riffle's side of it:
//!
//! * [`model`]: the events and their JSON lines;
//! * [`generator`]: the standard generator (the `nexmark` crate) configured as nexmark-flink,
//!   cut into splits;
//! * [`source`]: the generator, an in-memory list or a JSON-lines file as a riffle source;
//! * [`queries`]: the queries on the DataStream API;
//! * [`batch`]: each query computed over a slice of events by plain single-threaded code, the
//!   independent oracle of the tests and the hand-written baseline of `riffle nexmark bench`.

// A library does not panic on a value it could not get: it returns an error that says which.
#![warn(clippy::expect_used)]

pub mod batch;
pub mod generator;
pub mod model;
pub mod queries;
pub mod source;

pub use generator::GeneratorConfig;
pub use model::Event;
pub use queries::{build, Query, Row};
