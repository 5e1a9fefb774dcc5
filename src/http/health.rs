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
    let db_ok = tokio::time::timeout(Duration::from_secs(1), state.booking.db().conn.ping())
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

/// Prometheus text format. Pool and bus gauges are sampled at scrape time.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let conn = &state.booking.db().conn;
    let (size, idle) = if state.booking.db().is_postgres() {
        let pool = conn.get_postgres_connection_pool();
        (pool.size(), pool.num_idle())
    } else {
        let pool = conn.get_sqlite_connection_pool();
        (pool.size(), pool.num_idle())
    };
    let idle = u32::try_from(idle).unwrap_or(u32::MAX);
    metrics::gauge!("onsale_db_pool_connections", "state" => "idle").set(f64::from(idle));
    metrics::gauge!("onsale_db_pool_connections", "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
    metrics::gauge!("onsale_seat_bus_healthy").set(if state.booking.bus().healthy() {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("onsale_seat_gate_breaker_open").set(if state.booking.gate().breaker_open() {
        1.0
    } else {
        0.0
    });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
