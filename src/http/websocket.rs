//! Subscriptions over WebSocket (`/graphql/ws`), `graphql-transport-ws` or the legacy
//! `graphql-ws`. The token, if any, comes in the `connection_init` payload as
//! `{"Authorization": "Bearer …"}`.
//!
//! async-graphql speaks the protocol; the messages reach it through [`gate`], which enforces
//! what the protocol leaves to the server: `connection_init` within a deadline (else close
//! 4408), nothing subscribed before it (close 4401), no message nesting deeper than the
//! request limits (answered as that subscription's error), and at most so many subscriptions
//! per socket and sockets per client address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::http::{
    ALL_WEBSOCKET_PROTOCOLS, ClientMessage, WebSocket as Protocol, WebSocketProtocols as Protocols,
    WsMessage,
};
use async_graphql::{Data, Executor, Request, Response};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use futures::SinkExt;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use tokio::sync::mpsc;

use super::AppState;
use super::graphql::client_ip;
use crate::auth::Jwt;
use crate::graphql::guard::GuardedSchema;
use crate::graphql::limits::{self, MAX_JSON_NESTING, Refusal};

/// Largest WebSocket message accepted (the connection closes above it, 1009).
pub const MAX_MESSAGE_BYTES: usize = super::BODY_LIMIT_BYTES;
/// Read buffer of a WebSocket. tungstenite zero-fills the whole buffer's free room before
/// every read (128 KiB by default): in a profile of 300 subscribers that memset and the
/// kernel's page clearing behind it were 14 % of the server's CPU. Client messages are
/// small; a larger frame still grows the buffer as it needs.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Request extension that carries a refusal decided before the message could be parsed.
const REFUSED: &str = "onsale.refused";

/// How many WebSockets each client address holds open.
#[derive(Clone, Default)]
pub struct OpenSockets(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One open socket of an address; closing it (dropping this) frees the place.
pub struct SocketPlace {
    sockets: OpenSockets,
    ip: IpAddr,
}

impl OpenSockets {
    fn take(&self, ip: IpAddr, max: usize) -> Option<SocketPlace> {
        let mut open = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(SocketPlace {
            sockets: self.clone(),
            ip,
        })
    }
}

impl Drop for SocketPlace {
    fn drop(&mut self) {
        let mut open = self
            .sockets
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

pub async fn websocket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> HttpResponse {
    let Some(protocol) = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| p.trim().parse::<Protocols>().ok())
        })
    else {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws",
        )
            .into_response();
    };
    let ip = client_ip(&headers, peer, state.trust_forwarded_for);
    let limits = &state.connections;
    let Some(place) = state.open_sockets.take(ip, limits.ws_max_per_address) else {
        metrics::counter!("onsale_websocket_refused_total", "why" => "per_address").increment(1);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "at most {} WebSockets per client address",
                limits.ws_max_per_address
            ),
        )
            .into_response();
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            metrics::gauge!("onsale_websocket_connections").increment(1.0);
            let mut shutdown = state.shutdown.clone();
            // On shutdown the connection is dropped; clients resubscribe with `afterSeq`.
            if !*shutdown.borrow() {
                tokio::select! {
                    () = serve(socket, &state, protocol) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => {}
                }
            }
            drop(place);
            metrics::gauge!("onsale_websocket_connections").decrement(1.0);
        })
}

