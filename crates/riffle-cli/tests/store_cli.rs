//! `riffle store serve` end to end (issue 15, part 3): the real binary, spoken to over HTTP.
//! Appends and reads with exact expected answers, concurrent writers with exact expected
//! versions, a SIGKILL in the middle of appends (every acknowledged event survives, nothing
//! half-written appears), and malformed requests that must get a 4xx and leave the store as
//! it was.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);

/// A running `riffle store serve`; killed when dropped.
/// `riffle store serve` on `data`.
struct Server;

impl Server {
    fn start(data: &Path, extra: &[&str]) -> common::HttpServer {
        let mut args = vec!["store", "serve", "--data", data.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        common::HttpServer::start(&args)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// A response: status and JSON body.
fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut r = r.expect("the server answers");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().expect("a body");
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {status}: body {text:?} is not JSON: {e}"));
    (status, body)
}

fn post(agent: &ureq::Agent, url: &str, expected: &str, body: &Value) -> (u16, Value) {
    answer(
        agent
            .post(url)
            .header("Expected-Version", expected)
            .content_type("application/json")
            .send(body.to_string()),
    )
}

fn get(agent: &ureq::Agent, url: &str) -> (u16, Value) {
    answer(agent.get(url).call())
}

/// The events of a read, without their timestamps (compared separately).
fn events(body: &Value) -> Vec<Value> {
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            let mut e = e.clone();
            assert!(e["timestamp"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "{e}");
            e.as_object_mut().expect("object").remove("timestamp");
            e
        })
        .collect()
}

/// Every event of `$all`, paging with `next`.
fn read_all(agent: &ureq::Agent, server: &common::HttpServer) -> Vec<Value> {
    let mut all = Vec::new();
    let mut from = 0;
    loop {
        let (status, body) = get(agent, &server.url(&format!("/all?from={from}&limit=500")));
        assert_eq!(status, 200, "{body}");
        let page = body["events"].as_array().expect("events").clone();
        let next = body["next"].as_u64().expect("next");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
        from = next;
    }
}

const ID: [&str; 3] = [
    "00000000-0000-4000-8000-000000000001",
    "00000000-0000-4000-8000-000000000002",
    "00000000-0000-4000-8000-000000000003",
];

#[test]
fn appends_and_reads_round_trip_over_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);
    let http = agent();
    let opened = json!([
        {"id": ID[0], "type": "Opened", "data": {"owner": "ann"}},
        {"id": ID[1], "type": "Deposited", "data": {"amount": 5}, "metadata": {"by": "teller"}},
    ]);
    let first = (201, json!({"first_version": 0, "last_version": 1, "position": 1}));
    assert_eq!(
        post(&http, &server.url("/streams/account-1"), "no-stream", &opened),
        first
    );
    assert_eq!(
        post(
            &http,
            &server.url("/streams/account-2"),
            "exists",
            &json!([{"type": "Opened", "data": {}}])
        ),
        (409, json!({"error": "wrong expected version", "current_version": null}))
    );
    assert_eq!(
        post(
            &http,
            &server.url("/streams/account-2"),
            "no-stream",
            &json!([{"id": ID[2], "type": "Opened", "data": {"owner": "bob"}}])
        ),
        (201, json!({"first_version": 0, "last_version": 0, "position": 2}))
    );
    assert_eq!(
        post(
            &http,
            &server.url("/streams/ledger-1"),
            "any",
            &json!([{"type": "Noted", "data": [1, 2]}])
        ),
        (201, json!({"first_version": 0, "last_version": 0, "position": 3}))
    );
    assert_eq!(
        post(
            &http,
            &server.url("/streams/account-1"),
            "0",
            &json!([{"type": "Deposited", "data": {"amount": 1}}])
        ),
        (409, json!({"error": "wrong expected version", "current_version": 1}))
    );
    // A retry of the first append (same ids, same stream) is answered as the first was, even
    // though the stream no longer meets its expectation; nothing is written.
    assert_eq!(
        post(&http, &server.url("/streams/account-1"), "no-stream", &opened),
        first
    );
    assert_eq!(get(&http, &server.url("/head")), (200, json!({"head": 4})));

    let ann_0 = json!({"stream": "account-1", "id": ID[0], "type": "Opened", "data": {"owner": "ann"},
        "metadata": {}, "version": 0, "position": 0});
    let ann_1 = json!({"stream": "account-1", "id": ID[1], "type": "Deposited", "data": {"amount": 5},
        "metadata": {"by": "teller"}, "version": 1, "position": 1});
    let (status, body) = get(&http, &server.url("/streams/account-1"));
    assert_eq!(
        (status, events(&body), &body["next"]),
        (200, vec![ann_0.clone(), ann_1.clone()], &json!(2))
    );
    let (_, body) = get(&http, &server.url("/streams/account-1?direction=backward&limit=1"));
    assert_eq!((events(&body), &body["next"]), (vec![ann_1.clone()], &json!(0)));
    let (_, body) = get(&http, &server.url("/streams/account-1?direction=backward&from=0"));
    assert_eq!((events(&body), &body["next"]), (vec![ann_0.clone()], &Value::Null));
    let (_, body) = get(&http, &server.url("/streams/account-9"));
    assert_eq!((events(&body), &body["next"]), (vec![], &json!(0)));

    let (_, body) = get(&http, &server.url("/all?limit=2"));
    assert_eq!(
        (events(&body), &body["next"]),
        (vec![ann_0.clone(), ann_1.clone()], &json!(2))
    );
    let (_, body) = get(&http, &server.url("/all?from=2"));
    let positions: Vec<u64> = events(&body)
        .iter()
        .map(|e| e["position"].as_u64().expect("position"))
        .collect();
    assert_eq!((positions, &body["next"]), (vec![2, 3], &json!(4)));
    let (_, body) = get(&http, &server.url("/categories/account"));
    let streams: Vec<(&str, u64)> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["stream"].as_str().expect("stream"),
                e["position"].as_u64().expect("position"),
            )
        })
        .collect();
    assert_eq!(
        (streams, &body["next"]),
        (vec![("account-1", 0), ("account-1", 1), ("account-2", 2)], &json!(4))
    );

    // Deletion: the tombstone takes the next version; the stream is gone for reads and appends.
    let deleted = answer(
        http.delete(server.url("/streams/ledger-1"))
            .header("Expected-Version", "0")
            .call(),
    );
    assert_eq!(
        deleted,
        (200, json!({"first_version": 1, "last_version": 1, "position": 4}))
    );
    assert_eq!(get(&http, &server.url("/streams/ledger-1")).0, 410);
    assert_eq!(
        post(
            &http,
            &server.url("/streams/ledger-1"),
            "any",
            &json!([{"type": "Noted", "data": 1}])
        )
        .0,
        410
    );

    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
}

