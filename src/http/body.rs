//! Reading a request body within bounds: at most a limit kept in memory, within a deadline.
//!
//! A body over the limit is read on and thrown away (up to [`DRAIN_LIMIT_BYTES`]) before the
//! 413 goes out, so a client that sends its whole body before reading the answer gets the
//! answer instead of a reset connection; a body that does not arrive in time gets a 408. Both
//! say `Connection: close`, since the rest of such a connection cannot be trusted.

use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;

/// Most bytes of an oversized body read (and discarded) so that its client can read the 413;
/// a longer declared body is answered at once.
pub const DRAIN_LIMIT_BYTES: u64 = 64 << 20;

/// A plain JSON `BAD_USER_INPUT` answer, for requests refused before GraphQL runs.
pub fn bad_request(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"errors": [{
            "message": message.into(),
            "extensions": {"code": "BAD_USER_INPUT"}
        }]})),
    )
        .into_response()
}

/// [`bad_request`], closing the connection after it.
pub fn closing_error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = bad_request(status, message);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn too_large(limit: usize) -> Response {
    closing_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// The whole body, if it has at most `limit` bytes and arrives within `timeout`.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > DRAIN_LIMIT_BYTES) {
        return Err(too_large(limit));
    }
    let read = async {
        let mut kept = Vec::with_capacity(declared.map_or(0, |l| l.min(limit as u64) as usize));
        let mut seen: u64 = 0;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                return Err(closing_error(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ));
            };
            seen += chunk.len() as u64;
            if seen > DRAIN_LIMIT_BYTES {
                return Err(too_large(limit));
            }
            if seen <= limit as u64 {
                kept.extend_from_slice(&chunk);
            }
        }
        if seen > limit as u64 {
            return Err(too_large(limit));
        }
        Ok(Bytes::from(kept))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(closing_error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}
