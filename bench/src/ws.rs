//! A minimal GraphQL-over-WebSocket client (`graphql-transport-ws`) for one subscription.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const PROTOCOL: &str = "graphql-transport-ws";

/// One socket carrying one subscription (id `"1"`).
pub struct Subscription {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server sent for the subscription.
#[derive(Debug)]
pub enum Event {
    /// A `next` message: the operation's `data`.
    Data(Value),
    /// An `error` message, or `next` carrying GraphQL errors.
    Error(Value),
    /// `complete`, or the socket closed.
    Done,
}

impl Subscription {
    /// Connects, waits for `connection_ack` (within `timeout`) and subscribes.
    pub async fn start(
        url: &str,
        query: &str,
        variables: Value,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Self::start_as(url, None, query, variables, timeout).await
    }

    /// [`Self::start`] as the bearer of `token`, if given (in the `connection_init` payload).
    pub async fn start_as(
        url: &str,
        token: Option<&str>,
        query: &str,
        variables: Value,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut request = url
            .into_client_request()
            .with_context(|| format!("bad WebSocket URL {url}"))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(PROTOCOL));
        // tungstenite zero-fills its whole read buffer before every read (128 KiB by
        // default); messages here are small, and a bigger one grows the buffer.
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), false);
        let (socket, _) = tokio::time::timeout(timeout, connect)
            .await
            .context("WebSocket handshake timed out")?
            .context("WebSocket handshake failed")?;
        let mut sub = Self { socket };
        let payload = match token {
            Some(token) => json!({"Authorization": format!("Bearer {token}")}),
            None => json!({}),
        };
        sub.send(json!({"type": "connection_init", "payload": payload}))
            .await?;
        tokio::time::timeout(timeout, sub.await_ack())
            .await
            .context("no connection_ack in time")??;
        sub.send(json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}))
            .await?;
        Ok(sub)
    }

    async fn await_ack(&mut self) -> anyhow::Result<()> {
        loop {
            let msg = self
                .next_message()
                .await?
                .ok_or_else(|| anyhow!("socket closed before connection_ack"))?;
            match msg["type"].as_str() {
                Some("connection_ack") => return Ok(()),
                Some("ping" | "pong") => {}
                _ => bail!("expected connection_ack, got {msg}"),
            }
        }
    }

    /// The next event of the subscription; answers pings on the way.
    pub async fn next_event(&mut self) -> anyhow::Result<Event> {
        loop {
            let Some(msg) = self.next_message().await? else {
                return Ok(Event::Done);
            };
            match msg["type"].as_str() {
                Some("next") => {
                    let payload = &msg["payload"];
                    if payload.get("errors").is_some_and(|e| !e.is_null()) {
                        return Ok(Event::Error(payload.clone()));
                    }
                    return Ok(Event::Data(payload["data"].clone()));
                }
                Some("error") => return Ok(Event::Error(msg["payload"].clone())),
                Some("complete") => return Ok(Event::Done),
                Some("ping") => self.send(json!({"type": "pong"})).await?,
                _ => {}
            }
        }
    }

    /// Ends the subscription and closes the socket politely.
    pub async fn close(mut self) {
        let _ = self.send(json!({"id": "1", "type": "complete"})).await;
        let _ = self.socket.close(None).await;
    }

    async fn send(&mut self, value: Value) -> anyhow::Result<()> {
        self.socket
            .send(Message::text(value.to_string()))
            .await
            .context("WebSocket send failed")
    }

    /// The next JSON text message, `None` once the socket is closed.
    async fn next_message(&mut self) -> anyhow::Result<Option<Value>> {
        while let Some(frame) = self.socket.next().await {
            match frame.context("WebSocket receive failed")? {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str())
                        .map(Some)
                        .context("server sent a message that is not JSON");
                }
                Message::Close(_) => return Ok(None),
                // tungstenite answers WebSocket pings itself.
                _ => {}
            }
        }
        Ok(None)
    }
}
