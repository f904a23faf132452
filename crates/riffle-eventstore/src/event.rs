//! The events the store keeps and the terms of an append: what a client sends ([`NewEvent`]),
//! what it gets back ([`RecordedEvent`], [`AppendResult`]) and what it expects of the stream
//! ([`ExpectedVersion`]).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The type of the event that deletes a stream (its tombstone, at the stream's next version).
pub const STREAM_DELETED: &str = "$streamDeleted";

/// What an append expects of the stream, checked atomically with the write (KurrentDB's
/// expected version): a mismatch writes nothing and reports the current version.
///
/// ```
/// use riffle_eventstore::ExpectedVersion;
/// assert_eq!("no-stream".parse::<ExpectedVersion>().unwrap(), ExpectedVersion::NoStream);
/// assert_eq!("7".parse::<ExpectedVersion>().unwrap(), ExpectedVersion::Exact(7));
/// assert_eq!(ExpectedVersion::Exact(7).to_string(), "7");
/// assert!("seven".parse::<ExpectedVersion>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Whatever the stream holds (no check).
    Any,
    /// The stream has no event yet.
    NoStream,
    /// The stream has at least one event.
    Exists,
    /// The stream's last event has this version (versions count from 0).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `current` (`None`: no event) meets this.
    pub fn admits(self, current: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::Exists => current.is_some(),
            ExpectedVersion::Exact(v) => current == Some(v),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no-stream"),
            ExpectedVersion::Exists => f.write_str("exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl FromStr for ExpectedVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "any" => Ok(ExpectedVersion::Any),
            "no-stream" => Ok(ExpectedVersion::NoStream),
            "exists" => Ok(ExpectedVersion::Exists),
            n => n
                .parse::<u64>()
                .map(ExpectedVersion::Exact)
                .map_err(|_| format!("expected version {s:?} is none of any, no-stream, exists or a version number")),
        }
    }
}

/// An event to append: its type, JSON data and metadata, and optionally its id (a client that
/// sets the id can retry an append without making a duplicate).
///
/// ```
/// use riffle_eventstore::NewEvent;
/// let e = NewEvent::json("Deposited", &serde_json::json!({"amount": 5})).unwrap();
/// assert_eq!(e.data, r#"{"amount":5}"#);
/// assert_eq!(e.metadata, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The event's id; the store makes one (a random UUID) when it is `None`.
    pub id: Option<Uuid>,
    /// The event's type, e.g. `Deposited`.
    pub event_type: String,
    /// The data, as JSON text (checked at append).
    pub data: String,
    /// The metadata, as JSON text (checked at append), if any.
    pub metadata: Option<String>,
}

impl NewEvent {
    /// An event of `event_type` whose data is `data` serialised as JSON.
    pub fn json(event_type: &str, data: &impl Serialize) -> Result<NewEvent, serde_json::Error> {
        Ok(NewEvent {
            id: None,
            event_type: event_type.to_string(),
            data: serde_json::to_string(data)?,
            metadata: None,
        })
    }

    /// The same event with this id.
    pub fn with_id(mut self, id: Uuid) -> NewEvent {
        self.id = Some(id);
        self
    }

    /// The same event with this metadata (JSON text).
    pub fn with_metadata(mut self, metadata: String) -> NewEvent {
        self.metadata = Some(metadata);
        self
    }
}

/// An event as the store recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream: String,
    /// Its id.
    pub id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its data, JSON text.
    pub data: String,
    /// Its metadata, JSON text (`{}` when the append gave none).
    pub metadata: String,
    /// Its version within the stream: 0, 1, …
    pub version: u64,
    /// Its position in the whole store (`$all`): 0, 1, … without gaps.
    pub position: u64,
    /// When the store appended it, milliseconds since the Unix epoch; never decreasing along
    /// positions.
    pub timestamp: i64,
}

/// The JSON shape of a recorded event (the HTTP API's and the `store://` source's lines):
/// `{"stream","id","type","data","metadata","version","position","timestamp"}`.
#[derive(Serialize, Deserialize)]
struct EventJson<'a> {
    stream: std::borrow::Cow<'a, str>,
    id: Uuid,
    #[serde(rename = "type")]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(borrow)]
    metadata: &'a RawValue,
    version: u64,
    position: u64,
    timestamp: i64,
}

