//! The hostile-input table's section for connections: slow headers, slow and unterminated
//! bodies, oversized bodies, silent and early WebSockets, and the caps per socket and per
//! address. Timeouts are set short here; each case checks the exact answer and that other
//! clients are served meanwhile and afterwards.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::*;

const TIMEOUT_MS: u64 = 600;
/// How long past a timeout the server may take to act on it.
const SLACK: Duration = Duration::from_secs(3);

async fn spawn() -> TestApp {
    let options = Options::default()
        .set("HTTP_HEADER_TIMEOUT_MS", TIMEOUT_MS)
        .set("HTTP_BODY_TIMEOUT_MS", TIMEOUT_MS)
        .set("WS_INIT_TIMEOUT_MS", TIMEOUT_MS)
        .set("WS_MAX_SUBSCRIPTIONS", 3)
        .set("WS_MAX_PER_ADDRESS", 4);
    TestApp::spawn_with(Backend::Sqlite, options).await
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Everything the server sends until it closes the connection (panics if it does not close
/// within `within`).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let result = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "the server kept the connection open; got {:?}",
        String::from_utf8_lossy(&received)
    );
    String::from_utf8_lossy(&received).into_owned()
}

fn assert_closing_answer(what: &str, response: &str, status: &str) {
    assert!(
        response.starts_with(&format!("HTTP/1.1 {status}")),
        "{what}: {response:?}"
    );
    assert!(
        response
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{what}: no Connection: close in {response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_headers_are_cut_while_others_are_served() {
    let app = spawn().await;
    let mut stream = TcpStream::connect(addr(&app)).await.expect("connect");
    stream
        .write_all(b"POST /graphql HTTP/1.1\r\nHost: onsale\r\nX-Slow: ")
        .await
        .expect("write");
    let (mut read, mut write) = stream.into_split();
    // One byte every 100 ms, for longer than any timeout.
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if write.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    assert_healthy(&app).await;
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(
        Duration::from_millis(TIMEOUT_MS) + SLACK,
        read.read(&mut buf),
    )
    .await
    .expect("the server cut the trickling client");
    assert!(
        matches!(read, Ok(0) | Err(_)) || !String::from_utf8_lossy(&buf).contains(" 200 "),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(started.elapsed() >= Duration::from_millis(TIMEOUT_MS / 2));
    trickle.abort();
    assert_healthy(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_unterminated_bodies_get_408_and_close() {
    let app = spawn().await;
    for (what, head, part) in [
        (
            "a body that stops half way",
            "POST /graphql HTTP/1.1\r\nHost: onsale\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
            "{\"query\": \"{ ev",
        ),
        (
            "a chunked body that never ends",
            "POST /graphql HTTP/1.1\r\nHost: onsale\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            "5\r\n{\"que\r\n",
        ),
    ] {
        let mut stream = TcpStream::connect(addr(&app)).await.expect("connect");
        stream
            .write_all(format!("{head}{part}").as_bytes())
            .await
            .expect("write");
        let started = Instant::now();
        assert_healthy(&app).await;
        let response =
            read_until_closed(&mut stream, Duration::from_millis(TIMEOUT_MS) + SLACK).await;
        assert_closing_answer(what, &response, "408");
        assert!(response.contains("BAD_USER_INPUT"), "{what}: {response}");
        assert!(started.elapsed() >= Duration::from_millis(TIMEOUT_MS / 2));
    }
    assert_healthy(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_body_gets_a_413_its_client_can_read() {
    let app = spawn().await;
    // A client that writes its whole 10 MB body before it reads.
    let mut stream = TcpStream::connect(addr(&app)).await.expect("connect");
    let body = vec![b' '; 10 << 20];
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: onsale\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&body)
        .await
        .expect("the whole body is read");
    let response = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_closing_answer("10 MB body", &response, "413");
    assert!(response.contains("BAD_USER_INPUT"), "{response}");

    // Python's http.client, an ordinary client that sends everything first.
    let script = format!(
        "import http.client, json\n\
         c = http.client.HTTPConnection('{}', timeout=20)\n\
         c.request('POST', '/graphql', body=b'x' * (10 << 20), headers={{'Content-Type': 'application/json'}})\n\
         r = c.getresponse()\n\
         print(r.status, r.getheader('Connection'), json.loads(r.read())['errors'][0]['extensions']['code'])\n",
        addr(&app)
    );
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "413 close BAD_USER_INPUT"
    );

    // A keep-alive client: the 413 closes that connection, its next request still works.
    let response = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .expect("a 413, not a reset");
    assert_eq!(response.status(), 413);
    assert_eq!(
        response
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    assert_healthy(&app).await;
    app.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(app: &TestApp) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = format!("{}/graphql/ws", app.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

async fn ws_send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send");
}

/// The next text message as JSON, skipping pings; `None` on close or timeout.
async fn ws_next(socket: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let msg: Value = serde_json::from_str(&text).expect("json");
                if msg["type"] != "ping" {
                    return Some(msg);
                }
            }
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// The close code the server sends within `within`.
async fn close_code(socket: &mut Socket, within: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code.into()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websockets_must_initialise_in_time_and_before_subscribing() {
    let app = spawn().await;
    // Silent: closed with 4408 after the init timeout.
    let mut silent = ws_connect(&app).await.expect("connect");
    let started = Instant::now();
    assert_healthy(&app).await;
    let code = close_code(&mut silent, Duration::from_millis(TIMEOUT_MS) + SLACK).await;
    assert_eq!(code, Some(4408));
    assert!(started.elapsed() >= Duration::from_millis(TIMEOUT_MS / 2));

    // Subscribing before connection_init: closed with 4401 at once.
    let mut early = ws_connect(&app).await.expect("connect");
    ws_send(
        &mut early,
        json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { seatChanges(eventId: \"1\") { seq } }"}}),
    )
    .await;
    assert_eq!(close_code(&mut early, SLACK).await, Some(4401));

    // An initialised socket is not cut by the init timeout.
    let mut good = ws_connect(&app).await.expect("connect");
    ws_send(&mut good, json!({"type": "connection_init"})).await;
    assert_eq!(
        ws_next(&mut good, SLACK).await.map(|m| m["type"].clone()),
        Some(json!("connection_ack"))
    );
    tokio::time::sleep(Duration::from_millis(TIMEOUT_MS * 2)).await; // past the init timeout
    ws_send(&mut good, json!({"type": "ping"})).await;
    assert_eq!(
        ws_next(&mut good, SLACK).await.map(|m| m["type"].clone()),
        Some(json!("pong"))
    );
    assert_healthy(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_per_socket_and_sockets_per_address_are_capped() {
    let app = spawn().await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let mut socket = ws_connect(&app).await.expect("connect");
    ws_send(&mut socket, json!({"type": "connection_init"})).await;
    assert_eq!(
        ws_next(&mut socket, SLACK).await.map(|m| m["type"].clone()),
        Some(json!("connection_ack"))
    );
    let subscribe = |id: &str| {
        json!({"id": id, "type": "subscribe", "payload": {
            "query": "subscription($e: ID!) { seatChanges(eventId: $e) { seatId status } }",
            "variables": {"e": event_id}
        }})
    };
    for id in ["1", "2", "3", "4"] {
        ws_send(&mut socket, subscribe(id)).await;
    }
    // The fourth is refused as its own error; the socket stays open.
    let refused = ws_next(&mut socket, SLACK).await.expect("an answer for 4");
    assert_eq!(refused["id"], "4", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused}"
    );
    assert_eq!(
        ws_next(&mut socket, SLACK)
            .await
            .map(|m| (m["id"].clone(), m["type"].clone())),
        Some((json!("4"), json!("complete")))
    );
    // Completing one frees its place for another.
    ws_send(&mut socket, json!({"id": "1", "type": "complete"})).await;
    ws_send(&mut socket, subscribe("5")).await;
    // Wait until the server has taken subscription 5, then change a seat: 2, 3 and 5 see it.
    let deadline = Instant::now() + SLACK;
    let mut seen = std::collections::BTreeSet::new();
    let alice = app.token("alice");
    let _ = app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
    while seen.len() < 3 && Instant::now() < deadline {
        match ws_next(&mut socket, Duration::from_millis(500)).await {
            Some(msg) if msg["type"] == "next" => {
                assert!(msg["payload"]["errors"].is_null(), "{msg}");
                seen.insert(msg["id"].as_str().expect("id").to_owned());
            }
            Some(_) => {}
            None => {
                // Subscription 5 may have been registered after the first change: make another.
                let _ = app.hold_seats(&alice, &event_id, &[&seats[1]]).await;
            }
        }
    }
    assert!(
        seen.contains("2") && seen.contains("3") && seen.contains("5"),
        "{seen:?}"
    );
    assert!(!seen.contains("1") && !seen.contains("4"), "{seen:?}");

    // Four sockets per address: this one and three more; the fifth is refused with 429.
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(ws_connect(&app).await.expect("within the cap"));
    }
    match ws_connect(&app).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
        }
        other => panic!("a fifth socket: {:?}", other.map(|_| "connected")),
    }
    // Closing one frees its place (the server notices the close a moment later).
    let mut closing = others.pop().expect("a socket");
    let _ = closing.close(None).await;
    drop(closing);
    let deadline = Instant::now() + SLACK;
    let reconnected = loop {
        match ws_connect(&app).await {
            Ok(socket) => break Some(socket),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => break None,
        }
    };
    assert!(
        reconnected.is_some(),
        "a place freed by a close is free again"
    );
    assert_healthy(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout() {
    let app = spawn().await;
    let mut stream = TcpStream::connect(addr(&app)).await.expect("connect");
    let body = r#"{"query":"{ __typename }"}"#;
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: onsale\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for round in 0..2 {
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains(r#"{"data":{"__typename":"Query"}}"#) {
            let n = tokio::time::timeout(SLACK, stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("round {round}: no answer"))
                .expect("read");
            assert!(
                n > 0,
                "round {round}: closed: {:?}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
        // Idle between requests for longer than the header timeout: the point of the test.
        tokio::time::sleep(Duration::from_millis(TIMEOUT_MS * 3)).await;
    }
    app.stop().await;
}
