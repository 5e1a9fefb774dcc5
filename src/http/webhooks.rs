//! `POST /webhooks/stripe`: verified against the raw bytes before anything is parsed.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AppState, BODY_LIMIT_BYTES, body};
use crate::error::AppError;
use crate::payment::{DEFAULT_TOLERANCE_SECS, parse_event, verify_signature};

/// A bad or stale signature is 400 and changes nothing; a transient failure is 503 so Stripe
/// delivers the event again; everything else, processed or ignored, is 200.
pub async fn stripe(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let Some(secret) = state.stripe_webhook_secret.as_deref() else {
        return (
            StatusCode::NOT_FOUND,
            "payments or webhooks are not configured",
        )
            .into_response();
    };
    let body = match body::read(
        &headers,
        body,
        BODY_LIMIT_BYTES,
        state.connections.body_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    if let Err(err) = verify_signature(&body, signature, secret, now, DEFAULT_TOLERANCE_SECS) {
        metrics::counter!("onsale_webhook_results_total", "result" => "bad_signature").increment(1);
        tracing::warn!(error = %err, "rejected a webhook with a bad signature");
        return (StatusCode::BAD_REQUEST, "invalid Stripe-Signature").into_response();
    }
    let event = match parse_event(&body) {
        Ok(event) => event,
        Err(err) => {
            metrics::counter!("onsale_webhook_results_total", "result" => "bad_body").increment(1);
            return (StatusCode::BAD_REQUEST, format!("unreadable event: {err}")).into_response();
        }
    };
    match state.checkout.handle_stripe_event(&event).await {
        Ok(()) => {
            metrics::counter!("onsale_webhook_results_total", "result" => "ok").increment(1);
            (StatusCode::OK, "ok").into_response()
        }
        Err(err @ AppError::RetryLater { .. }) => {
            metrics::counter!("onsale_webhook_results_total", "result" => "retry").increment(1);
            tracing::warn!(error = %err, "webhook not processed yet; Stripe will deliver it again");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
        Err(err) => {
            metrics::counter!("onsale_webhook_results_total", "result" => "error").increment(1);
            tracing::error!(error = %err, "webhook processing failed");
            (StatusCode::SERVICE_UNAVAILABLE, "not processed").into_response()
        }
    }
}