impl RecordedEvent {
    /// The event's category: the stream id up to its first `-` (KurrentDB's `$ce-`
    /// convention), or the whole id when it has none.
    pub fn category(&self) -> &str {
        category_of(&self.stream)
    }

    /// The event as one line of JSON:
    /// `{"stream","id","type","data","metadata","version","position","timestamp"}`.
    ///
    /// ```
    /// # use riffle_eventstore::RecordedEvent;
    /// let e = RecordedEvent { stream: "account-1".into(), id: uuid::Uuid::nil(),
    ///     event_type: "Opened".into(), data: "{\"owner\":\"ann\"}".into(), metadata: "{}".into(),
    ///     version: 0, position: 3, timestamp: 1000 };
    /// let line = e.to_json();
    /// assert_eq!(RecordedEvent::from_json(&line).unwrap(), e);
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128 + self.data.len() + self.metadata.len());
        self.write_json(&mut out);
        out
    }

    /// Appends the event's JSON line (without a newline) to `out`.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("{\"stream\":");
        push_json_str(out, &self.stream);
        let _ = write!(out, ",\"id\":\"{}\",\"type\":", self.id);
        push_json_str(out, &self.event_type);
        out.push_str(",\"data\":");
        out.push_str(&self.data);
        out.push_str(",\"metadata\":");
        out.push_str(&self.metadata);
        let _ = write!(
            out,
            ",\"version\":{},\"position\":{},\"timestamp\":{}}}",
            self.version, self.position, self.timestamp
        );
    }

    /// Parses an event from its JSON line (see [`RecordedEvent::to_json`]).
    pub fn from_json(line: &str) -> Result<RecordedEvent, serde_json::Error> {
        let e: EventJson<'_> = serde_json::from_str(line)?;
        Ok(RecordedEvent {
            stream: e.stream.into_owned(),
            id: e.id,
            event_type: e.event_type.into_owned(),
            data: e.data.get().to_string(),
            metadata: e.metadata.get().to_string(),
            version: e.version,
            position: e.position,
            timestamp: e.timestamp,
        })
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json escapes exactly as JSON needs; a String never fails to serialise.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// Valid JSON text without the whitespace between its tokens, so that every recorded event is
/// one line (the `store://` source and SSE read lines). The store applies it to every
/// appended event's data and metadata. Re-serialising through
/// `serde_json::Value` would round large numbers; this keeps every token as it was written.
pub fn compact_json(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.bytes().any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The category of a stream id: its prefix before the first `-`, or the whole id.
///
/// ```
/// assert_eq!(riffle_eventstore::category_of("account-42"), "account");
/// assert_eq!(riffle_eventstore::category_of("account-42-x"), "account");
/// assert_eq!(riffle_eventstore::category_of("ledger"), "ledger");
/// ```
pub fn category_of(stream: &str) -> &str {
    stream.split_once('-').map_or(stream, |(c, _)| c)
}

/// What an append wrote (or, for a retried append of the same event ids, what the first one
/// wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// The version of the first event appended.
    pub first_version: u64,
    /// The version of the last event appended: the stream's version after the append.
    pub last_version: u64,
    /// The global position of the first event appended.
    pub first_position: u64,
    /// The global position of the last event appended: a query that must see this write waits
    /// for a read model to pass it.
    pub position: u64,
    /// Whether the events were already there (an idempotent retry): nothing was written.
    pub already_written: bool,
}

/// Which events a read or a subscription sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every event (`$all`).
    All,
    /// The events of the streams of a category.
    Category(String),
    /// The events of one stream.
    Stream(String),
}

/// The direction of a stream read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a version upwards.
    Forward,
    /// From a version downwards.
    Backward,
}

/// An aggregate's snapshot: its state as of a version of its stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The stream's version the state includes.
    pub version: u64,
    /// The state, JSON text.
    pub state: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn compacting_keeps_strings_and_numbers_as_written() {
        assert_eq!(
            super::compact_json("{ \"a b\" : [1 ,\n 2.50e3 ] , \"q\\\" x\": 123456789012345678901234567890 }"),
            "{\"a b\":[1,2.50e3],\"q\\\" x\":123456789012345678901234567890}"
        );
        assert_eq!(super::compact_json("{\"a\":1}"), "{\"a\":1}");
    }
}
