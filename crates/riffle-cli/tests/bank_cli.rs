//! `riffle example bank serve` end to end over HTTP: commands, read-your-writes under
//! concurrency, a SIGKILL in the middle of the traffic, and a read model rebuilt from zero;
//! the read model is always compared with an independent computation over the store's `$all`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::{json, Value};

fn start(data: &Path) -> common::HttpServer {
    common::HttpServer::start(&["example", "bank", "serve", "--data", data.to_str().expect("utf-8 path")])
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut r = r.expect("the request is answered");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {text:?} is not JSON: {e}")),
    )
}

fn post(agent: &ureq::Agent, url: &str, body: Value, key: Option<&str>) -> (u16, Value) {
    let mut req = agent.post(url).content_type("application/json");
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    answer(req.send(body.to_string()))
}

fn get(agent: &ureq::Agent, url: &str) -> (u16, Value) {
    answer(agent.get(url).call())
}

/// The account rows an independent fold of `$all` gives: id → (balance, version,
/// operations, volume); and whether any balance went below zero on the way.
fn oracle(agent: &ureq::Agent, server: &common::HttpServer) -> BTreeMap<String, (i64, u64, u64, i64)> {
    let mut rows: BTreeMap<String, (i64, u64, u64, i64)> = BTreeMap::new();
    let mut from = 0;
    loop {
        let (status, body) = get(agent, &server.url(&format!("/store/all?from={from}&limit=1000")));
        assert_eq!(status, 200, "{body}");
        let events = body["events"].as_array().expect("events").clone();
        if events.is_empty() {
            return rows;
        }
        for e in &events {
            let Some(id) = e["stream"].as_str().and_then(|s| s.strip_prefix("account-")) else {
                continue;
            };
            let row = rows.entry(id.to_string()).or_default();
            row.1 = e["version"].as_u64().expect("version");
            let amount = e["data"]["amount"].as_i64().unwrap_or(0);
            match e["type"].as_str().expect("type") {
                "Deposited" => {
                    row.0 += amount;
                    row.2 += 1;
                    row.3 += amount;
                }
                "Withdrawn" => {
                    row.0 -= amount;
                    row.2 += 1;
                    row.3 += amount;
                }
                _ => {}
            }
            assert!(row.0 >= 0, "account {id} below zero at {e}");
        }
        from = body["next"].as_u64().expect("next");
    }
}

/// The read model's account rows once it has passed `position`.
fn read_model(
    agent: &ureq::Agent,
    server: &common::HttpServer,
    ids: &[String],
    position: u64,
) -> BTreeMap<String, (i64, u64, u64, i64)> {
    ids.iter()
        .map(|id| {
            let (status, row) = get(
                agent,
                &server.url(&format!("/accounts/{id}?min_position={position}&timeout_ms=20000")),
            );
            assert_eq!(status, 200, "{row}");
            let n = |f: &str| row[f].as_i64().unwrap_or_else(|| panic!("{f} in {row}"));
            (
                id.clone(),
                (n("balance"), n("version") as u64, n("operations") as u64, n("volume")),
            )
        })
        .collect()
}

fn head(agent: &ureq::Agent, server: &common::HttpServer) -> u64 {
    let (status, body) = get(agent, &server.url("/store/head"));
    assert_eq!(status, 200);
    body["head"].as_u64().expect("head")
}

