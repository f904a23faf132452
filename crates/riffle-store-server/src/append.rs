//! `POST /streams/{stream}` and `DELETE /streams/{stream}`: the writes. The body is checked
//! here, field by field, so that a client learns which event and which field is wrong; the
//! store checks the rest (stream names, ids reused elsewhere) and its expected version.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use riffle_eventstore::{AppendResult, ExpectedVersion, NewEvent, Uuid};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::{ApiError, AppState};

/// The header that carries an append's or a deletion's expected version.
pub(crate) const EXPECTED_VERSION: &str = "expected-version";

/// The fields an event of the request body may have.
const EVENT_FIELDS: [&str; 4] = ["id", "type", "data", "metadata"];

/// The body of a successful append (201) or deletion (200).
#[derive(Debug, Serialize)]
pub(crate) struct Appended {
    first_version: u64,
    last_version: u64,
    /// The global position of the last event written.
    position: u64,
}

impl From<AppendResult> for Appended {
    fn from(r: AppendResult) -> Appended {
        Appended {
            first_version: r.first_version,
            last_version: r.last_version,
            position: r.position,
        }
    }
}

/// `POST /streams/{stream}`: appends the body's events; 201 once they are durable.
pub(crate) async fn append(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    let stream = stream_name(stream)?;
    let expected = expected_version(&headers)?;
    let body = body.map_err(|rejection| body_error(&rejection, state.max_body_bytes))?;
    let events = parse_events(&body).map_err(ApiError::bad_request)?;
    let (tx, rx) = oneshot::channel();
    // The writer thread calls back once the events are durable: no tokio worker waits on the
    // fsync. The result is dropped if the client went away meanwhile; the append stands.
    state.store.append_with(&stream, expected, events, move |result| {
        let _ = tx.send(result);
    });
    let result = rx
        .await
        .map_err(|_| ApiError::internal(format!("the event store dropped the append to {stream:?} unanswered")))?;
    Ok((StatusCode::CREATED, Json(Appended::from(result?))))
}

/// `DELETE /streams/{stream}`: writes the stream's tombstone; 200 with its version and
/// position.
pub(crate) async fn delete(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<Appended>, ApiError> {
    let stream = stream_name(stream)?;
    let expected = expected_version(&headers)?;
    let (tx, rx) = oneshot::channel();
    state.store.delete_stream_with(&stream, expected, move |result| {
        let _ = tx.send(result);
    });
    let result = rx
        .await
        .map_err(|_| ApiError::internal(format!("the event store dropped the deletion of {stream:?} unanswered")))?;
    Ok(Json(Appended::from(result?)))
}

/// The stream of the path, or a 400 that says why it could not be read.
pub(crate) fn stream_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(s)| s)
        .map_err(|rejection| ApiError::bad_request(format!("the path's stream name: {}", rejection.body_text())))
}

/// The `Expected-Version` header (`any` when absent).
pub(crate) fn expected_version(headers: &HeaderMap) -> Result<ExpectedVersion, ApiError> {
    let Some(value) = headers.get(EXPECTED_VERSION) else {
        return Ok(ExpectedVersion::Any);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("header Expected-Version is not visible ASCII"))?;
    text.parse()
        .map_err(|e: String| ApiError::bad_request(format!("header Expected-Version: {e}")))
}

/// The 4xx of a body that could not be read: 413 over the limit.
fn body_error(rejection: &BytesRejection, max_body_bytes: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit of {max_body_bytes} bytes"),
        )
    } else {
        ApiError::new(
            rejection.status(),
            format!("cannot read the request body: {}", rejection.body_text()),
        )
    }
}

/// The events of an append's body: a JSON array of `{"id"?, "type", "data", "metadata"?}`.
/// The error names the event (by its index) and the field.
pub(crate) fn parse_events(body: &[u8]) -> Result<Vec<NewEvent>, String> {
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("the body is not UTF-8 (invalid byte at offset {})", e.valid_up_to()))?;
    let items: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| format!("the body is not a JSON array of events: {e}"))?;
    if items.is_empty() {
        return Err("the body is an empty array: an append needs at least one event".to_string());
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_event(item).map_err(|e| format!("event {i}: {e}")))
        .collect()
}

