//! GraphQL over HTTP (`POST /graphql`, and `GET /graphql` for queries); WebSocket is in
//! [`super::websocket`]. `seatMap` answers come from [`super::read_cache`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use async_graphql::{BatchRequest, BatchResponse, Executor, Request, Variables};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::read_cache::{Answer, Coding, Flown, Kind, Lookup, ReadCache};
use super::{AppState, BODY_LIMIT_BYTES, body};
use crate::auth::Caller;
use crate::booking::events::MapState;
use crate::domain::clock::now_ms;
use crate::graphql::cache_hint::CacheHint;
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
    let request = match request {
        BatchRequest::Single(request) => {
            return one(&state, request, &headers, peer, Via::Post, started).await;
        }
        BatchRequest::Batch(ops) => ops,
    };
    if request.len() > crate::graphql::MAX_BATCH {
        metrics::counter!("onsale_graphql_requests_total", "code" => "BAD_USER_INPUT").increment(1);
        return body::bad_request(
            StatusCode::BAD_REQUEST,
            format!(
                "at most {} operations in one batch",
                crate::graphql::MAX_BATCH
            ),
        );
    }
    let caller = caller(&state, &headers).await;
    let client_ip = client_ip(&headers, peer, state.trust_forwarded_for);
    let execution = state.schema.execute_batch(
        BatchRequest::Batch(request)
            .data(caller)
            .data(ClientIp(client_ip))
            .data(admission_token(&headers)),
    );
    // Every request answers within a bound; a request cut short rolls back.
    let Ok(response) = tokio::time::timeout(state.request_timeout, execution).await else {
        return too_long();
    };
    // Codes are already on every error (the schema's `ErrorCodes` extension).
    count(first_code(&response), started);
    Json(response).into_response()
}

/// `GET /graphql`: read-only queries in the URL (`query`, `operationName`, and `variables`
/// and `extensions` as JSON), so that browsers and CDNs can cache them; with persisted
/// queries the text itself can stay out of the URL. Without `query` or `extensions` it is
/// the GraphiQL page.
pub async fn graphql_get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let started = Instant::now();
    let params = match Query::<GetParams>::try_from_uri(&uri) {
        Ok(Query(params)) => params,
        Err(err) => return body::bad_request(StatusCode::BAD_REQUEST, err.body_text()),
    };
    if params.query.is_none() && params.extensions.is_none() {
        return super::graphiql::page(State(state)).await;
    }
    let mut request = Request::new(params.query.unwrap_or_default());
    request.operation_name = params.operation_name;
    let json = |text: Option<String>, what: &str| -> Result<Option<serde_json::Value>, String> {
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        limits::json_nesting(text.as_bytes(), MAX_JSON_NESTING + 2)
            .map_err(|refusal| refusal.to_string())?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|err| format!("`{what}` is not valid JSON: {err}"))
    };
    let parsed = json(params.variables, "variables").and_then(|variables| {
        let extensions = json(params.extensions, "extensions")?;
        Ok((variables, extensions))
    });
    let (variables, extensions) = match parsed {
        Ok(both) => both,
        Err(message) => return body::bad_request(StatusCode::BAD_REQUEST, message),
    };
    if let Some(variables) = variables {
        request.variables = Variables::from_json(variables);
    }
    if let Some(extensions) = extensions {
        match serde_json::from_value(extensions) {
            Ok(extensions) => request.extensions = extensions,
            Err(err) => {
                return body::bad_request(
                    StatusCode::BAD_REQUEST,
                    format!("`extensions` is not a JSON object: {err}"),
                );
            }
        }
    }
    one(&state, request, &headers, peer, Via::Get, started).await
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Get,
    Post,
}

/// One operation, over `GET` or `POST`: persisted query resolved, `seatMap` answered from
/// the read cache where it can be, everything else executed.
async fn one(
    state: &AppState,
    mut request: Request,
    headers: &HeaderMap,
    peer: SocketAddr,
    via: Via,
    started: Instant,
) -> Response {
    let kind = state
        .persisted
        .resolve(&mut request)
        .and_then(|()| state.read_cache.kind(&mut request));
    let kind = match kind {
        Ok(kind) => kind,
        Err(err) => {
            let response = async_graphql::Response::from_errors(vec![err]);
            count(single_code(&response), started);
            return Json(response).into_response();
        }
    };
    if via == Via::Get && kind == Kind::Write {
        count("BAD_USER_INPUT".to_owned(), started);
        let mut answer = Json(json!({"data": null, "errors": [{
            "message": "mutations and subscriptions are sent with POST",
            "extensions": {"code": "BAD_USER_INPUT"}
        }]}))
        .into_response();
        *answer.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        answer
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return answer;
    }
    let caller = caller(state, headers).await;
    let shared = match (&kind, &caller) {
        (Kind::SeatMap(arg), Caller::Anonymous | Caller::User(_)) => {
            let admin = matches!(&caller, Caller::User(user) if user.admin);
            state.read_cache.lookup(&request, arg, admin)
        }
        _ => None,
    };
    let request = request
        .data(caller)
        .data(ClientIp(client_ip(
            headers,
            peer,
            state.trust_forwarded_for,
        )))
        .data(admission_token(headers));
    match shared {
        Some(lookup) => seat_map(state, request, lookup, headers, started).await,
        None => match execute(state, request).await {
            Some(response) => {
                count(single_code(&response), started);
                Json(response).into_response()
            }
            None => too_long(),
        },
    }
}

