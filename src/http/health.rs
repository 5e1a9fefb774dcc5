//! Liveness, readiness and metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;

/// 200 while the process runs.
pub async fn healthz() -> &'static str {
    "ok"
}

/// 200 when the database (and Redis, if configured) answer within a second; 503 otherwise.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let db_ok = tokio::time::timeout(Duration::from_secs(1), state.service.db().conn.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let redis_ok = match state.redis.clone() {
        None => true,
        Some(mut conn) => tokio::time::timeout(Duration::from_secs(1), async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .is_ok_and(|r| r.is_ok()),
    };
    let status = if db_ok && redis_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = format!(
        "database: {}\nredis: {}\n",
        if db_ok { "ok" } else { "down" },
        match (&state.redis, redis_ok) {
            (None, _) => "not configured",
            (Some(_), true) => "ok",
            (Some(_), false) => "down",
        }
    );
    (status, body)
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
