//! `riffle example bank serve`: the bank over HTTP. Commands go to the event store through
//! the aggregates ([`crate::account`], [`crate::transfer`]); queries read the projection's
//! table ([`crate::projection`]), waiting for `min_position` when a client must see its own
//! write. The store's own API is mounted under `/store` for inspection.
//!
//! | request | answer |
//! |---|---|
//! | `POST /accounts/{id}/open` `{"owner"}` | 201 `{"account","balance","version","position"}` |
//! | `POST /accounts/{id}/deposit` `{"amount"}` | 200, same shape |
//! | `POST /accounts/{id}/withdraw` `{"amount"}` | 200; 422 `{"error","rejection":{"reason":"insufficient_funds",…}}` |
//! | `POST /transfers` `{"from","to","amount","id"?}` | 200 `{"transfer","status","reason"?,"refunded","position"}` |
//! | `GET /accounts/{id}?min_position=P` | 200 the account's row and `position`; 404; 504 `{"error","projection_position"}` |
//! | `GET /accounts/{id}/daily?min_position=P` | 200 `{"days":[{"day","deposited","withdrawn","operations"}],"position"}` |
//! | `GET /top-accounts?k=N&min_position=P` | 200 `{"accounts":[row…],"position"}` by volume |
//!
//! Amounts are integer cents. A command with an `Idempotency-Key` header is carried out once
//! however often it is sent (its events' ids derive from the key).

use crate::account::{Account, AccountCommand};
use crate::name_id;
use crate::transfer::{TransferRequest, Transfers};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use riffle_connectors::readmodel::ReadModel;
use riffle_eventstore::cqrs::{CommandError, CommandHandler};
use riffle_eventstore::EventStore;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The longest a query waits for `min_position` unless it says otherwise (`timeout_ms`).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

struct Bank {
    accounts: CommandHandler<Account>,
    transfers: Transfers,
    model: ReadModel,
}

/// The bank's routes over `store` (commands) and `model` (queries), with the store's API
/// under `/store`.
pub fn router(store: EventStore, model: ReadModel, closing: tokio::sync::watch::Receiver<bool>) -> Router {
    let bank = Arc::new(Bank {
        accounts: CommandHandler::new(store.clone()),
        transfers: Transfers::new(store.clone()),
        model,
    });
    let store_api = riffle_store_server::router(store, &riffle_store_server::ServerOptions::default(), closing);
    Router::new()
        .route("/accounts/{id}/open", post(open))
        .route("/accounts/{id}/deposit", post(deposit))
        .route("/accounts/{id}/withdraw", post(withdraw))
        .route("/transfers", post(transfer))
        .route("/accounts/{id}", get(account))
        .route("/accounts/{id}/daily", get(daily))
        .route("/top-accounts", get(top_accounts))
        .with_state(bank)
        .nest("/store", store_api)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Runs blocking work (an fsync'd append, a wait for the projection) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request's task failed: {e}"),
        )
    })
}

fn command_id(headers: &HeaderMap) -> Result<Option<riffle_eventstore::Uuid>, Response> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(key) if !key.trim().is_empty() => Ok(Some(name_id(&format!("command/{}", key.trim())))),
            _ => Err(error(
                StatusCode::BAD_REQUEST,
                "the Idempotency-Key header must be non-empty visible ASCII",
            )),
        },
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &axum::body::Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not the JSON expected: {e}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    owner: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountBody {
    amount: i64,
}

async fn open(
    State(bank): State<Arc<Bank>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: OpenBody = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    run_command(
        bank,
        id,
        AccountCommand::Open { owner: body.owner },
        headers,
        StatusCode::CREATED,
    )
    .await
}

async fn deposit(
    State(bank): State<Arc<Bank>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: AmountBody = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let c = AccountCommand::Deposit {
        amount: body.amount,
        transfer: None,
    };
    run_command(bank, id, c, headers, StatusCode::OK).await
}

async fn withdraw(
    State(bank): State<Arc<Bank>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: AmountBody = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let c = AccountCommand::Withdraw {
        amount: body.amount,
        transfer: None,
    };
    run_command(bank, id, c, headers, StatusCode::OK).await
}

fn valid_id(id: &str) -> Result<(), Response> {
    if id.is_empty() || id.len() > 200 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("account id {id:?}: use 1 to 200 letters, digits, '_' or '.'"),
        ));
    }
    Ok(())
}