/// A `seatMap` query: the stored bytes if they show the event as it is now, else executed,
/// stored when nothing changed meanwhile, and served.
async fn seat_map(
    state: &AppState,
    request: Request,
    lookup: Lookup,
    headers: &HeaderMap,
    started: Instant,
) -> Response {
    if let Ok(answer) = stored(state, &lookup).await {
        return serve_stored(&answer, headers, started).await;
    }
    // Readers that miss together: one builds, the others wait for its answer.
    // A build meanwhile from a state read after this request began, even one not stored (the
    // event changed during it), shows every change this reader must see.
    let patience = Instant::now() + state.request_timeout / 2;
    let flight = loop {
        match state.read_cache.flight(&lookup, patience, started).await {
            Flown::Shared(answer) => return serve_stored(&answer, headers, started).await,
            Flown::Build(flight) => break flight,
            Flown::Recheck => {
                if let Ok(answer) = stored(state, &lookup).await {
                    return serve_stored(&answer, headers, started).await;
                }
            }
        }
    };
    let read_at = Instant::now();
    let before = match stored(state, &lookup).await {
        Ok(answer) => return serve_stored(&answer, headers, started).await,
        Err(now) => now,
    };
    if let Some(answer) = flight.built_since(started) {
        return serve_stored(&answer, headers, started).await;
    }
    let hint = CacheHint::unlimited();
    let Some(response) = execute(state, request.data(hint.clone())).await else {
        return too_long();
    };
    metrics::counter!("onsale_seat_map_answers_total", "source" => "built").increment(1);
    count(single_code(&response), started);
    let Some(before) = before.filter(|_| response.errors.is_empty()) else {
        return Json(response).into_response();
    };
    // Stored only if it shows exactly `before`: nothing committed while it was built.
    let after = state
        .booking
        .map_state(lookup.event_id)
        .await
        .ok()
        .flatten();
    let Ok(body) = serde_json::to_vec(&response) else {
        return Json(response).into_response();
    };
    let answer = ReadCache::answer(before.clone(), &hint, Bytes::from(body));
    if after.as_ref() == Some(&before) {
        state.read_cache.put(lookup, Arc::clone(&answer));
    }
    flight.built(read_at, &answer);
    // The next build may begin while this answer is compressed and sent.
    drop(flight);
    serve(&answer, headers).await
}

/// The stored answer for `lookup` if it shows the event as it is now; else the event's
/// state as read now (`None`: not readable, or no such event).
async fn stored(state: &AppState, lookup: &Lookup) -> Result<Arc<Answer>, Option<MapState>> {
    let now = state
        .booking
        .map_state(lookup.event_id)
        .await
        .ok()
        .flatten();
    match &now {
        Some(event) => state.read_cache.get(lookup, event, now_ms()).ok_or(now),
        None => Err(None),
    }
}

/// [`serve`] of an answer that came from the store, counted as such.
async fn serve_stored(answer: &Answer, headers: &HeaderMap, started: Instant) -> Response {
    metrics::counter!("onsale_seat_map_answers_total", "source" => "cache").increment(1);
    count("OK".to_owned(), started);
    serve(answer, headers).await
}

/// A stored answer: `304` when the client has it, else its bytes in the best coding the
/// client accepts.
async fn serve(answer: &Answer, headers: &HeaderMap) -> Response {
    let mut response = if answer.matches(headers) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let coding = Coding::negotiate(headers);
        let mut body = answer.body(coding).await;
        let mut encoding = coding.header();
        if body.is_empty() {
            // Compression failed (logged nowhere worth it): the plain bytes are as good.
            body = answer.body(Coding::Identity).await;
            encoding = None;
        }
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(encoding) = encoding {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, encoding);
        }
        response
    };
    let out = response.headers_mut();
    out.insert(header::ETAG, answer.etag().clone());
    // Stored anywhere, but checked with the server (the ETag) before every use.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::VARY,
        HeaderValue::from_static("Accept-Encoding, Authorization"),
    );
    response
}

/// Runs one request within the request timeout (`None`: it took too long and was dropped,
/// which rolls back whatever it had begun).
async fn execute(state: &AppState, request: Request) -> Option<async_graphql::Response> {
    tokio::time::timeout(state.request_timeout, state.schema.execute(request))
        .await
        .ok()
}

fn too_long() -> Response {
    metrics::counter!("onsale_graphql_requests_total", "code" => "RETRY_LATER").increment(1);
    Json(json!({"data": null, "errors": [{
        "message": "the request took too long; try again shortly",
        "extensions": {"code": "RETRY_LATER", "retryAfterMs": 1000}
    }]}))
    .into_response()
}

fn count(code: String, started: Instant) {
    metrics::counter!("onsale_graphql_requests_total", "code" => code.clone()).increment(1);
    metrics::histogram!("onsale_graphql_request_seconds", "code" => code)
        .record(started.elapsed().as_secs_f64());
}

async fn caller(state: &AppState, headers: &HeaderMap) -> Caller {
    state
        .jwt
        .caller_from_header(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
        .await
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

/// [`first_code`] of one response.
fn single_code(resp: &async_graphql::Response) -> String {
    resp.errors
        .first()
        .map_or_else(|| "OK".to_owned(), |e| error_code(e).to_owned())
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
