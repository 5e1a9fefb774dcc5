//! The hostile-input table's sections for what is measured before a request runs: nesting
//! (lists, objects, selections, variables), fragment fan-out and alias counts, over HTTP and
//! WebSocket, and the token's identity taken exactly. Each case gets its exact answer, within
//! a bound, and the server keeps answering others afterwards.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws::{Protocol, Subscription};

/// Longest any of these refusals may take to arrive (a bound on the answer, not a benchmark:
/// the figures measured are printed).
const REFUSED_WITHIN: Duration = Duration::from_secs(2);

const DEPTHS: [usize; 4] = [100, 1_000, 10_000, 100_000];

/// Documents nested `depth` levels deep, each in one way.
fn nested_documents(depth: usize) -> Vec<(String, String)> {
    vec![
        (
            format!("list literal {depth} deep"),
            format!(
                "{{ events(x: {}1{}) {{ id }} }}",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
        ),
        (
            format!("object literal {depth} deep"),
            format!(
                "{{ events(x: {}1{}) {{ id }} }}",
                "{a: ".repeat(depth),
                "}".repeat(depth)
            ),
        ),
        (
            format!("selection sets {depth} deep"),
            format!(
                "{{ events {}id{} }}",
                "{e ".repeat(depth),
                "}".repeat(depth)
            ),
        ),
        (
            format!("holdSeats(seatIds:) {depth} deep"),
            format!(
                "mutation {{ holdSeats(eventId: \"1\", seatIds: {}\"s\"{}) {{ id }} }}",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
        ),
    ]
}

fn nested_json(depth: usize) -> Value {
    // Built as text: serde_json's own values would recurse when dropped.
    let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    Value::String(text)
}

/// POSTs raw bytes as a GraphQL request; returns status, body and time taken.
async fn post_raw(app: &TestApp, token: Option<&str>, body: String) -> (u16, Value, Duration) {
    let started = Instant::now();
    let mut request = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("an answer, not a reset");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, started.elapsed())
}

fn assert_refused(what: &str, status: u16, body: &Value, took: Duration, want_status: u16) {
    assert_eq!(status, want_status, "{what}: {body}");
    assert_eq!(
        error_code(body).as_deref(),
        Some("BAD_USER_INPUT"),
        "{what}: {body}"
    );
    assert!(took < REFUSED_WITHIN, "{what}: answered after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nesting_is_refused_before_anything_recurses_over_http() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let alice = app.token("alice");
    let mut slowest = Duration::ZERO;
    for depth in DEPTHS {
        for (what, query) in nested_documents(depth) {
            let body = json!({"query": query}).to_string();
            let (status, answer, took) = post_raw(&app, Some(&alice), body).await;
            assert_refused(&what, status, &answer, took, 200);
            slowest = slowest.max(took);
        }
        // Variables nested as deep: refused as a malformed body, before any parser recurses.
        let Value::String(deep) = nested_json(depth) else {
            unreachable!()
        };
        let body = format!(
            r#"{{"query": "query($v: [ID!]) {{ events {{ id }} }}", "variables": {{"v": {deep}}}}}"#
        );
        let (status, answer, took) = post_raw(&app, None, body).await;
        assert_refused(
            &format!("variables {depth} deep"),
            status,
            &answer,
            took,
            400,
        );
        // A batch whose second operation nests too deeply: that one is refused.
        let batch = json!([
            {"query": "{ events { id } }"},
            {"query": nested_documents(depth)[0].1},
        ]);
        let (status, answer, _) = post_raw(&app, None, batch.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer[0]["errors"].is_null(), "{answer}");
        assert_eq!(
            answer[1]["errors"][0]["extensions"]["code"],
            "BAD_USER_INPUT"
        );
        assert_healthy(&app).await;
    }
    println!("nesting over HTTP: slowest refusal {slowest:?}");
    // Nesting within the limit still works.
    let (event_id, _) = app.create_event(1, 2).await;
    let shallow =
        "query($e: ID!) { seatMap(eventId: $e) { event { id name } seats { id status } } }";
    let body = app.gql(None, shallow, json!({"e": event_id})).await;
    assert!(body["errors"].is_null(), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nesting_is_refused_over_websocket() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut slowest = Duration::ZERO;
    for depth in DEPTHS {
        let mut cases: Vec<(String, String, Value)> = nested_documents(depth)
            .into_iter()
            .map(|(what, query)| {
                (
                    what,
                    query.replacen("{ events", "subscription { seatChanges", 1),
                    json!({}),
                )
            })
            .collect();
        cases.push((
            format!("subscription selections {depth} deep"),
            format!(
                "subscription {{ seatChanges(eventId: \"1\") {}{}}}",
                "{s ".repeat(depth),
                "}".repeat(depth)
            ),
            json!({}),
        ));
        for (what, query, variables) in cases {
            let started = Instant::now();
            let mut sub = Subscription::start(
                &app.base,
                Protocol::TransportWs,
                json!({}),
                &query,
                variables,
            )
            .await;
            let payload = sub
                .next(Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("{what}: an error payload"));
            let took = started.elapsed();
            sub.close().await;
            assert_eq!(
                payload["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
                "{what}: {payload}"
            );
            assert!(took < REFUSED_WITHIN, "{what}: {took:?}");
            slowest = slowest.max(took);
        }
        assert_healthy(&app).await;
    }
    println!("nesting over WebSocket: slowest refusal {slowest:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deeply_nested_websocket_variables_are_that_subscriptions_error() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = format!("{}/graphql/ws", app.base.replace("http://", "ws://"));
    for depth in DEPTHS {
        let mut request = url.as_str().into_client_request().expect("request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        socket
            .send(Message::Text(r#"{"type":"connection_init"}"#.into()))
            .await
            .expect("init");
        let Value::String(deep) = nested_json(depth) else {
            unreachable!()
        };
        let subscribe = format!(
            r#"{{"type":"subscribe","payload":{{"query":"subscription($v: [ID!]) {{ seatChanges(eventId: \"1\") {{ seq }} }}","variables":{{"v":{deep}}}}},"id":"deep-{depth}"}}"#
        );
        socket
            .send(Message::Text(subscribe.into()))
            .await
            .expect("subscribe");
        let mut answers = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout_at(deadline, socket.next()).await
        {
            let msg: Value = serde_json::from_str(&text).expect("json");
            let done = msg["type"] == "complete";
            answers.push(msg);
            if done {
                break;
            }
        }
        assert_eq!(answers[0]["type"], "connection_ack", "{answers:?}");
        assert_eq!(answers[1]["id"], format!("deep-{depth}"), "{answers:?}");
        assert_eq!(
            answers[1]["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{answers:?}"
        );
        assert_eq!(
            answers.last().map(|m| m["type"].clone()),
            Some(json!("complete"))
        );
        // The socket itself goes on: a ping is still answered.
        socket
            .send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .expect("ping");
        let pong = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("pong in time");
        assert!(
            matches!(&pong, Some(Ok(Message::Text(t))) if t.contains("pong")),
            "{pong:?}"
        );
    }
    assert_healthy(&app).await;
    app.stop().await;
}

/// `fragment F1 on Query { ...F0 ...F0 }` … `{ ...Fn }`: 2^n fields once expanded.
fn fan_out(levels: usize) -> String {
    let mut query = String::from("fragment F0 on Query { __typename }\n");
    for level in 1..=levels {
        let prev = level - 1;
        query.push_str(&format!(
            "fragment F{level} on Query {{ ...F{prev} ...F{prev} }}\n"
        ));
    }
    query.push_str(&format!("{{ ...F{levels} }}"));
    query
}

/// Resident memory of this process (the server runs in it), in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fragment_fan_out_and_alias_bombs_are_refused_before_validation() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_healthy(&app).await;
    let before = resident_kib();
    let mut slowest = Duration::ZERO;
    for levels in [10, 15, 20, 25, 30, 35, 40] {
        let body = json!({"query": fan_out(levels)}).to_string();
        let (status, answer, took) = post_raw(&app, None, body).await;
        assert_refused(&format!("fan-out of {levels}"), status, &answer, took, 200);
        slowest = slowest.max(took);
    }
    let grown = resident_kib().saturating_sub(before);
    println!("fragment fan-out 10..40: slowest refusal {slowest:?}, memory grew {grown} KiB");
    assert!(grown < 16 * 1024, "memory grew {grown} KiB");

    // 5,000 aliases of __typename, as the README promises.
    let aliases: String = (0..5_000).map(|i| format!("a{i}: __typename ")).collect();
    let body = json!({"query": format!("{{ {aliases} }}")}).to_string();
    let (status, answer, took) = post_raw(&app, None, body).await;
    assert_refused("5,000 __typename aliases", status, &answer, took, 200);
    // Fragment cycles are refused, not expanded for ever.
    let cycle = "fragment A on Query { ...B } fragment B on Query { ...A } { ...A }";
    let (status, answer, took) = post_raw(&app, None, json!({"query": cycle}).to_string()).await;
    assert_refused("fragment cycle", status, &answer, took, 200);
    // A fragment used a few times is fine.
    let ok = "fragment E on Event { id name } { a: events { ...E } b: events { ...E } }";
    let body = app.gql(None, ok, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    // The same over WebSocket.
    let mut sub = Subscription::start(
        &app.base,
        Protocol::TransportWs,
        json!({}),
        &fan_out(30)
            .replace("on Query", "on Subscription")
            .replace("{ ...F30 }", "subscription { ...F30 }"),
        json!({}),
    )
    .await;
    let payload = sub.next(Duration::from_secs(5)).await.expect("an error");
    assert_eq!(
        payload["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{payload}"
    );
    sub.close().await;
    assert_healthy(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identity_is_the_subject_exactly_and_bearer_is_case_insensitive() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let alice = app.token("alice");
    let held = app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
    let hold_id = hold_id(&held);
    let exp = now() + 600;
    let read_hold =
        json!({"query": "query($h: ID!) { hold(id: $h) { id } }", "variables": {"h": hold_id}});
    for sub in [" alice ", "alice ", " alice", "alice\n", "\u{0}alice"] {
        let token = sign(&json!({"sub": sub, "exp": exp}), JWT_SECRET);
        let (status, body) = app.post(Some(&token), &read_hold).await;
        assert_eq!(status, 200);
        assert_eq!(
            error_code(&body).as_deref(),
            Some("UNAUTHENTICATED"),
            "sub {sub:?} acted as someone: {body}"
        );
    }
    for scheme in ["Bearer", "bearer", "BEARER", "beaRER"] {
        let response = app
            .client
            .post(format!("{}/graphql", app.base))
            .header("authorization", format!("{scheme} {alice}"))
            .json(&read_hold)
            .send()
            .await
            .expect("answer");
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body["data"]["hold"]["id"],
            json!(hold_id),
            "{scheme}: {body}"
        );
    }
    app.stop().await;
}
