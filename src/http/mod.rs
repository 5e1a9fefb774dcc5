//! The HTTP surface: router, GraphQL over HTTP and WebSocket, health and metrics.

mod body;
mod demo;
mod embedded;
mod export;
mod graphiql;
mod graphql;
mod health;
mod persisted;
pub mod read_cache;
pub mod server;
mod webhooks;
mod websocket;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::auth::Jwt;
use crate::booking::BookingService;
use crate::checkout::CheckoutService;
use crate::graphql::guard::GuardedSchema;

/// Largest request body accepted (413 above it).
pub const BODY_LIMIT_BYTES: usize = 1 << 20;

/// What every handler can reach: built once at start-up, shared by every request.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub schema: GuardedSchema,
    pub jwt: Arc<Jwt>,
    pub booking: BookingService,
    pub checkout: CheckoutService,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub graphiql: bool,
    /// Whether `POST /dev/token` hands out tokens (dev sign-in for the demo page).
    pub dev_signin: bool,
    pub redis: Option<crate::redis_client::RedisConn>,
    /// Take the client address from `X-Forwarded-For` (behind a trusted proxy only).
    pub trust_forwarded_for: bool,
    /// `whsec_…` for `POST /webhooks/stripe`; `None`: the route answers 404.
    pub stripe_webhook_secret: Option<String>,
    /// Turns true when the server is shutting down (subscriptions then close).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Longest a GraphQL request may run before it is answered `RETRY_LATER`.
    pub request_timeout: Duration,
    /// Timeouts and caps for slow clients and sockets.
    pub connections: crate::config::ConnectionLimits,
    /// WebSockets open per client address.
    pub open_sockets: websocket::OpenSockets,
    /// Seat-map answers as bytes, and the plan of each query text.
    pub read_cache: read_cache::ReadCache,
    /// Query texts by hash (automatic persisted queries).
    pub persisted: persisted::PersistedQueries,
}

/// Cross-origin access: none unless origins are configured (`*` allows any; tokens travel
/// in headers, never cookies, so no credentials are ever allowed).
fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers(Any)
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        layer.allow_origin(AllowOrigin::list(
            origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        ))
    }
}

/// The whole router.
pub fn router(state: AppState, cors_origins: &[String]) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/", get(graphiql::page))
        .route("/graphql", post(graphql::graphql).get(graphql::graphql_get))
        .route("/graphql/ws", get(websocket::websocket))
        .route("/webhooks/stripe", post(webhooks::stripe))
        .route("/admin/events/{id}/bookings.csv", get(export::bookings_csv))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(graphiql::assets())
        .merge(demo::routes())
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        // Answers the client may take compressed (seat maps bring their own compressed bytes).
        .layer(
            CompressionLayer::new()
                .compress_when(DefaultPredicate::new().and(SizeAbove::new(1024))),
        )
        .layer(cors(cors_origins))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(
            |req: &axum::http::Request<axum::body::Body>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let span = tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %id,
                    otel.name = tracing::field::Empty,
                    otel.kind = tracing::field::Empty,
                );
                if crate::telemetry::traces_enabled() {
                    span.record(
                        "otel.name",
                        format!("{} {}", req.method(), req.uri().path()),
                    );
                    span.record("otel.kind", "server");
                    crate::telemetry::set_remote_parent(&span, req.headers());
                }
                span
            },
        ))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}
