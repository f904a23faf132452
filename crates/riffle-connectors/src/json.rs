//! JSON lines as keyed, timestamped records.
//!
//! Each line is one JSON object. [`JsonRecordFormat`] takes its event time from a top-level
//! field (unix milliseconds as an integer, or an RFC 3339 string such as
//! `"2026-11-27T10:00:00.250+01:00"`) and its key from another (a string, number or boolean),
//! and keeps the object's text to be written out as it came. Anything else — invalid JSON, not
//! an object, a missing field, a key that is an object, array or null — is an error message
//! that the source reports with the line's position and counts as malformed.
//!
//! Keys compare by JSON type and value: `1` and `"1"` are different keys, as in SQL.
//!
//! ```
//! use riffle_connectors::json::{JsonKey, JsonRecordFormat};
//! let format = JsonRecordFormat::new("user", "ts");
//! let (ts, rec) = format.parse(r#"{"user": 42, "ts": 1700000000000, "page": "/"}"#).unwrap();
//! assert_eq!((ts, &rec.key), (1_700_000_000_000, &JsonKey::Int(42)));
//! let (ts, _) = format.parse(r#"{"user": "a", "ts": "2023-11-14T22:13:20Z"}"#).unwrap();
//! assert_eq!(ts, 1_700_000_000_000);
//! assert!(format.parse(r#"{"user": {"id": 1}, "ts": 0}"#).unwrap_err().contains("key field 'user'"));
//! ```

use riffle_core::EventTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A record key taken from a JSON field.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum JsonKey {
    /// A string.
    Str(String),
    /// An integer that fits `i64`.
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    /// Any other number, by its bits (so that keys can be hashed and compared).
    Float(u64),
    /// A boolean.
    Bool(bool),
}

impl JsonKey {
    /// Appends the key as JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = match self {
            JsonKey::Str(s) => serde_json::to_writer(&mut *out, s).map_err(std::io::Error::other),
            JsonKey::Int(i) => write!(out, "{i}"),
            JsonKey::UInt(u) => write!(out, "{u}"),
            JsonKey::Float(bits) => {
                serde_json::to_writer(&mut *out, &f64::from_bits(*bits)).map_err(std::io::Error::other)
            }
            JsonKey::Bool(b) => write!(out, "{b}"),
        };
    }
}

/// A JSON object with its key: the object's text, as read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonRecord {
    /// The key field's value.
    pub key: JsonKey,
    /// The object, as the line held it (trimmed).
    pub json: String,
}

/// Where a JSON record's key and event time are.
#[derive(Clone, Debug)]
pub struct JsonRecordFormat {
    key_field: String,
    time_field: String,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl JsonRecordFormat {
    /// Keys from `key_field`, event times from `time_field` (top-level fields).
    pub fn new(key_field: &str, time_field: &str) -> Self {
        JsonRecordFormat {
            key_field: key_field.to_string(),
            time_field: time_field.to_string(),
        }
    }

    /// Parses one line.
    pub fn parse(&self, line: &str) -> Result<(EventTime, JsonRecord), String> {
        let map = parse_object(line)?;
        let ts = time_field(&map, &self.time_field)?;
        let key = match map.get(&self.key_field) {
            None => return Err(format!("key field '{}' is missing", self.key_field)),
            Some(Value::String(s)) => JsonKey::Str(s.clone()),
            Some(Value::Bool(b)) => JsonKey::Bool(*b),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => JsonKey::Int(i),
                (None, Some(u), _) => JsonKey::UInt(u),
                (_, _, Some(f)) => JsonKey::Float(f.to_bits()),
                _ => return Err(format!("key field '{}': number out of range", self.key_field)),
            },
            Some(other) => {
                return Err(format!(
                    "key field '{}' must be a string, number or boolean, got {}",
                    self.key_field,
                    kind(other)
                ))
            }
        };
        Ok((
            ts,
            JsonRecord {
                key,
                json: line.trim().to_string(),
            },
        ))
    }
}

