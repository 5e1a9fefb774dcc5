//! GraphQL over HTTP (`POST /graphql`); WebSocket is in [`super::websocket`].

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use async_graphql::{BatchRequest, BatchResponse, Executor};
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, BODY_LIMIT_BYTES, body};
use crate::graphql::extensions::{ClientIp, error_code};
use crate::graphql::limits::{self, MAX_JSON_NESTING};

/// Queries and mutations. Malformed JSON is a plain 400; the bearer token becomes the
/// request's caller; errors the engine raises without a code (parse, validation, depth or
/// complexity limits) get `BAD_USER_INPUT`.
pub async fn graphql(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let body = match body::read(
        &headers,
        body,
        BODY_LIMIT_BYTES,
        state.connections.body_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(answer) => {
            metrics::counter!("onsale_graphql_requests_total", "code" => "BAD_BODY").increment(1);
            return answer;
        }
    };
    // Measured before serde_json or async-graphql recurse into it.
    let parsed = limits::json_nesting(&body, MAX_JSON_NESTING + 2)
        .map_err(|refusal| refusal.to_string())
        .and_then(|()| {
            serde_json::from_slice::<BatchRequest>(&body)
                .map_err(|err| format!("the request body is not valid GraphQL JSON: {err}"))
        });
    let request = match parsed {
        Ok(request) => request,
        Err(message) => {
            metrics::counter!("onsale_graphql_requests_total", "code" => "MALFORMED_JSON")
                .increment(1);
            return body::bad_request(StatusCode::BAD_REQUEST, message);
        }
    };
    if let BatchRequest::Batch(ops) = &request
        && ops.len() > crate::graphql::MAX_BATCH
    {
        metrics::counter!("onsale_graphql_requests_total", "code" => "BAD_USER_INPUT").increment(1);
        return body::bad_request(
            StatusCode::BAD_REQUEST,
            format!(
                "at most {} operations in one batch",
                crate::graphql::MAX_BATCH
            ),
        );
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
pub(super) fn client_ip(
    headers: &HeaderMap,
    peer: SocketAddr,
    trust_forwarded_for: bool,
) -> IpAddr {
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
