//! The reads: `GET /streams/{stream}` by version, `GET /all` and `GET /categories/{c}` by
//! global position, `GET /head`. Each answers `{"events": [...], "next": ...}` where `next` is
//! the `from` to continue with (`null` when a backward read reached version 0).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use riffle_eventstore::{Direction, EventStore, Filter, RecordedEvent, StoreError};

use crate::{ApiError, AppState, DEFAULT_READ_LIMIT, MAX_READ_LIMIT};

/// The query parameters of a read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReadParams {
    /// `from`, if given.
    pub from: Option<u64>,
    /// `limit`, or its default.
    pub limit: usize,
    /// `direction=backward`.
    pub backward: bool,
}

/// Reads the query's parameters, allowing only those in `allowed`; a 400 names the parameter
/// that is unknown, repeated or not a number in range.
pub(crate) fn read_params(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    allowed: &[&str],
) -> Result<ReadParams, ApiError> {
    let Query(pairs) = query.map_err(|r| ApiError::bad_request(format!("the query string: {}", r.body_text())))?;
    let mut params = ReadParams {
        from: None,
        limit: DEFAULT_READ_LIMIT,
        backward: false,
    };
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &pairs {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {name:?} (this route takes {})",
                allowed.join(", ")
            )));
        }
        if seen.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "query parameter {name:?} is given twice"
            )));
        }
        seen.push(name);
        match name.as_str() {
            "from" => {
                params.from = Some(value.parse().map_err(|_| {
                    ApiError::bad_request(format!("query parameter from={value:?} is not a non-negative integer"))
                })?);
            }
            "limit" => {
                params.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_READ_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "query parameter limit={value:?} is not an integer from 1 to {MAX_READ_LIMIT}"
                        ))
                    })?;
            }
            "direction" => {
                params.backward = match value.as_str() {
                    "forward" => false,
                    "backward" => true,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "query parameter direction={value:?} is neither forward nor backward"
                        )))
                    }
                }
            }
            _ => {}
        }
    }
    Ok(params)
}

/// Runs a read of the store on the blocking pool (it may read segment files).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("the read task failed: {e}")))?
        .map_err(ApiError::from)
}

/// `GET /streams/{stream}?from=V&limit=N&direction=forward|backward`.
pub(crate) async fn stream(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let stream = crate::append::stream_name(stream)?;
    let params = read_params(query, &["from", "limit", "direction"])?;
    let (direction, from) = if params.backward {
        (Direction::Backward, params.from.unwrap_or(u64::MAX))
    } else {
        (Direction::Forward, params.from.unwrap_or(0))
    };
    let store = state.store.clone();
    let limit = params.limit;
    let events = blocking(move || store.read_stream(&stream, from, direction, limit)).await?;
    let next = match (direction, events.last()) {
        (Direction::Forward, Some(last)) => Some(last.version + 1),
        (Direction::Forward, None) => Some(from),
        (Direction::Backward, Some(last)) => last.version.checked_sub(1),
        (Direction::Backward, None) => None,
    };
    Ok(events_body(&events, next))
}

/// `GET /all?from=P&limit=N`.
pub(crate) async fn all(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let params = read_params(query, &["from", "limit"])?;
    read_positions(state.store, Filter::All, params).await
}

/// `GET /categories/{category}?from=P&limit=N`.
pub(crate) async fn category(
    State(state): State<AppState>,
    category: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let category = category
        .map(|Path(c)| c)
        .map_err(|r| ApiError::bad_request(format!("the path's category: {}", r.body_text())))?;
    let params = read_params(query, &["from", "limit"])?;
    read_positions(state.store, Filter::Category(category), params).await
}

/// A read by global position; `next` is the position after the last event, or the head the
/// read looked at when fewer than `limit` events came back (no event of the filter lies
/// between), so that a client paging a sparse category does not rescan.
async fn read_positions(store: EventStore, filter: Filter, params: ReadParams) -> Result<impl IntoResponse, ApiError> {
    let from = params.from.unwrap_or(0);
    let limit = params.limit;
    let (events, next) = blocking(move || store.read_from(&filter, from, limit)).await?;
    Ok(events_body(&events, Some(next)))
}

/// `GET /head`: `{"head": n}`, the position the next event will take.
pub(crate) async fn head(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"head": state.store.head()}))
}

/// `{"events": [...], "next": n|null}`, the events written as the store writes them.
fn events_body(events: &[RecordedEvent], next: Option<u64>) -> impl IntoResponse {
    use std::fmt::Write;
    let mut body = String::with_capacity(32 + events.iter().map(|e| 160 + e.data.len()).sum::<usize>());
    body.push_str("{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        e.write_json(&mut body);
    }
    body.push_str("],\"next\":");
    match next {
        Some(n) => {
            let _ = write!(body, "{n}");
        }
        None => body.push_str("null"),
    }
    body.push('}');
    ([(CONTENT_TYPE, "application/json")], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)], allowed: &[&str]) -> Result<ReadParams, String> {
        let pairs = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        read_params(Ok(Query(pairs)), allowed).map_err(|e| e.message)
    }

    #[test]
    fn read_parameters_have_defaults_and_limits() {
        assert_eq!(
            params(&[], &["from", "limit"]),
            Ok(ReadParams {
                from: None,
                limit: DEFAULT_READ_LIMIT,
                backward: false
            })
        );
        assert_eq!(
            params(
                &[("from", "7"), ("limit", "3"), ("direction", "backward")],
                &["from", "limit", "direction"]
            ),
            Ok(ReadParams {
                from: Some(7),
                limit: 3,
                backward: true
            })
        );
        assert_eq!(
            params(&[("limit", "0")], &["limit"]),
            Err("query parameter limit=\"0\" is not an integer from 1 to 10000".to_string())
        );
        assert_eq!(
            params(&[("from", "-1")], &["from"]),
            Err("query parameter from=\"-1\" is not a non-negative integer".to_string())
        );
        assert_eq!(
            params(&[("direction", "up")], &["from", "limit"]),
            Err("unknown query parameter \"direction\" (this route takes from, limit)".to_string())
        );
        assert_eq!(
            params(&[("from", "1"), ("from", "2")], &["from"]),
            Err("query parameter \"from\" is given twice".to_string())
        );
    }
}