fn parse_event(item: &RawValue) -> Result<NewEvent, String> {
    let fields: BTreeMap<String, &RawValue> =
        serde_json::from_str(item.get()).map_err(|_| format!("is not a JSON object but {}", excerpt(item.get())))?;
    if let Some(unknown) = fields.keys().find(|k| !EVENT_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {unknown:?} (an event has the fields id, type, data and metadata)"
        ));
    }
    let present = |name: &str| fields.get(name).filter(|raw| raw.get() != "null");
    let id = match present("id") {
        None => None,
        Some(raw) => Some(
            serde_json::from_str::<Uuid>(raw.get())
                .map_err(|_| format!("field \"id\" is not a UUID string but {}", excerpt(raw.get())))?,
        ),
    };
    let event_type = match present("type") {
        None => return Err("field \"type\" is missing".to_string()),
        Some(raw) => serde_json::from_str::<String>(raw.get())
            .map_err(|_| format!("field \"type\" is not a string but {}", excerpt(raw.get())))?,
    };
    if event_type.is_empty() {
        return Err("field \"type\" is empty".to_string());
    }
    let data = match fields.get("data") {
        None => return Err("field \"data\" is missing".to_string()),
        Some(raw) => riffle_eventstore::compact_json(raw.get()).into_owned(),
    };
    let metadata = present("metadata").map(|raw| riffle_eventstore::compact_json(raw.get()).into_owned());
    Ok(NewEvent {
        id,
        event_type,
        data,
        metadata,
    })
}

/// The start of a JSON value, for an error message.
fn excerpt(json: &str) -> String {
    const MAX: usize = 40;
    match json.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &json[..end]),
        None => json.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_with_and_without_optional_fields() {
        let body = br#"[{"type":"Opened","data":{"owner": "ann b"}},
            {"id":"67e55044-10b1-426f-9247-bb680e5fe0c8","type":"Deposited","data":5,"metadata":{"by":"x"}}]"#;
        let events = parse_events(body).unwrap();
        assert_eq!(
            events,
            vec![
                NewEvent {
                    id: None,
                    event_type: "Opened".into(),
                    data: r#"{"owner":"ann b"}"#.into(),
                    metadata: None
                },
                NewEvent {
                    id: Some("67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap()),
                    event_type: "Deposited".into(),
                    data: "5".into(),
                    metadata: Some(r#"{"by":"x"}"#.into())
                },
            ]
        );
    }

    #[test]
    fn errors_name_the_event_and_the_field() {
        let err = |body: &[u8]| parse_events(body).unwrap_err();
        assert_eq!(
            err(br#"[{"type":"A","data":1},{"data":1}]"#),
            "event 1: field \"type\" is missing"
        );
        assert_eq!(err(br#"[{"type":"A"}]"#), "event 0: field \"data\" is missing");
        assert_eq!(
            err(br#"[{"type":7,"data":1}]"#),
            "event 0: field \"type\" is not a string but 7"
        );
        assert_eq!(
            err(br#"[{"type":"A","data":1,"id":"nope"}]"#),
            "event 0: field \"id\" is not a UUID string but \"nope\""
        );
        assert_eq!(
            err(br#"[{"type":"A","data":1,"colour":"red"}]"#),
            "event 0: unknown field \"colour\" (an event has the fields id, type, data and metadata)"
        );
        assert_eq!(err(br#"[3]"#), "event 0: is not a JSON object but 3");
        assert_eq!(
            err(b"[]"),
            "the body is an empty array: an append needs at least one event"
        );
        assert_eq!(err(b"[\xff]"), "the body is not UTF-8 (invalid byte at offset 1)");
        assert!(err(b"[{").starts_with("the body is not a JSON array of events: "));
        assert!(err(br#"{"type":"A"}"#).starts_with("the body is not a JSON array of events: invalid type: map"));
    }
}
