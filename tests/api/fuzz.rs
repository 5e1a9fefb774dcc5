//! A fuzzer that keeps looking: inputs grown from the seed corpus in `tests/fuzz/corpus/` by
//! random mutation (byte edits, GraphQL and JSON tokens, repeated ranges that build deep
//! nesting, splices of other seeds), sent through the public entry points of a real server —
//! `POST /graphql` (document and variables through the limits, parsing and validation), `POST
//! /webhooks/stripe` (`Stripe-Signature` and body, unsigned and correctly signed) and the
//! WebSocket message decoder. A crash is any panic in the server, a 5xx, an error without a
//! contract code, a hang, or the server not answering afterwards.
//!
//! Each target runs for `FUZZ_SECONDS` (default 3; `scripts/test.sh` runs about a minute in
//! all); `FUZZ_SEED` repeats a run. A failing input is written to `test-artifacts/fuzz/`.
//! libFuzzer (`cargo fuzz`) needs a nightly toolchain, which this project does not assume.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::*;

const WEBHOOK_SECRET: &str = "whsec_fuzz_secret";
/// Longest input the mutator builds.
const MAX_INPUT: usize = 256 << 10;

/// Tokens the mutator inserts: GraphQL and JSON syntax, limits' edge cases, odd characters.
const DICTIONARY: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "...",
    "...F0",
    "fragment F0 on Query { __typename }",
    "on",
    "query",
    "mutation",
    "subscription",
    "__typename",
    "__schema",
    "@skip(if: true)",
    "$v",
    "$v: [ID!]",
    "\"",
    "\"\"\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "#",
    "\n",
    ":",
    ",",
    "!",
    "null",
    "true",
    "-0",
    "1e309",
    "2147483648",
    "-9223372036854775809",
    "\u{0}",
    "\u{feff}",
    "é",
    "𝄞",
    "a: __typename ",
    "events { id }",
    "seatMap(eventId: \"1\") { seq }",
    "holdSeats(eventId: \"1\", seatIds: [\"1\"]) { id }",
    "{\"a\":",
    "[[[[",
    "]]]]",
    "\"type\":\"subscribe\"",
    "\"id\":\"1\"",
    "\"payload\":",
    "connection_init",
    "v1=",
    "t=",
];

fn fuzz_seconds() -> Duration {
    let secs: f64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

fn rng_for(target: &str) -> StdRng {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("fuzz {target}: FUZZ_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

fn corpus(kind: &str, ext: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(kind);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .map(|path| std::fs::read(path).expect("seed"))
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds.sort();
    seeds
}

/// One random change to `input`.
fn mutate_once(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let at = |rng: &mut StdRng, input: &Vec<u8>| rng.random_range(0..=input.len());
    match rng.random_range(0..8) {
        0 if !input.is_empty() => {
            let i = rng.random_range(0..input.len());
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 if !input.is_empty() => {
            let i = rng.random_range(0..input.len());
            input[i] = rng.random();
        }
        2 if !input.is_empty() => {
            let start = rng.random_range(0..input.len());
            let end = (start + rng.random_range(1..=16)).min(input.len());
            input.drain(start..end);
        }
        3 if !input.is_empty() => {
            // Repeat a range: from a few times up to deep nesting.
            let start = rng.random_range(0..input.len());
            let end = (start + rng.random_range(1..=12)).min(input.len());
            let piece = input[start..end].to_vec();
            let times = if rng.random_bool(0.2) {
                rng.random_range(100..5_000)
            } else {
                rng.random_range(1..8)
            };
            let insert: Vec<u8> = piece
                .iter()
                .copied()
                .cycle()
                .take(piece.len() * times)
                .collect();
            input.splice(end..end, insert);
        }
        4 => {
            // Balanced deep nesting of one kind.
            let (open, close) = [
                ("[", "]"),
                ("{", "}"),
                ("(", ")"),
                ("{a:", "}"),
                ("{e ", "}"),
            ][rng.random_range(0..5)];
            let depth = rng.random_range(1..3_000);
            let i = at(rng, input);
            let j = rng.random_range(i..=input.len());
            input.splice(j..j, close.repeat(depth).into_bytes());
            input.splice(i..i, open.repeat(depth).into_bytes());
        }
        5 => {
            let other = &seeds[rng.random_range(0..seeds.len())];
            if !other.is_empty() {
                let start = rng.random_range(0..other.len());
                let end = rng.random_range(start..=other.len());
                let i = at(rng, input);
                input.splice(i..i, other[start..end].iter().copied());
            }
        }
        _ => {
            let token = DICTIONARY[rng.random_range(0..DICTIONARY.len())];
            let i = at(rng, input);
            input.splice(i..i, token.bytes());
        }
    }
    input.truncate(MAX_INPUT);
}

fn mutated(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(0..8) {
        mutate_once(rng, &mut input, seeds);
    }
    input
}

/// Panics anywhere in the process (the server runs in it), recorded by a hook.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn watch_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(info.to_string());
        previous(info);
    }));
}

