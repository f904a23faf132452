//! The Nexmark data model: people, auctions and bids, and their JSON-lines form.
//!
//! Field names are the standard ones in snake_case; times are unix milliseconds. On the wire
//! (between workers) an [`Event`] is an ordinary enum; in JSON it is one flat object with an
//! `event_type` of `person`, `auction` or `bid`, as `riffle nexmark generate` writes it:
//!
//! ```
//! use riffle_nexmark::model::{Bid, Event};
//! let bid = Event::Bid(Bid {
//!     auction: 1000, bidder: 1001, price: 3500, channel: "Google".into(),
//!     url: "https://www.nexmark.com/a".into(), date_time: 1_700_000_000_000, extra: String::new(),
//! });
//! let mut line = Vec::new();
//! bid.write_json(&mut line).unwrap();
//! let text = String::from_utf8(line).unwrap();
//! assert!(text.starts_with(r#"{"event_type":"bid","auction":1000,"bidder":1001,"price":3500"#));
//! assert_eq!(Event::from_json(&text), Ok(bid));
//! ```

use serde::{Deserialize, Serialize};

/// Event time, unix milliseconds.
pub type Millis = i64;

/// A person who sells or bids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The person's id.
    pub id: u64,
    /// Full name.
    pub name: String,
    /// Email address.
    pub email_address: String,
    /// Credit card number.
    pub credit_card: String,
    /// US city.
    pub city: String,
    /// US state (two letters).
    pub state: String,
    /// When the person registered.
    pub date_time: Millis,
    /// Padding to the configured average size.
    pub extra: String,
}

/// An item put up for auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    /// The auction's id.
    pub id: u64,
    /// Item name.
    pub item_name: String,
    /// Item description.
    pub description: String,
    /// Initial bid, in cents.
    pub initial_bid: u64,
    /// Reserve price, in cents.
    pub reserve: u64,
    /// When the auction opened.
    pub date_time: Millis,
    /// When the auction closes.
    pub expires: Millis,
    /// The seller's person id.
    pub seller: u64,
    /// Category id.
    pub category: u64,
    /// Padding to the configured average size.
    pub extra: String,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The auction bid on.
    pub auction: u64,
    /// The bidder's person id.
    pub bidder: u64,
    /// Price, in cents.
    pub price: u64,
    /// Channel the bid came through.
    pub channel: String,
    /// URL of the bid.
    pub url: String,
    /// When the bid was placed.
    pub date_time: Millis,
    /// Padding to the configured average size.
    pub extra: String,
}

/// One Nexmark event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A new person.
    Person(Person),
    /// A new auction.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

/// The JSON form: internally tagged by `event_type` (which the binary encoding between
/// processes cannot carry, hence a separate type).
#[derive(Serialize)]
#[serde(tag = "event_type", rename_all = "snake_case")]
enum JsonRef<'a> {
    Person(&'a Person),
    Auction(&'a Auction),
    Bid(&'a Bid),
}

#[derive(Deserialize)]
#[serde(tag = "event_type", rename_all = "snake_case")]
enum JsonOwned {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

impl Event {
    /// The event's time.
    pub fn date_time(&self) -> Millis {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// Appends the event as one line of JSON (newline included).
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let tagged = match self {
            Event::Person(p) => JsonRef::Person(p),
            Event::Auction(a) => JsonRef::Auction(a),
            Event::Bid(b) => JsonRef::Bid(b),
        };
        serde_json::to_writer(&mut *out, &tagged)?;
        out.push(b'\n');
        Ok(())
    }

    /// Parses one JSON line; the error says which field or value is wrong.
    pub fn from_json(line: &str) -> Result<Event, String> {
        match serde_json::from_str::<JsonOwned>(line) {
            Ok(JsonOwned::Person(p)) => Ok(Event::Person(p)),
            Ok(JsonOwned::Auction(a)) => Ok(Event::Auction(a)),
            Ok(JsonOwned::Bid(b)) => Ok(Event::Bid(b)),
            Err(e) => Err(format!("not a Nexmark event: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_json() {
        let events = [
            Event::Person(Person {
                id: 1,
                name: "Peter Shultz".into(),
                email_address: "a@b.com".into(),
                credit_card: "1 2 3 4".into(),
                city: "Bend".into(),
                state: "OR".into(),
                date_time: 5,
                extra: "x\"y".into(),
            }),
            Event::Auction(Auction {
                id: 2,
                item_name: "i".into(),
                description: "d".into(),
                initial_bid: 3,
                reserve: 4,
                date_time: 6,
                expires: 7,
                seller: 1,
                category: 10,
                extra: String::new(),
            }),
        ];
        for e in events {
            let mut line = Vec::new();
            e.write_json(&mut line).unwrap();
            assert_eq!(Event::from_json(std::str::from_utf8(&line).unwrap()), Ok(e));
        }
    }

    #[test]
    fn malformed_events_are_errors_that_name_the_problem() {
        let err = Event::from_json(r#"{"event_type":"bid","auction":1}"#).unwrap_err();
        assert!(err.contains("missing field"), "{err}");
        let err = Event::from_json(r#"{"event_type":"trade"}"#).unwrap_err();
        assert!(err.contains("trade"), "{err}");
    }
}