/// Where the text and the event time of a JSON line are, for the text jobs (word count,
/// distinct, top-k) reading JSON messages.
///
/// ```
/// use riffle_connectors::json::JsonTextFormat;
/// let f = JsonTextFormat::new("text", Some("ts"));
/// assert_eq!(f.parse(r#"{"ts": 5, "text": "a b"}"#), Ok((5, "a b".to_string())));
/// assert!(f.parse(r#"{"ts": 5, "text": 3}"#).unwrap_err().contains("'text'"));
/// assert_eq!(JsonTextFormat::new("text", None).parse(r#"{"text": "a"}"#), Ok((0, "a".to_string())));
/// ```
#[derive(Clone, Debug)]
pub struct JsonTextFormat {
    text_field: String,
    time_field: Option<String>,
}

impl JsonTextFormat {
    /// Text from `text_field`; event time from `time_field` (none in processing time).
    pub fn new(text_field: &str, time_field: Option<&str>) -> Self {
        JsonTextFormat {
            text_field: text_field.to_string(),
            time_field: time_field.map(str::to_string),
        }
    }

    /// Parses one line: (event time, text); the time is 0 without a time field.
    pub fn parse(&self, line: &str) -> Result<(EventTime, String), String> {
        let mut map = parse_object(line)?;
        let ts = match &self.time_field {
            None => 0,
            Some(field) => time_field(&map, field)?,
        };
        match map.remove(&self.text_field) {
            Some(Value::String(s)) => Ok((ts, s)),
            None => Err(format!("text field '{}' is missing", self.text_field)),
            Some(other) => Err(format!(
                "text field '{}': expected a string, got {}",
                self.text_field,
                kind(&other)
            )),
        }
    }
}

/// One line as a JSON object.
fn parse_object(line: &str) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))? {
        Value::Object(map) => Ok(map),
        other => Err(format!("expected a JSON object, got {}", kind(&other))),
    }
}

/// The event time in field `field` of `map`.
fn time_field(map: &serde_json::Map<String, Value>, field: &str) -> Result<EventTime, String> {
    match map.get(field) {
        None => Err(format!("time field '{field}' is missing")),
        Some(v) => parse_time(v).map_err(|e| format!("time field '{field}': {e}")),
    }
}

/// Unix milliseconds (an integer) or an RFC 3339 date-time string.
fn parse_time(v: &Value) -> Result<EventTime, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not an integer number of unix milliseconds")),
        Value::String(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("'{s}' is not an RFC 3339 date-time: {e}"))?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("'{s}' is out of range"))
        }
        other => Err(format!(
            "expected unix milliseconds or an RFC 3339 string, got {}",
            kind(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_is_wrong() {
        let f = JsonRecordFormat::new("id", "ts");
        let cases = [
            (r#"{"id": 1"#, "invalid JSON"),
            ("[1, 2]", "expected a JSON object, got an array"),
            (r#"{"id": 1}"#, "time field 'ts' is missing"),
            (r#"{"ts": 5}"#, "key field 'id' is missing"),
            (r#"{"id": null, "ts": 5}"#, "got null"),
            (r#"{"id": [1], "ts": 5}"#, "got an array"),
            (r#"{"id": 1, "ts": 1.5}"#, "not an integer"),
            (r#"{"id": 1, "ts": "yesterday"}"#, "not an RFC 3339"),
            (r#"{"id": 1, "ts": true}"#, "got a boolean"),
        ];
        for (line, expected) in cases {
            let e = f.parse(line).unwrap_err();
            assert!(e.contains(expected), "{line}: {e}");
        }
    }

    #[test]
    fn keys_keep_their_type_and_times_their_offset() {
        let f = JsonRecordFormat::new("id", "ts");
        let key = |line: &str| f.parse(line).unwrap().1.key;
        assert_ne!(key(r#"{"id": 1, "ts": 0}"#), key(r#"{"id": "1", "ts": 0}"#));
        assert_eq!(key(r#"{"id": 1.5, "ts": 0}"#), JsonKey::Float(1.5f64.to_bits()));
        let (a, _) = f.parse(r#"{"id": 1, "ts": "2026-11-27T10:00:00.250+01:00"}"#).unwrap();
        let (b, _) = f.parse(r#"{"id": 1, "ts": "2026-11-27T09:00:00.250Z"}"#).unwrap();
        assert_eq!(a, b);
        let mut out = Vec::new();
        JsonKey::Str("a\"b".into()).write_json(&mut out);
        assert_eq!(out, br#""a\"b""#);
    }
}
