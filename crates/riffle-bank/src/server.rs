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
/// under `/store`; with a `token`, every route but `GET /healthz` needs
/// `Authorization: Bearer <token>`.
pub fn router(
    store: EventStore,
    model: ReadModel,
    closing: tokio::sync::watch::Receiver<bool>,
    token: Option<&str>,
) -> Router {
    let bank = Arc::new(Bank {
        accounts: CommandHandler::new(store.clone()),
        transfers: Transfers::new(store.clone()),
        model,
    });
    let options = riffle_store_server::ServerOptions {
        token: token.map(str::to_string),
        ..riffle_store_server::ServerOptions::default()
    };
    let store_api = riffle_store_server::router(store, &options, closing);
    let bank_api = Router::new()
        .route("/accounts/{id}/open", post(open))
        .route("/accounts/{id}/deposit", post(deposit))
        .route("/accounts/{id}/withdraw", post(withdraw))
        .route("/transfers", post(transfer))
        .route("/accounts/{id}", get(account))
        .route("/accounts/{id}/daily", get(daily))
        .route("/top-accounts", get(top_accounts))
        .with_state(bank);
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .merge(riffle_store_server::require_token(bank_api, token))
        .nest("/store", store_api)
}

/// An answer other than success: a status and a JSON body that says why.
struct Refusal(StatusCode, Value);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(status, json!({ "error": message.into() }))
}

type Answer = Result<Response, Refusal>;

/// Runs blocking work (an fsync'd append, a wait for the projection) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request's task failed: {e}"),
        )
    })
}

fn command_id(headers: &HeaderMap) -> Result<Option<riffle_eventstore::Uuid>, Refusal> {
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

fn parse_body<T: serde::de::DeserializeOwned>(body: &axum::body::Bytes) -> Result<T, Refusal> {
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
) -> Answer {
    let body: OpenBody = parse_body(&body)?;
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
) -> Answer {
    let body: AmountBody = parse_body(&body)?;
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
) -> Answer {
    let body: AmountBody = parse_body(&body)?;
    let c = AccountCommand::Withdraw {
        amount: body.amount,
        transfer: None,
    };
    run_command(bank, id, c, headers, StatusCode::OK).await
}

fn valid_id(id: &str) -> Result<(), Refusal> {
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
) -> Answer {
    valid_id(&id)?;
    let command_id = command_id(&headers)?;
    let (id, done) = blocking(move || {
        let r = bank.accounts.handle(&id, &command, command_id);
        (id, r)
    })
    .await?;
    let h = done.map_err(command_error)?;
    let body = json!({
        "account": id,
        "balance": h.state.balance,
        "version": h.version,
        "position": h.append.map(|a| a.position),
    });
    Ok((ok, Json(body)).into_response())
}

fn command_error<R: std::fmt::Display + serde::Serialize>(e: CommandError<R>) -> Refusal {
    match e {
        CommandError::Rejected(r) => Refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": r.to_string(), "rejection": r }),
        ),
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

async fn transfer(State(bank): State<Arc<Bank>>, body: axum::body::Bytes) -> Answer {
    let body: TransferBody = parse_body(&body)?;
    for id in [&body.from, &body.to] {
        valid_id(id)?;
    }
    let id = body
        .id
        .clone()
        .unwrap_or_else(|| riffle_eventstore::Uuid::new_v4().simple().to_string());
    valid_id(&id)?;
    let request = TransferRequest {
        from: body.from,
        to: body.to,
        amount: body.amount,
    };
    match blocking(move || bank.transfers.transfer(&id, request)).await? {
        Ok(outcome) => Ok((StatusCode::OK, Json(outcome)).into_response()),
        Err(CommandError::Rejected(r)) => Err(error(StatusCode::UNPROCESSABLE_ENTITY, r.to_string())),
        Err(e) => Err(command_error(e)),
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
async fn wait_for(bank: &Arc<Bank>, q: &QueryParams) -> Result<(), Refusal> {
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
    Err(Refusal(
        StatusCode::GATEWAY_TIMEOUT,
        json!({
            "error": format!("the read model has not reached position {p} within {} ms", timeout.as_millis()),
            "projection_position": bank.model.position(),
        }),
    ))
}

fn query_params(
    raw: Result<Query<QueryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<QueryParams, Refusal> {
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
) -> Answer {
    let q = query_params(q)?;
    valid_id(&id)?;
    wait_for(&bank, &q).await?;
    match bank.model.get(&format!("account/{id}")) {
        Ok(Some(text)) => {
            let mut v = row(&text);
            if let Value::Object(m) = &mut v {
                m.insert("position".into(), json!(bank.model.position()));
            }
            Ok(Json(v).into_response())
        }
        Ok(None) => Err(Refusal(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no account {id:?}"), "projection_position": bank.model.position() }),
        )),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn daily(
    State(bank): State<Arc<Bank>>,
    Path(id): Path<String>,
    q: Result<Query<QueryParams>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let q = query_params(q)?;
    valid_id(&id)?;
    wait_for(&bank, &q).await?;
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
            Ok(Json(json!({ "account": id, "days": days, "position": bank.model.position() })).into_response())
        }
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn top_accounts(
    State(bank): State<Arc<Bank>>,
    q: Result<Query<QueryParams>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let q = query_params(q)?;
    wait_for(&bank, &q).await?;
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
            Ok(Json(json!({ "accounts": accounts, "position": bank.model.position() })).into_response())
        }
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}
