//! The bank's read side: one Riffle projection job over the store's `$all` that keeps a
//! read-model table of
//!
//! * `account/<id>`: `{"id","owner","balance","version","deposited","withdrawn","volume","operations"}`
//!   (a rolling fold per account stream);
//! * `daily/<id>/<day>`: `{"id","day","deposited","withdrawn","operations"}` per UTC day of the
//!   events' time (the store's timestamp): an event-time tumbling window of one day per account
//!   whose result is updated with each event (Flink's continuous event-time trigger) rather
//!   than once the day is over, so that today's figures can be queried today.
//!
//! Every event, of an account or not, moves the table's position (a position marker), so a
//! query that waits for the position an append returned (read-your-writes) is answered as
//! soon as the projection has passed that event.

use crate::account::AccountEvent;
use riffle_connectors::readmodel::TableUpdate;
use riffle_core::aggregate::Aggregate as Fold;
use riffle_eventstore::cqrs::decode_event;
use riffle_runtime::projection::StoreEvent;
use riffle_runtime::DataStream;
use serde::{Deserialize, Serialize};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The account row's figures (a mergeable accumulator: sums, counts, maxima).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountFigures {
    /// The owner, once the account is opened.
    pub owner: Option<String>,
    /// Cents in.
    pub deposited: i64,
    /// Cents out.
    pub withdrawn: i64,
    /// Deposits and withdrawals.
    pub operations: u64,
    /// The highest version of the stream seen.
    pub version: u64,
    /// The highest position seen.
    pub position: u64,
}

impl AccountFigures {
    fn add(&mut self, e: &StoreEvent) {
        self.version = self.version.max(e.version);
        self.position = self.position.max(e.position);
        match account_event(e) {
            Some(AccountEvent::Opened { owner }) => self.owner = Some(owner),
            Some(AccountEvent::Deposited { amount, .. }) => {
                self.deposited += amount;
                self.operations += 1;
            }
            Some(AccountEvent::Withdrawn { amount, .. }) => {
                self.withdrawn += amount;
                self.operations += 1;
            }
            None => {}
        }
    }

    fn merge(&mut self, o: AccountFigures) {
        if self.owner.is_none() {
            self.owner = o.owner;
        }
        self.deposited += o.deposited;
        self.withdrawn += o.withdrawn;
        self.operations += o.operations;
        self.version = self.version.max(o.version);
        self.position = self.position.max(o.position);
    }
}

fn account_event(e: &StoreEvent) -> Option<AccountEvent> {
    let recorded = riffle_eventstore::RecordedEvent {
        stream: e.stream.clone(),
        id: riffle_eventstore::Uuid::nil(),
        event_type: e.event_type.clone(),
        data: e.data.clone(),
        metadata: "{}".into(),
        version: e.version,
        position: e.position,
        timestamp: e.timestamp,
    };
    match decode_event::<AccountEvent>(&recorded) {
        Ok(event) => Some(event),
        Err(err) => {
            tracing::warn!("projection: {err}");
            None
        }
    }
}

/// The fold of an account's (or an account-day's) events.
#[derive(Clone)]
struct FoldFigures;

impl Fold<StoreEvent> for FoldFigures {
    type Acc = AccountFigures;
    type Output = AccountFigures;
    fn create(&self) -> AccountFigures {
        AccountFigures::default()
    }
    fn add(&self, acc: &mut AccountFigures, e: StoreEvent) {
        acc.add(&e);
    }
    fn merge(&self, acc: &mut AccountFigures, other: AccountFigures) {
        acc.merge(other);
    }
    fn result(&self, acc: &AccountFigures) -> AccountFigures {
        acc.clone()
    }
}

/// The account id of a stream of the `account` category.
pub fn account_id(stream: &str) -> Option<&str> {
    stream.strip_prefix("account-")
}

/// The projection's dataflow: events in, table rows and position markers out.
pub fn build(events: DataStream<'_, StoreEvent>) -> DataStream<'_, TableUpdate> {
    // Every event moves the position, whether it changes a row or not.
    let markers = events.clone().map(|e| TableUpdate::Position(e.position));
    let accounts = events.filter(|e| account_id(&e.stream).is_some());
    let balances = accounts
        .clone()
        .key_by(|e| e.stream.clone())
        .rolling(FoldFigures)
        .flat_map(|(stream, f)| {
            let id = account_id(&stream).unwrap_or(&stream).to_string();
            let row = serde_json::json!({
                "id": id,
                "owner": f.owner,
                "balance": f.deposited - f.withdrawn,
                "version": f.version,
                "deposited": f.deposited,
                "withdrawn": f.withdrawn,
                "volume": f.deposited + f.withdrawn,
                "operations": f.operations,
            });
            [
                TableUpdate::Put {
                    key: format!("account/{id}"),
                    value: row.to_string(),
                },
                TableUpdate::Position(f.position),
            ]
        });
    let daily = accounts
        .key_by(|e| (e.stream.clone(), e.timestamp.div_euclid(DAY_MS)))
        .rolling(FoldFigures)
        .flat_map(|((stream, day), f)| {
            let id = account_id(&stream).unwrap_or(&stream).to_string();
            let date = day_name(day);
            let row = serde_json::json!({
                "id": id,
                "day": date,
                "deposited": f.deposited,
                "withdrawn": f.withdrawn,
                "operations": f.operations,
            });
            [
                TableUpdate::Put {
                    key: format!("daily/{id}/{date}"),
                    value: row.to_string(),
                },
                TableUpdate::Position(f.position),
            ]
        });
    markers.union(balances).union(daily)
}

/// `YYYY-MM-DD` of day number `day` since 1970-01-01 (UTC).
pub fn day_name(day: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400)) {
        Ok(t) => t.date().to_string(),
        Err(_) => format!("day {day}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(19_723), "2024-01-01");
        assert_eq!(day_name(20_790), "2026-12-03");
        assert_eq!(day_name(-1), "1969-12-31");
    }
}