fn panics_so_far() -> Vec<String> {
    PANICS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Saves the input that found something and fails the test with it.
fn found(target: &str, input: &[u8], problem: &str) -> ! {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artifacts/fuzz");
    let _ = std::fs::create_dir_all(&dir);
    let path: PathBuf = dir.join(format!("{target}-{}.bin", uuid::Uuid::new_v4().simple()));
    let _ = std::fs::write(&path, input);
    let shown: String = String::from_utf8_lossy(input).chars().take(400).collect();
    panic!(
        "fuzz {target}: {problem}\ninput saved to {} ({} bytes): {shown:?}",
        path.display(),
        input.len()
    );
}

fn errors_have_codes(body: &Value) -> Result<(), String> {
    let answers: Vec<&Value> = match body {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for answer in answers {
        for err in answer["errors"].as_array().into_iter().flatten() {
            let code = err["extensions"]["code"].as_str().unwrap_or("<none>");
            if !CODES.contains(&code) {
                return Err(format!("an error without a contract code: {err}"));
            }
            if code == "INTERNAL" {
                return Err(format!("INTERNAL: {err}"));
            }
        }
    }
    Ok(())
}

async fn alive(app: &TestApp) -> bool {
    let health = app.client.get(format!("{}/healthz", app.base)).send().await;
    let body = app.gql(None, "{ __typename }", json!({})).await;
    matches!(health, Ok(r) if r.status() == 200) && body["data"]["__typename"] == "Query"
}

fn report(target: &str, runs: usize, started: Instant) {
    println!(
        "fuzz {target}: {runs} inputs in {:.1} s, no crash",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzz_graphql_documents_and_variables() {
    watch_panics();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (event_id, _) = app.create_event(2, 3).await;
    let token = app.token("fuzzer");
    let documents = corpus("graphql", "graphql");
    let variables = corpus("graphql", "json");
    let mut rng = rng_for("graphql");
    let (started, budget, mut runs) = (Instant::now(), fuzz_seconds(), 0usize);
    while started.elapsed() < budget {
        let document = mutated(&mut rng, &documents);
        let vars = mutated(&mut rng, &variables);
        // Mostly a well-formed body around a mutated document; sometimes the body itself.
        let body: Vec<u8> = match rng.random_range(0..4) {
            0 => {
                let mut raw = br#"{"query": ""#.to_vec();
                raw.extend_from_slice(&document);
                raw.extend_from_slice(br#"", "variables": "#);
                raw.extend_from_slice(&vars);
                raw.push(b'}');
                raw
            }
            1 => json!([
                {"query": String::from_utf8_lossy(&document)},
                {"query": "{ events { id } }"},
            ])
            .to_string()
            .into_bytes(),
            _ => {
                let vars: Value = serde_json::from_slice(&vars)
                    .unwrap_or_else(|_| json!({"e": event_id, "s": ["x"]}));
                json!({"query": String::from_utf8_lossy(&document), "variables": vars})
                    .to_string()
                    .into_bytes()
            }
        };
        let mut request = app
            .client
            .post(format!("{}/graphql", app.base))
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(10))
            .body(body.clone());
        if rng.random_bool(0.5) {
            request = request.bearer_auth(&token);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => found("graphql", &body, &format!("no answer: {err}")),
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if ![200, 400, 413].contains(&status) {
            found("graphql", &body, &format!("HTTP {status}: {text}"));
        }
        if let Ok(answer) = serde_json::from_str::<Value>(&text)
            && let Err(problem) = errors_have_codes(&answer)
        {
            found("graphql", &body, &problem);
        }
        if let Some(panic) = panics_so_far().first() {
            found("graphql", &body, &format!("the server panicked: {panic}"));
        }
        runs += 1;
    }
    if !alive(&app).await {
        found("graphql", b"", "the server stopped answering");
    }
    report("graphql", runs, started);
    app.stop().await;
}

fn stripe_signature(payload: &[u8], t: i64) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(payload);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzz_stripe_webhooks() {
    watch_panics();
    // Stripe's API is an unused local port: nothing here may need it to answer.
    let options = Options::default()
        .set("STRIPE_SECRET_KEY", "sk_test_fuzz")
        .set(
            "STRIPE_API_BASE",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .set("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let app = TestApp::spawn_with(Backend::Sqlite, options).await;
    let bodies = corpus("webhook", "json");
    let signatures = corpus("webhook", "txt");
    let mut rng = rng_for("webhook");
    let (started, budget, mut runs) = (Instant::now(), fuzz_seconds(), 0usize);
    while started.elapsed() < budget {
        let body = mutated(&mut rng, &bodies);
        let now = chrono::Utc::now().timestamp();
        let signature: Vec<u8> = match rng.random_range(0..3) {
            // Correctly signed: the body gets past the signature into the event parser.
            0 => stripe_signature(&body, now).into_bytes(),
            1 => {
                let mut signed = stripe_signature(&body, now).into_bytes();
                mutate_once(&mut rng, &mut signed, &signatures);
                signed
            }
            _ => mutated(&mut rng, &signatures),
        };
        let mut request = app
            .client
            .post(format!("{}/webhooks/stripe", app.base))
            .timeout(Duration::from_secs(10))
            .body(body.clone());
        if let Ok(value) = reqwest::header::HeaderValue::from_bytes(&signature) {
            request = request.header("stripe-signature", value);
        }
        let mut input = signature.clone();
        input.extend_from_slice(b"\n");
        input.extend_from_slice(&body);
        let status = match request.send().await {
            Ok(response) => response.status().as_u16(),
            Err(err) => found("webhook", &input, &format!("no answer: {err}")),
        };
        // 503 is the documented "deliver again" answer for a transient failure.
        if ![200, 400, 413, 503].contains(&status) {
            found("webhook", &input, &format!("HTTP {status}"));
        }
        if let Some(panic) = panics_so_far().first() {
            found("webhook", &input, &format!("the server panicked: {panic}"));
        }
        runs += 1;
    }
    if !alive(&app).await {
        found("webhook", b"", "the server stopped answering");
    }
    report("webhook", runs, started);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzz_websocket_messages() {
    watch_panics();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let messages = corpus("websocket", "json");
    let url = format!("{}/graphql/ws", app.base.replace("http://", "ws://"));
    let mut rng = rng_for("websocket");
    let (started, budget, mut runs) = (Instant::now(), fuzz_seconds(), 0usize);
    while started.elapsed() < budget {
        let protocol = if rng.random_bool(0.5) {
            "graphql-transport-ws"
        } else {
            "graphql-ws"
        };
        let mut request = url.as_str().into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
        let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
            Ok(connected) => connected,
            Err(err) => found("websocket", b"", &format!("cannot connect: {err}")),
        };
        // A session: usually a real init first, then a few mutated messages.
        let mut sent = Vec::new();
        if rng.random_bool(0.8) {
            sent.push(br#"{"type":"connection_init"}"#.to_vec());
        }
        for _ in 0..rng.random_range(1..6) {
            sent.push(mutated(&mut rng, &messages));
        }
        let mut transcript = Vec::new();
        for message in &sent {
            transcript.extend_from_slice(message);
            transcript.push(b'\n');
            let frame = match String::from_utf8(message.clone()) {
                Ok(text) if rng.random_bool(0.9) => Message::Text(text.into()),
                _ => Message::Binary(message.clone().into()),
            };
            if socket.send(frame).await.is_err() {
                break; // the server closed the socket: an allowed answer
            }
        }
        // Read what comes back for a moment; the server must neither panic nor hang a send.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(30);
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await {
            if let Message::Text(text) = &message
                && let Ok(answer) = serde_json::from_str::<Value>(text)
                && let Err(problem) = errors_have_codes(&match answer["type"].as_str() {
                    Some("error") => json!({"errors": answer["payload"]}),
                    Some("next" | "data") => answer["payload"].clone(),
                    _ => json!({}),
                })
            {
                found("websocket", &transcript, &problem);
            }
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        let _ = socket.close(None).await;
        if let Some(panic) = panics_so_far().first() {
            found(
                "websocket",
                &transcript,
                &format!("the server panicked: {panic}"),
            );
        }
        runs += 1;
    }
    if !alive(&app).await {
        found("websocket", b"", "the server stopped answering");
    }
    report("websocket", runs, started);
    app.stop().await;
}