async fn serve(socket: WebSocket, state: &AppState, protocol: Protocols) {
    let (mut sink, source) = socket.split();
    let (direct_tx, direct_rx) = mpsc::channel::<Message>(4);
    let input = gate(source, direct_tx, state.connections.ws_init_timeout);
    let executor = SocketExecutor {
        schema: state.schema.clone(),
        active: Arc::default(),
        max: state.connections.ws_max_subscriptions,
    };
    let jwt: Arc<Jwt> = state.jwt.clone();
    let answers = Protocol::from_message_stream(executor, input, protocol)
        .on_connection_init(move |payload| async move {
            let header = payload
                .get("Authorization")
                .or_else(|| payload.get("authorization"))
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            let mut data = Data::default();
            data.insert(jwt.caller_from_header(header.as_deref()).await);
            Ok(data)
        })
        .map(|msg| match msg {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => close(code, &reason),
        });
    let direct = tokio_stream::wrappers::ReceiverStream::new(direct_rx);
    let mut out = stream::select(answers, direct);
    while let Some(message) = out.next().await {
        let closing = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// The client's messages as async-graphql reads them, after the checks of this module.
/// Frames the gate answers itself (closes) go out through `direct`.
fn gate(
    mut source: futures::stream::SplitStream<WebSocket>,
    direct: mpsc::Sender<Message>,
    init_timeout: Duration,
) -> impl Stream<Item = serde_json::Result<ClientMessage>> + Send + Unpin + 'static {
    Box::pin(async_stream::stream! {
        let deadline = tokio::time::Instant::now() + init_timeout;
        let mut initialised = false;
        loop {
            let next = if initialised {
                source.next().await
            } else {
                match tokio::time::timeout_at(deadline, source.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        metrics::counter!("onsale_websocket_refused_total", "why" => "init_timeout").increment(1);
                        let _ = direct.send(close(4408, "Connection initialisation timeout")).await;
                        break;
                    }
                }
            };
            let text = match next {
                Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            };
            let message = match limits::json_nesting(&text, MAX_JSON_NESTING + 2) {
                Ok(()) => ClientMessage::from_bytes(&text),
                // Too deep to parse safely: the subscription it names gets the refusal.
                Err(refusal) => match top_level_string(&text, "id") {
                    Some(id) if initialised => Ok(refused_start(id, &refusal)),
                    _ => {
                        let _ = direct.send(close(4400, &refusal.to_string())).await;
                        break;
                    }
                },
            };
            match &message {
                Ok(ClientMessage::ConnectionInit { .. }) => initialised = true,
                Ok(ClientMessage::Start { .. }) if !initialised => {
                    let _ = direct.send(close(4401, "Unauthorized")).await;
                    break;
                }
                _ => {}
            }
            yield message;
        }
    })
}

/// A subscribe message standing for one that was refused before parsing.
fn refused_start(id: String, refusal: &Refusal) -> ClientMessage {
    let mut payload = Request::new("");
    payload.extensions.insert(
        REFUSED.to_owned(),
        async_graphql::Value::String(refusal.to_string()),
    );
    ClientMessage::Start { id, payload }
}

/// The string value of `key` in the top-level object of a JSON text, found without parsing
/// (and so without recursing into) the rest.
fn top_level_string(json: &[u8], key: &str) -> Option<String> {
    let (mut i, mut depth) = (0, 0usize);
    let mut expect_key = false;
    while i < json.len() {
        match json[i] {
            b'{' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            b'"' => {
                let start = i;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                let token = json.get(start..=i)?;
                if depth == 1 && expect_key {
                    expect_key = false;
                    let name: String = serde_json::from_slice(token).ok()?;
                    if name == key {
                        let rest = &json[i + 1..];
                        let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
                        if rest[colon] != b':' {
                            return None;
                        }
                        let value = &rest[colon + 1..];
                        let begin = value.iter().position(|b| !b.is_ascii_whitespace())?;
                        let mut de = serde_json::Deserializer::from_slice(&value[begin..]);
                        return serde::Deserialize::deserialize(&mut de).ok();
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The schema as one socket runs it: at most `max` subscriptions at once.
#[derive(Clone)]
struct SocketExecutor {
    schema: GuardedSchema,
    active: Arc<AtomicUsize>,
    max: usize,
}

/// One running subscription of a socket; dropping it (the stream ended or was stopped)
/// frees its place.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn refused(message: String) -> Response {
    Response::from_errors(vec![limits::bad_input(message)])
}

impl Executor for SocketExecutor {
    async fn execute(&self, request: Request) -> Response {
        self.schema.execute(request).await
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        if let Some(async_graphql::Value::String(why)) = request.extensions.get(REFUSED) {
            return stream::once(std::future::ready(refused(why.clone()))).boxed();
        }
        let taken = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        if taken.is_err() {
            metrics::counter!("onsale_websocket_refused_total", "why" => "subscriptions")
                .increment(1);
            let message = format!("at most {} subscriptions per connection", self.max);
            return stream::once(std::future::ready(refused(message))).boxed();
        }
        let running = Running(self.active.clone());
        self.schema
            .execute_stream(request, session_data)
            .map(move |response| {
                let _ = &running;
                response
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::top_level_string;

    #[test]
    fn finds_the_top_level_id_only() {
        let deep = format!(
            r#"{{"type":"subscribe","payload":{{"id":"inner","variables":{}1{}}},"id":"op-1"}}"#,
            "[".repeat(50),
            "]".repeat(50)
        );
        assert_eq!(
            top_level_string(deep.as_bytes(), "id").as_deref(),
            Some("op-1")
        );
        assert_eq!(
            top_level_string(br#"{ "id" : "a\"b", "type": "x"}"#, "id").as_deref(),
            Some("a\"b")
        );
        assert_eq!(top_level_string(br#"{"type":"id"}"#, "id"), None);
        assert_eq!(top_level_string(br#"{"id": 5}"#, "id"), None);
        assert_eq!(top_level_string(b"[[[[", "id"), None);
    }
}