#[test]
fn concurrent_writers_with_exact_versions_lose_no_update() {
    const THREADS: usize = 8;
    const DEPOSITS: usize = 50;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Arc::new(Server::start(dir.path(), &[]));
    let conflicts = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (server, conflicts) = (Arc::clone(&server), Arc::clone(&conflicts));
            std::thread::spawn(move || {
                let http = agent();
                let url = server.url("/streams/account-c");
                let mut won = Vec::new();
                for d in 0..DEPOSITS {
                    // Read the version, append at it, and on a conflict retry at the version
                    // the 409 reports.
                    let (_, last) = get(&http, &server.url("/streams/account-c?direction=backward&limit=1"));
                    let mut expected = match last["events"].as_array().and_then(|e| e.first()) {
                        Some(e) => e["version"].as_u64().expect("version").to_string(),
                        None => "no-stream".to_string(),
                    };
                    loop {
                        let deposit = json!([{"type": "Deposited", "data": {"writer": t, "n": d}}]);
                        let (status, body) = post(&http, &url, &expected, &deposit);
                        match status {
                            201 => {
                                won.push(body["last_version"].as_u64().expect("version"));
                                break;
                            }
                            409 => {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                                expected = body["current_version"].as_u64().expect("a current version").to_string();
                            }
                            _ => panic!("append: {status} {body}"),
                        }
                    }
                }
                won
            })
        })
        .collect();
    let mut versions: Vec<u64> = writers.into_iter().flat_map(|w| w.join().expect("writer")).collect();
    versions.sort_unstable();
    let total = THREADS * DEPOSITS;
    assert_eq!(
        versions,
        (0..total as u64).collect::<Vec<_>>(),
        "each version won exactly once"
    );
    let http = agent();
    let (_, body) = get(&http, &server.url("/streams/account-c?limit=10000"));
    let stream = body["events"].as_array().expect("events");
    assert_eq!(stream.len(), total);
    let mut deposits: Vec<(u64, u64)> = stream
        .iter()
        .map(|e| {
            (
                e["data"]["writer"].as_u64().expect("writer"),
                e["data"]["n"].as_u64().expect("n"),
            )
        })
        .collect();
    deposits.sort_unstable();
    let want: Vec<(u64, u64)> = (0..THREADS as u64)
        .flat_map(|t| (0..DEPOSITS as u64).map(move |d| (t, d)))
        .collect();
    assert_eq!(deposits, want, "every deposit once, none lost");
    eprintln!("{} conflicts retried", conflicts.load(Ordering::Relaxed));
}

/// An append a client made: its event ids and, if acknowledged, the position of its last
/// event.
struct Attempt {
    ids: Vec<String>,
    acked: Option<u64>,
}

