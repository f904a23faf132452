//! `GET /subscribe/...`: Server-Sent Events, one per store event (`id:` its position, `data:`
//! its JSON), first the events already in the store from `from`, then new ones as they
//! become durable.
//!
//! Catch-up and live are one loop: read from the next position up to the head seen before the
//! read, then wait on [`EventStore::watch_head`] for the head to move. An event is sent only
//! at a position above the last one sent, and the next read starts right after it, so there
//! is neither a gap nor a duplicate at the switch. A reconnecting client may send
//! `Last-Event-ID` instead of `from`. Idle connections get an SSE comment every heartbeat, so
//! that a dead client is noticed when the write fails.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::Stream;
use riffle_eventstore::{EventStore, Filter, RecordedEvent};
use tokio::sync::watch;

use crate::read::{blocking, read_params};
use crate::{ApiError, AppState};

/// Events read from the store at once while catching up.
const CATCH_UP_BATCH: usize = 1000;

/// `GET /subscribe/all?from=P`.
pub(crate) async fn all(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    subscription(state, Filter::All, &headers, query)
}

/// `GET /subscribe/categories/{category}?from=P`.
pub(crate) async fn category(
    State(state): State<AppState>,
    category: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let category = category
        .map(|Path(c)| c)
        .map_err(|r| ApiError::bad_request(format!("the path's category: {}", r.body_text())))?;
    subscription(state, Filter::Category(category), &headers, query)
}

/// `GET /subscribe/streams/{stream}?from=P` (`from` is a global position, as for the others).
pub(crate) async fn stream(
    State(state): State<AppState>,
    stream: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let stream = crate::append::stream_name(stream)?;
    subscription(state, Filter::Stream(stream), &headers, query)
}

fn subscription(
    state: AppState,
    filter: Filter,
    headers: &HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let params = read_params(query, &["from"])?;
    let from = match params.from {
        Some(from) => from,
        None => match headers.get("last-event-id") {
            None => 0,
            Some(id) => id
                .to_str()
                .ok()
                .and_then(|id| id.trim().parse::<u64>().ok())
                .map(|last| last + 1)
                .ok_or_else(|| ApiError::bad_request("header Last-Event-ID is not a position"))?,
        },
    };
    let feed = Feed {
        head: state.store.watch_head(),
        store: state.store,
        filter,
        next: from,
        closing: Some(state.closing),
        pending: VecDeque::new(),
        failed: false,
    };
    Ok(Sse::new(events(feed)).keep_alive(KeepAlive::new().interval(state.heartbeat).text("heartbeat")))
}

/// A subscription's state between two events.
struct Feed {
    store: EventStore,
    filter: Filter,
    /// The position from which the next read starts: every event of the filter below it was
    /// sent or is in `pending`.
    next: u64,
    head: watch::Receiver<u64>,
    /// The server's shutdown flag; `None` once its sender is gone (it will never close).
    closing: Option<watch::Receiver<bool>>,
    /// Events read and not sent yet.
    pending: VecDeque<RecordedEvent>,
    /// A read failed: the error was sent, the stream ends.
    failed: bool,
}

fn events(feed: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(feed, |mut feed| async move {
        let event = next_event(&mut feed).await?;
        Some((Ok(event), feed))
    })
}

/// The next SSE event, or `None` when the subscription ends (shutdown, store gone, error
/// sent).
async fn next_event(feed: &mut Feed) -> Option<Event> {
    loop {
        if feed.failed {
            return None;
        }
        if let Some(e) = feed.pending.pop_front() {
            return Some(Event::default().id(e.position.to_string()).data(e.to_json()));
        }
        if feed.closing.as_ref().is_some_and(|c| *c.borrow()) {
            return None;
        }
        let head = *feed.head.borrow_and_update();
        if feed.next < head {
            let (store, filter, from) = (feed.store.clone(), feed.filter.clone(), feed.next);
            match blocking(move || store.read_from(&filter, from, CATCH_UP_BATCH)).await {
                Ok((events, next)) => {
                    // After the last event returned, or the head the read looked at: the
                    // filter admits no other event below it.
                    feed.next = next;
                    feed.pending.extend(events);
                }
                Err(e) => {
                    feed.failed = true;
                    let body = serde_json::json!({"error": e.message, "position": feed.next});
                    return Some(Event::default().event("error").data(body.to_string()));
                }
            }
            continue;
        }
        // Live: wait for the head to move or the server to close.
        match &mut feed.closing {
            Some(closing) => {
                tokio::select! {
                    changed = feed.head.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                    changed = closing.changed() => {
                        if changed.is_err() {
                            feed.closing = None;
                        }
                    }
                }
            }
            None => {
                if feed.head.changed().await.is_err() {
                    return None;
                }
            }
        }
    }
}