#[test]
fn commands_queries_and_transfers_over_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path());
    let a = agent();
    let (s, opened) = post(&a, &server.url("/accounts/ann/open"), json!({"owner": "Ann"}), None);
    assert_eq!(s, 201, "{opened}");
    assert_eq!(opened["balance"], 0);
    assert_eq!(
        post(&a, &server.url("/accounts/bob/open"), json!({"owner": "Bob"}), None).0,
        201
    );
    let (s, again) = post(&a, &server.url("/accounts/ann/open"), json!({"owner": "Ann"}), None);
    assert_eq!(
        (s, again["rejection"]["reason"].as_str()),
        (422, Some("already_open")),
        "{again}"
    );
    let (s, dep) = post(
        &a,
        &server.url("/accounts/ann/deposit"),
        json!({"amount": 1000}),
        Some("dep-1"),
    );
    assert_eq!((s, dep["balance"].as_i64()), (200, Some(1000)), "{dep}");
    // The same command again (a client's retry) changes nothing.
    let (s, retry) = post(
        &a,
        &server.url("/accounts/ann/deposit"),
        json!({"amount": 1000}),
        Some("dep-1"),
    );
    assert_eq!(
        (s, retry["position"].clone()),
        (200, dep["position"].clone()),
        "{retry}"
    );
    let (s, no) = post(&a, &server.url("/accounts/ann/withdraw"), json!({"amount": 5000}), None);
    assert_eq!(s, 422, "{no}");
    assert_eq!(
        no["rejection"],
        json!({"reason": "insufficient_funds", "balance": 1000, "amount": 5000})
    );
    let (s, t) = post(
        &a,
        &server.url("/transfers"),
        json!({"from": "ann", "to": "bob", "amount": 300, "id": "t1"}),
        None,
    );
    assert_eq!((s, t["status"].as_str()), (200, Some("completed")), "{t}");
    let (s, t2) = post(
        &a,
        &server.url("/transfers"),
        json!({"from": "ann", "to": "nobody", "amount": 100, "id": "t2"}),
        None,
    );
    assert_eq!(
        (s, t2["status"].as_str(), t2["refunded"].as_bool()),
        (200, Some("failed"), Some(true)),
        "{t2}"
    );
    let p = t2["position"].as_u64().expect("position");
    // Read-your-writes: the query waits for the transfer's position.
    let (s, ann) = get(&a, &server.url(&format!("/accounts/ann?min_position={p}")));
    assert_eq!(s, 200, "{ann}");
    assert_eq!(
        (ann["balance"].as_i64(), ann["owner"].as_str()),
        (Some(700), Some("Ann")),
        "{ann}"
    );
    assert!(ann["position"].as_u64().expect("position") >= p);
    let (_, bob) = get(&a, &server.url(&format!("/accounts/bob?min_position={p}")));
    assert_eq!(bob["balance"].as_i64(), Some(300), "{bob}");
    let (s, daily) = get(&a, &server.url(&format!("/accounts/ann/daily?min_position={p}")));
    assert_eq!(s, 200, "{daily}");
    let days = daily["days"].as_array().expect("days");
    let deposited: i64 = days.iter().map(|d| d["deposited"].as_i64().expect("deposited")).sum();
    let withdrawn: i64 = days.iter().map(|d| d["withdrawn"].as_i64().expect("withdrawn")).sum();
    // 1000 in, then the transfer out (300), then the failed transfer out (100) and its refund in.
    assert_eq!((deposited, withdrawn), (1100, 400), "{daily}");
    let (_, top) = get(&a, &server.url(&format!("/top-accounts?k=1&min_position={p}")));
    assert_eq!(top["accounts"].as_array().map(|v| v.len()), Some(1));
    assert_eq!(top["accounts"][0]["id"], "ann", "{top}");
    // A position the store has not reached: 504 with the projection's position.
    let (s, late) = get(&a, &server.url("/accounts/ann?min_position=1000000&timeout_ms=50"));
    assert_eq!(s, 504, "{late}");
    assert!(late["projection_position"].as_u64().is_some());
    assert_eq!(get(&a, &server.url("/accounts/zed")).0, 404);
    assert_eq!(
        post(&a, &server.url("/accounts/ann/deposit"), json!({"amount": "ten"}), None).0,
        400
    );
    assert_eq!(
        post(
            &a,
            &server.url("/accounts/bad%20id/deposit"),
            json!({"amount": 1}),
            None
        )
        .0,
        400
    );
    assert_eq!(get(&a, &server.url("/accounts/ann?min_position=x")).0, 400);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// Many clients, each reading its own write right after it, then a SIGKILL with traffic in