#[test]
fn acknowledged_appends_survive_a_sigkill() {
    const CLIENTS: usize = 4;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);
    let acks = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, acks) = (server.url(&format!("/streams/kill-{c}")), Arc::clone(&acks));
            std::thread::spawn(move || {
                let http = agent();
                let mut attempts = Vec::new();
                for a in 0.. {
                    let ids: Vec<String> = (0..1 + a % 3)
                        .map(|i| format!("{c:08x}-0000-4000-8000-{a:08x}{i:04x}"))
                        .collect();
                    let body: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"id": id, "type": "Appended", "data": {"client": c, "attempt": a}}))
                        .collect();
                    let sent = http
                        .post(&url)
                        .content_type("application/json")
                        .send(Value::Array(body).to_string());
                    let acked = match sent {
                        Ok(mut r) if r.status().as_u16() == 201 => {
                            let body: Value =
                                serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json");
                            Some(body["position"].as_u64().expect("position"))
                        }
                        _ => None,
                    };
                    let stop = acked.is_none();
                    attempts.push(Attempt { ids, acked });
                    if stop {
                        return attempts;
                    }
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                attempts
            })
        })
        .collect();
    let start = Instant::now();
    while acks.load(Ordering::Relaxed) < 300 {
        assert!(
            start.elapsed() < DEADLINE,
            "only {} appends acknowledged",
            acks.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    let attempts: Vec<Attempt> = clients.into_iter().flat_map(|c| c.join().expect("client")).collect();

    let server = Server::start(dir.path(), &[]);
    let http = agent();
    let all = read_all(&http, &server);
    let positions: Vec<u64> = all.iter().map(|e| e["position"].as_u64().expect("position")).collect();
    assert_eq!(positions, (0..all.len() as u64).collect::<Vec<_>>(), "dense positions");
    let at: HashMap<&str, u64> = all
        .iter()
        .map(|e| (e["id"].as_str().expect("id"), e["position"].as_u64().expect("position")))
        .collect();
    assert_eq!(at.len(), all.len(), "no event id twice");
    let mut acked = 0;
    for attempt in &attempts {
        let found: Vec<Option<u64>> = attempt.ids.iter().map(|id| at.get(id.as_str()).copied()).collect();
        match attempt.acked {
            Some(last) => {
                acked += 1;
                let n = attempt.ids.len() as u64;
                let want: Vec<Option<u64>> = (last + 1 - n..=last).map(Some).collect();
                assert_eq!(found, want, "acknowledged append {:?}", attempt.ids);
            }
            None => assert!(
                found.iter().all(Option::is_some) || found.iter().all(Option::is_none),
                "an unacknowledged append is half there: {found:?}"
            ),
        }
    }
    assert!(acked >= 300, "{acked} acknowledged");
    eprintln!(
        "{acked} of {} appends acknowledged before the SIGKILL, {} events after the restart",
        attempts.len(),
        all.len()
    );

    // A subscription from 0 replays exactly what /all reads.
    let mut sse = agent()
        .get(server.url("/subscribe/all?from=0"))
        .call()
        .expect("subscribe")
        .into_body()
        .into_reader();
    let mut lines = BufReader::new(&mut sse).lines();
    let mut replayed = Vec::new();
    let mut last_id = None;
    while replayed.len() < all.len() {
        let line = lines.next().expect("an SSE line").expect("read SSE");
        if let Some(id) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:")) {
            last_id = Some(id.trim().parse::<u64>().expect("id is a position"));
        } else if let Some(data) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
            let event: Value = serde_json::from_str(data).expect("event JSON");
            assert_eq!(Some(event["position"].as_u64().expect("position")), last_id);
            replayed.push(event);
        }
    }
    assert_eq!(replayed, all);
}

