//! An event-sourced bank: the example of CQRS on Riffle, end to end.
//!
//! * **Commands** ([`account`]): an account is an aggregate in the event store
//!   (`account-<id>`); opening, depositing and withdrawing are decided against its state and
//!   appended with its version as the expected version, so no balance goes below zero under any
//!   concurrency.
//! * **Transfers** ([`transfer`]): a process manager (`transfer-<id>`) withdraws from one
//!   account, then deposits into the other, and refunds the first when the deposit is refused.
//!   Every step has an id derived from the transfer's, so a transfer resumed after a crash
//!   never withdraws twice.
//! * **Queries** ([`projection`], [`server`]): a Riffle projection job keeps a read-model table
//!   of balances, daily figures and volumes from the store's `$all`, exactly once across
//!   restarts; a query that carries the position its command returned waits until the table
//!   has passed it (read-your-writes).
//! * **The process** ([`app`]): `riffle example bank serve` runs the store, the projection and
//!   the HTTP server together.

// A library does not panic on a value it could not get: it returns an error that says which.
#![warn(clippy::expect_used)]

pub mod account;
pub mod app;
pub mod projection;
pub mod server;
pub mod transfer;

/// An id derived from a name: the same name gives the same id in every process and run (the
/// ids of a transfer's steps, the events of an idempotent command).
pub fn name_id(name: &str) -> riffle_eventstore::Uuid {
    riffle_eventstore::Uuid::from_u128(xxhash_rust::xxh3::xxh3_128(name.as_bytes()))
}