/// flight, a restart, and a rebuild of the read model from zero: every time, the read model
/// equals the fold of `$all`.
#[test]
fn read_your_writes_under_concurrency_and_exactly_once_across_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ids: Vec<String> = (0..6).map(|i| format!("acc{i}")).collect();
    let server = start(dir.path());
    let a = agent();
    for id in &ids {
        assert_eq!(
            post(
                &a,
                &server.url(&format!("/accounts/{id}/open")),
                json!({"owner": id}),
                None
            )
            .0,
            201
        );
        assert_eq!(
            post(
                &a,
                &server.url(&format!("/accounts/{id}/deposit")),
                json!({"amount": 500}),
                None
            )
            .0,
            200
        );
    }
    let traffic = |server: &common::HttpServer, rounds: usize, tolerate_errors: bool| {
        let threads = 6;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let base = server.base.clone();
                let ids = ids.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let a = agent();
                    barrier.wait();
                    for i in 0..rounds {
                        let id = &ids[(t + i) % ids.len()];
                        let (kind, amount) = if i % 2 == 0 {
                            ("withdraw", 90 + (i % 7) as i64 * 10)
                        } else {
                            ("deposit", 60)
                        };
                        let r = a
                            .post(format!("{base}/accounts/{id}/{kind}"))
                            .content_type("application/json")
                            .send(json!({ "amount": amount }).to_string());
                        let Ok(mut r) = r else {
                            assert!(tolerate_errors, "the bank stopped answering");
                            return;
                        };
                        let status = r.status().as_u16();
                        let body: Value = r
                            .body_mut()
                            .read_to_string()
                            .ok()
                            .and_then(|t| serde_json::from_str(&t).ok())
                            .unwrap_or(Value::Null);
                        if status == 422 {
                            continue;
                        }
                        assert_eq!(status, 200, "{body}");
                        // Read-your-writes: this client's query sees this client's command.
                        let p = body["position"].as_u64().expect("position");
                        let version = body["version"].as_u64().expect("version");
                        let q = a
                            .get(format!("{base}/accounts/{id}?min_position={p}&timeout_ms=20000"))
                            .call();
                        let Ok(mut q) = q else {
                            assert!(tolerate_errors, "the bank stopped answering");
                            return;
                        };
                        let row: Value = q
                            .body_mut()
                            .read_to_string()
                            .ok()
                            .and_then(|t| serde_json::from_str(&t).ok())
                            .unwrap_or(Value::Null);
                        assert!(
                            row["version"].as_u64().is_some_and(|v| v >= version),
                            "{row} does not show version {version}"
                        );
                    }
                })
            })
            .collect();
        handles
    };
    for h in traffic(&server, 40, false) {
        h.join().expect("a client");
    }
    let at = head(&a, &server) - 1;
    let model = read_model(&a, &server, &ids, at);
    assert_eq!(model, oracle(&a, &server));

    // A crash with traffic in flight.
    let clients = traffic(&server, 1000, true);
    std::thread::sleep(Duration::from_millis(700));
    server.kill();
    for h in clients {
        h.join().expect("a client");
    }
    let server = start(dir.path());
    let at = head(&a, &server) - 1;
    let after_crash = read_model(&a, &server, &ids, at);
    assert_eq!(
        after_crash,
        oracle(&a, &server),
        "the projection resumed with an event missing or applied twice"
    );
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");

    // The read model rebuilt from zero equals the live one.
    std::fs::remove_file(dir.path().join("readmodel.redb")).expect("remove the table");
    std::fs::remove_dir_all(dir.path().join("checkpoints")).expect("remove the checkpoints");
    let server = start(dir.path());
    let rebuilt = read_model(&a, &server, &ids, at);
    assert_eq!(rebuilt, after_crash);
}

/// With `--token`, every route but `/healthz` (the bank's and the store's under `/store`)
/// answers 401 without the bearer token, and works with it.
#[test]
fn a_token_guards_every_route_but_healthz() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::HttpServer::start(&[
        "example",
        "bank",
        "serve",
        "--data",
        dir.path().to_str().expect("utf-8 path"),
        "--token",
        "s3cret",
    ]);
    let a = agent();
    assert_eq!(get(&a, &server.url("/healthz")).0, 200);
    for path in ["/accounts/ann", "/top-accounts", "/store/all", "/store/head"] {
        let (status, body) = get(&a, &server.url(path));
        assert_eq!(status, 401, "{path}: {body}");
        let wrong = answer(a.get(server.url(path)).header("Authorization", "Bearer nope").call());
        assert_eq!(wrong.0, 401, "{path}: {}", wrong.1);
    }
    assert_eq!(
        post(&a, &server.url("/accounts/ann/open"), json!({"owner": "Ann"}), None).0,
        401
    );
    let opened = answer(
        a.post(server.url("/accounts/ann/open"))
            .header("Authorization", "Bearer s3cret")
            .content_type("application/json")
            .send(json!({"owner": "Ann"}).to_string()),
    );
    assert_eq!(opened.0, 201, "{}", opened.1);
    let p = opened.1["position"].as_u64().expect("position");
    let row = answer(
        a.get(server.url(&format!("/accounts/ann?min_position={p}")))
            .header("Authorization", "Bearer s3cret")
            .call(),
    );
    assert_eq!((row.0, row.1["owner"].as_str()), (200, Some("Ann")), "{}", row.1);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("s3cret"), "the token leaked into the log: {stderr}");
}