/// Sends `request` as it is on a new connection; the status and body of the answer.
fn raw(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    // The server may answer (413) and close before it read a huge body: a failed write is
    // not the test failing, the answer is what counts.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

fn request(method: &str, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

#[test]
fn malformed_requests_get_a_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &["--token", "s3cret", "--max-body-bytes", "65536"]);
    let auth = "Authorization: Bearer s3cret";
    let json_type = "Content-Type: application/json";
    let good = br#"[{"type":"Noted","data":{"n":1}}]"#;
    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        ("no token", request("POST", "/streams/a-1", &[json_type], good), 401, Some("missing bearer token")),
        ("wrong token", request("GET", "/all", &["Authorization: Bearer nope"], b""), 401, Some("wrong bearer token")),
        ("not bearer", request("GET", "/head", &["Authorization: Basic czNjcmV0"], b""), 401, None),
        ("malformed JSON", request("POST", "/streams/a-1", &[auth, json_type], b"[{\"type\":"), 400, Some("the body is not a JSON array of events")),
        ("invalid UTF-8", request("POST", "/streams/a-1", &[auth, json_type], b"[\"\xff\xfe\"]"), 400, Some("the body is not UTF-8 (invalid byte at offset 2)")),
        ("huge body", request("POST", "/streams/a-1", &[auth, json_type], &vec![b' '; 200_000]), 413, None),
        ("bad Expected-Version", request("POST", "/streams/a-1", &[auth, json_type, "Expected-Version: seven"], good), 400, Some("header Expected-Version: expected version \\\"seven\\\" is none of any, no-stream, exists or a version number")),
        ("missing type", request("POST", "/streams/a-1", &[auth, json_type], br#"[{"type":"A","data":1},{"data":2}]"#), 400, Some("event 1: field \\\"type\\\" is missing")),
        ("empty array", request("POST", "/streams/a-1", &[auth, json_type], b"[]"), 400, Some("an append needs at least one event")),
        ("system type", request("POST", "/streams/a-1", &[auth, json_type], br#"[{"type":"$streamDeleted","data":1}]"#), 400, Some("event 0: types starting with '$' are the store's own")),
        ("unknown route", request("GET", "/nowhere", &[auth], b""), 404, Some("no route for GET /nowhere")),
        ("bad from", request("GET", "/all?from=abc", &[auth], b""), 400, Some("query parameter from=\\\"abc\\\" is not a non-negative integer")),
        ("limit 0", request("GET", "/categories/a?limit=0", &[auth], b""), 400, Some("limit=\\\"0\\\" is not an integer from 1 to 10000")),
        ("bad direction", request("GET", "/streams/a-1?direction=up", &[auth], b""), 400, Some("direction=\\\"up\\\" is neither forward nor backward")),
        ("unknown parameter", request("GET", "/subscribe/all?since=3", &[auth], b""), 400, Some("unknown query parameter \\\"since\\\"")),
        ("bad percent-encoding", request("GET", "/streams/%FF%FE", &[auth], b""), 400, None),
        ("wrong method", request("PUT", "/streams/a-1", &[auth], good), 405, None),
        ("garbage request line", b"HELLO\r\n\r\n".to_vec(), 400, None),
    ];
    let valid = request("POST", "/streams/a-1", &[auth, json_type], good);
    let mut appended = 0;
    for (what, bytes, status, message) in &cases {
        let (got, body) = raw(&server.addr, bytes);
        assert_eq!(got, *status, "{what}: {body}");
        if let Some(message) = message {
            assert!(body.contains(message), "{what}: {body}");
        }
        // A valid append between the bad ones: the server is up and still appends.
        let (got, body) = raw(&server.addr, &valid);
        assert_eq!(got, 201, "after {what}: {body}");
        appended += 1;
    }
    assert_eq!(raw(&server.addr, &request("GET", "/healthz", &[], b"")).0, 200);
    let (_, body) = raw(&server.addr, &request("GET", "/all", &[auth], b""));
    let all: Value = serde_json::from_str(&body).expect("json");
    let all = events(&all);
    assert_eq!(all.len(), appended);
    for (v, e) in all.iter().enumerate() {
        // ids are the store's own (random); everything else is known.
        let mut e = e.clone();
        assert!(e["id"].as_str().is_some_and(|id| id.len() == 36), "{e}");
        e["id"] = Value::Null;
        assert_eq!(
            e,
            json!({"stream": "a-1", "id": null, "type": "Noted", "data": {"n": 1}, "metadata": {},
                "version": v, "position": v})
        );
    }
    let ids: HashSet<&str> = all.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), appended);
}

/// A riffle job in another process reads the store that `riffle store serve` writes
/// (`store://DIR`, opened read-only and followed): every event, once, as the server has it.
#[test]
fn a_job_in_another_process_reads_the_store_the_server_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);
    let agent = agent();
    for i in 0..300 {
        let body = json!([{ "type": "Tick", "data": { "n": i } }]);
        let (status, answer) = post(&agent, &server.url(&format!("/streams/clock-{}", i % 7)), "any", &body);
        assert_eq!(status, 201, "{answer}");
    }
    let expected = read_all(&agent, &server);
    assert_eq!(expected.len(), 300);
    // Each event's JSON line has no whitespace, so the word count sees one word per event.
    let source = format!("store://{}?follow=false", dir.path().display());
    let out = common::ok_stdout(common::run(&[
        "wordcount",
        "--source",
        &source,
        "--format",
        "json",
        "-w",
        "2",
    ]));
    let mut got: Vec<Value> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            assert_eq!(v["count"], 1, "{l}");
            serde_json::from_str(v["word"].as_str().expect("word")).expect("the word is an event's JSON")
        })
        .collect();
    got.sort_by_key(|e| e["position"].as_u64());
    assert_eq!(got, expected);
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}
