//! GraphQL over HTTP (`POST /graphql`) and over WebSocket (`/graphql/ws`).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{BatchRequest, BatchResponse, Data};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::graphql::extensions::{ClientIp, error_code};

/// Queries and mutations. Malformed JSON is a plain 400; the bearer token becomes the
/// request's caller; errors the engine raises without a code (parse, validation, depth or
/// complexity limits) get `BAD_USER_INPUT`.
pub async fn graphql(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request: BatchRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            metrics::counter!("onsale_graphql_requests_total", "code" => "MALFORMED_JSON")
                .increment(1);
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"errors": [{
                    "message": format!("the request body is not valid GraphQL JSON: {err}"),
                    "extensions": {"code": "BAD_USER_INPUT"}
                }]})),
            )
                .into_response();
        }
    };
    if let BatchRequest::Batch(ops) = &request
        && ops.len() > crate::graphql::MAX_BATCH
    {
        metrics::counter!("onsale_graphql_requests_total", "code" => "BAD_USER_INPUT").increment(1);
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"errors": [{
                "message": format!("at most {} operations in one batch", crate::graphql::MAX_BATCH),
                "extensions": {"code": "BAD_USER_INPUT"}
            }]})),
        )
            .into_response();
    }
    let caller = state.jwt.caller_from_header(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    let client_ip = client_ip(&headers, peer, state.trust_forwarded_for);
    let execution = state.schema.execute_batch(
        request
            .data(caller)
            .data(ClientIp(client_ip))
            .data(admission_token(&headers)),
    );
    // Every request answers within a bound; a request cut short rolls back.
    let Ok(response) = tokio::time::timeout(state.request_timeout, execution).await else {
        metrics::counter!("onsale_graphql_requests_total", "code" => "RETRY_LATER").increment(1);
        return Json(json!({"data": null, "errors": [{
            "message": "the request took too long; try again shortly",
            "extensions": {"code": "RETRY_LATER", "retryAfterMs": 1000}
        }]}))
        .into_response();
    };
    // Codes are already on every error (the schema's `ErrorCodes` extension).
    let code = first_code(&response);
    metrics::counter!("onsale_graphql_requests_total", "code" => code.clone()).increment(1);
    metrics::histogram!("onsale_graphql_request_seconds", "code" => code)
        .record(started.elapsed().as_secs_f64());
    Json(response).into_response()
}

/// The client's address: the peer, or the first `X-Forwarded-For` hop behind a trusted proxy.
fn client_ip(headers: &HeaderMap, peer: SocketAddr, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    peer.ip()
}

/// The code of the first error ("OK" if none), as a metrics label; codes come from the
/// contract's fixed set, so the label stays bounded.
fn first_code(resp: &BatchResponse) -> String {
    let first = match resp {
        BatchResponse::Single(r) => r.errors.first(),
        BatchResponse::Batch(rs) => rs.iter().find_map(|r| r.errors.first()),
    };
    first.map_or_else(|| "OK".to_owned(), |e| error_code(e).to_owned())
}

/// Subscriptions over `graphql-transport-ws` or the legacy `graphql-ws`. The token, if any,
/// comes in the `connection_init` payload as `{"Authorization": "Bearer …"}`.
pub async fn websocket(
    State(state): State<AppState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let schema = state.schema.clone();
    let jwt = state.jwt.clone();
    let mut shutdown = state.shutdown.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(64 * 1024)
        .on_upgrade(move |stream| async move {
            metrics::gauge!("onsale_websocket_connections").increment(1.0);
            let serve = GraphQLWebSocket::new(stream, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let header = payload
                        .get("Authorization")
                        .or_else(|| payload.get("authorization"))
                        .and_then(|v| v.as_str())
                        .map(str::to_owned);
                    let mut data = Data::default();
                    data.insert(jwt.caller_from_header(header.as_deref()));
                    Ok(data)
                })
                .serve();
            // On shutdown the connection is dropped; clients resubscribe with `afterSeq`.
            if !*shutdown.borrow() {
                tokio::select! {
                    () = serve => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => {}
                }
            }
            metrics::gauge!("onsale_websocket_connections").decrement(1.0);
        })
}
/// The `x-admission-token` header (a waiting-room admission), attached next to the caller.
fn admission_token(headers: &HeaderMap) -> crate::waiting_room::AdmissionToken {
    crate::waiting_room::AdmissionToken(
        headers
            .get(crate::waiting_room::ADMISSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
    )
}