async fn run_command(
    bank: Arc<Bank>,
    id: String,
    command: AccountCommand,
    headers: HeaderMap,
    ok: StatusCode,
) -> Response {
    if let Err(r) = valid_id(&id) {
        return r;
    }
    let command_id = match command_id(&headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let done = blocking(move || {
        let r = bank.accounts.handle(&id, &command, command_id);
        (id, r)
    })
    .await;
    match done {
        Err(r) => r,
        Ok((id, Ok(h))) => (
            ok,
            Json(json!({
                "account": id,
                "balance": h.state.balance,
                "version": h.version,
                "position": h.append.map(|a| a.position),
            })),
        )
            .into_response(),
        Ok((_, Err(e))) => command_error(e),
    }
}

fn command_error<R: std::fmt::Display + serde::Serialize>(e: CommandError<R>) -> Response {
    match e {
        CommandError::Rejected(r) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": r.to_string(), "rejection": r })),
        )
            .into_response(),
        CommandError::Contended { .. } => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        CommandError::Store(s) => error(StatusCode::INTERNAL_SERVER_ERROR, s.to_string()),
        CommandError::Decode(d) => error(StatusCode::INTERNAL_SERVER_ERROR, d),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    from: String,
    to: String,
    amount: i64,
    #[serde(default)]
    id: Option<String>,
}

async fn transfer(State(bank): State<Arc<Bank>>, body: axum::body::Bytes) -> Response {
    let body: TransferBody = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    for id in [&body.from, &body.to] {
        if let Err(r) = valid_id(id) {
            return r;
        }
    }
    let id = body
        .id
        .clone()
        .unwrap_or_else(|| riffle_eventstore::Uuid::new_v4().simple().to_string());
    if let Err(r) = valid_id(&id) {
        return r;
    }
    let request = TransferRequest {
        from: body.from,
        to: body.to,
        amount: body.amount,
    };
    match blocking(move || bank.transfers.transfer(&id, request)).await {
        Err(r) => r,
        Ok(Ok(outcome)) => (StatusCode::OK, Json(outcome)).into_response(),
        Ok(Err(CommandError::Rejected(r))) => error(StatusCode::UNPROCESSABLE_ENTITY, r.to_string()),
        Ok(Err(e)) => command_error::<String>(match e {
            CommandError::Rejected(r) => CommandError::Rejected(r.0),
            CommandError::Store(s) => CommandError::Store(s),
            CommandError::Decode(d) => CommandError::Decode(d),
            CommandError::Contended { stream, attempts } => CommandError::Contended { stream, attempts },
        }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryParams {
    #[serde(default)]
    min_position: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    k: Option<usize>,
}

/// Waits (off the async workers) until the projection passed `min_position`; a 504 with the
/// projection's position when it did not in time.
async fn wait_for(bank: &Arc<Bank>, q: &QueryParams) -> Result<(), Response> {
    let Some(p) = q.min_position else { return Ok(()) };
    let timeout = q
        .timeout_ms
        .map_or(DEFAULT_QUERY_TIMEOUT, Duration::from_millis)
        .min(Duration::from_secs(60));
    let b = Arc::clone(bank);
    let reached = blocking(move || b.model.wait_for_position(p, timeout)).await?;
    if reached {
        return Ok(());
    }
    Err((
        StatusCode::GATEWAY_TIMEOUT,
        Json(json!({
            "error": format!("the read model has not reached position {p} within {} ms", timeout.as_millis()),
            "projection_position": bank.model.position(),
        })),
    )
        .into_response())
}

fn query_params(
    raw: Result<Query<QueryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<QueryParams, Response> {
    raw.map(|Query(q)| q)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad query parameters: {e}")))
}

fn row(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

async fn account(
    State(bank): State<Arc<Bank>>,
    Path(id): Path<String>,
    q: Result<Query<QueryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query_params(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Err(r) = valid_id(&id) {
        return r;
    }
    if let Err(r) = wait_for(&bank, &q).await {
        return r;
    }
    match bank.model.get(&format!("account/{id}")) {
        Ok(Some(text)) => {
            let mut v = row(&text);
            if let Value::Object(m) = &mut v {
                m.insert("position".into(), json!(bank.model.position()));
            }
            Json(v).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no account {id:?}"), "projection_position": bank.model.position() })),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn daily(
    State(bank): State<Arc<Bank>>,
    Path(id): Path<String>,
    q: Result<Query<QueryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query_params(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Err(r) = valid_id(&id) {
        return r;
    }
    if let Err(r) = wait_for(&bank, &q).await {
        return r;
    }
    match bank.model.scan(&format!("daily/{id}/")) {
        Ok(rows) => {
            let days: Vec<Value> = rows
                .iter()
                .map(|(_, v)| {
                    let mut v = row(v);
                    if let Value::Object(m) = &mut v {
                        m.remove("id");
                    }
                    v
                })
                .collect();
            Json(json!({ "account": id, "days": days, "position": bank.model.position() })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn top_accounts(
    State(bank): State<Arc<Bank>>,
    q: Result<Query<QueryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query_params(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Err(r) = wait_for(&bank, &q).await {
        return r;
    }
    let k = q.k.unwrap_or(10).clamp(1, 1000);
    match bank.model.scan("account/") {
        Ok(rows) => {
            // Exact top-k of the read model's rows by volume (ties by id): the table is the
            // bank's accounts, small enough to rank at query time.
            let mut accounts: Vec<Value> = rows.iter().map(|(_, v)| row(v)).collect();
            accounts.sort_by(|a, b| {
                let volume = |v: &Value| v["volume"].as_i64().unwrap_or(0);
                volume(b)
                    .cmp(&volume(a))
                    .then_with(|| a["id"].as_str().unwrap_or("").cmp(b["id"].as_str().unwrap_or("")))
            });
            accounts.truncate(k);
            Json(json!({ "accounts": accounts, "position": bank.model.position() })).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
