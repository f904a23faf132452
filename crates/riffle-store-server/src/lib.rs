//! The event store's HTTP/JSON server (issue 15, part 3): what a client in another process or
//! another language uses to append events with an expected version, to read streams,
//! categories and `$all`, and to follow them live over Server-Sent Events.
//!
//! The store ([`riffle_eventstore::EventStore`]) does the work; this crate turns its calls and
//! errors into HTTP. Appends go through [`EventStore::append_with`] and a oneshot channel, so a
//! request waiting for its fsync holds no tokio worker; reads run on the blocking pool.
//!
//! | route | does |
//! |---|---|
//! | `POST /streams/{stream}` | appends a JSON array of events (`Expected-Version` header) |
//! | `DELETE /streams/{stream}` | deletes the stream (its tombstone) |
//! | `GET /streams/{stream}?from&limit&direction` | reads a stream by version |
//! | `GET /all?from&limit`, `GET /categories/{c}?from&limit` | reads by global position |
//! | `GET /subscribe/{all, categories/{c}, streams/{s}}?from` | SSE: catch-up, then live |
//! | `GET /head` | `{"head": n}`: the position the next event will take |
//! | `GET /healthz` | `{"status": "ok"}`, without a token |
//!
//! Errors are JSON objects `{"error": "..."}` whose message says what was wrong and where
//! (which event of the array, which field, which header or query parameter).
//!
//! [`serve`] runs the server until a shutdown future completes; [`router`] gives the same
//! routes to a binary that mounts them beside its own.

mod append;
mod auth;
mod error;
mod read;
mod subscribe;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use riffle_eventstore::EventStore;
use tokio::sync::watch;

pub use error::ApiError;

/// The largest request body accepted unless [`ServerOptions::max_body_bytes`] says otherwise:
/// 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;

/// Events a read returns when its request gives no `limit`.
pub const DEFAULT_READ_LIMIT: usize = 1000;

/// The largest `limit` a read accepts (a larger one is a 400: page with `next`).
pub const MAX_READ_LIMIT: usize = 10_000;

/// How the server treats its requests.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// When set, every request but `GET /healthz` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// How often an idle subscription sends an SSE comment, so that a connection whose client
    /// went away is noticed (the write fails) and closed.
    pub heartbeat: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            token: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            heartbeat: Duration::from_secs(15),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    store: EventStore,
    /// Becomes `true` when the server shuts down: subscriptions end then, or the graceful
    /// shutdown would wait for them forever.
    closing: watch::Receiver<bool>,
    max_body_bytes: usize,
    heartbeat: Duration,
}

/// The store's routes (see the crate's documentation), with the token check and body limit
/// of `options`. Subscriptions end when `closing` becomes `true` (a dropped sender means
/// "never"): a server that shuts down gracefully sends `true` first, or its open
/// subscriptions keep it waiting.
pub fn router(store: EventStore, options: &ServerOptions, closing: watch::Receiver<bool>) -> Router {
    let state = AppState {
        store,
        closing,
        max_body_bytes: options.max_body_bytes,
        heartbeat: options.heartbeat,
    };
    let api = Router::new()
        .route(
            "/streams/{stream}",
            get(read::stream).post(append::append).delete(append::delete),
        )
        .route("/all", get(read::all))
        .route("/categories/{category}", get(read::category))
        .route("/head", get(read::head))
        .route("/subscribe/all", get(subscribe::all))
        .route("/subscribe/categories/{category}", get(subscribe::category))
        .route("/subscribe/streams/{stream}", get(subscribe::stream))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(state);
    let api = require_token(api, options.token.as_deref());
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .fallback(not_found)
}

/// `routes` with the bearer-token check of `--token` on every one of them (401 without
/// `Authorization: Bearer <token>`), or as they are without a token: for another binary that
/// mounts its own routes beside the store's (the bank example).
pub fn require_token(routes: Router, token: Option<&str>) -> Router {
    match token {
        Some(token) => routes.route_layer(axum::middleware::from_fn_with_state(
            Arc::<str>::from(token),
            auth::require_token,
        )),
        None => routes,
    }
}

/// Serves the store on `listener` until `shutdown` completes, then stops accepting
/// connections, ends the subscriptions, lets the requests in flight (appends waiting for
/// their fsync included) finish, and returns.
pub async fn serve(
    store: EventStore,
    listener: tokio::net::TcpListener,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing_tx, closing_rx) = watch::channel(false);
    let app = router(store, &options, closing_rx);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("event store server: shutting down");
            let _ = closing_tx.send(true);
        })
        .await
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM: the shutdown future of a server run
/// from the command line.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}
