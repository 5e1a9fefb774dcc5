//! A small GraphQL-over-WebSocket client for tests, speaking either subprotocol.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::ops;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws` (graphql-ws library).
    TransportWs,
    /// The legacy `graphql-ws` (subscriptions-transport-ws).
    LegacyWs,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Self::TransportWs => "graphql-transport-ws",
            Self::LegacyWs => "graphql-ws",
        }
    }
}

pub struct Subscription {
    socket: Socket,
    protocol: Protocol,
}

impl Subscription {
    /// Connects, initialises and subscribes to `query` with `variables`.
    pub async fn start(
        base: &str,
        protocol: Protocol,
        init: Value,
        query: &str,
        variables: Value,
    ) -> Self {
        let url = format!("{}/graphql/ws", base.replace("http://", "ws://"));
        let mut request = url.into_client_request().expect("ws request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol.name()),
        );
        let (mut socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("ws connect");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(protocol.name())
        );
        send(
            &mut socket,
            json!({"type": "connection_init", "payload": init}),
        )
        .await;
        loop {
            let msg = next_json(&mut socket, Duration::from_secs(5))
                .await
                .expect("connection_ack");
            match msg["type"].as_str() {
                Some("connection_ack") => break,
                Some("ka") => continue,
                other => panic!("unexpected {other:?}: {msg}"),
            }
        }
        let start = match protocol {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        };
        send(
            &mut socket,
            json!({"id": "1", "type": start, "payload": {"query": query, "variables": variables}}),
        )
        .await;
        Self { socket, protocol }
    }

    /// Subscribes to `seatChanges` for an event, after `after_seq`. `None` means from now: the
    /// seat map's `seq` as this call reads it, so every change made once it has returned
    /// arrives. (Without `afterSeq` the server starts wherever the log is when it gets to the
    /// subscription, and no message tells the client when that was.) For an event the seat map
    /// does not know, it subscribes without `afterSeq`, to get the server's error.
    pub async fn seat_changes(
        base: &str,
        protocol: Protocol,
        event_id: &str,
        after_seq: Option<i64>,
    ) -> Self {
        let after_seq = match after_seq {
            Some(seq) => Some(seq),
            None => current_seq(base, event_id).await,
        };
        Self::start(
            base,
            protocol,
            json!({}),
            ops::SEAT_CHANGES,
            ops::vars::seat_changes(event_id, after_seq),
        )
        .await
    }

    /// The next payload (`data` or `errors`) within `timeout`, or `None`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = next_json(&mut self.socket, left).await?;
            match (self.protocol, msg["type"].as_str()) {
                (Protocol::TransportWs, Some("next")) | (Protocol::LegacyWs, Some("data")) => {
                    return Some(msg["payload"].clone());
                }
                (_, Some("error")) => return Some(json!({"errors": msg["payload"]})),
                (_, Some("complete")) => return None,
                (Protocol::TransportWs, Some("ping")) => {
                    send(&mut self.socket, json!({"type": "pong"})).await;
                }
                _ => continue,
            }
        }
    }

    /// The next seat change, panicking if none arrives in time.
    pub async fn next_change(&mut self, timeout: Duration) -> Value {
        let payload = self
            .next(timeout)
            .await
            .expect("a seat change within the timeout");
        assert!(payload["errors"].is_null(), "subscription error: {payload}");
        payload["data"]["seatChanges"].clone()
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// The event's latest change (`seatMap { seq }`), or `None` if the seat map has none to give.
async fn current_seq(base: &str, event_id: &str) -> Option<i64> {
    let body: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({"query": ops::SEAT_SEQ, "variables": ops::vars::event(event_id)}))
        .send()
        .await
        .expect("seatMap sent")
        .json()
        .await
        .expect("seatMap answer");
    body["data"]["seatMap"]["seq"].as_i64()
}

async fn send(socket: &mut Socket, msg: Value) {
    socket
        .send(Message::Text(msg.to_string().into()))
        .await
        .expect("ws send");
}

async fn next_json(socket: &mut Socket, timeout: Duration) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(timeout, socket.next())
            .await
            .ok()??
            .ok()?;
        match msg {
            Message::Text(text) => return serde_json::from_str(&text).ok(),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}
