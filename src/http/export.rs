//! `GET /admin/events/{id}/bookings.csv`: the bookings of an event as CSV, streamed.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use super::AppState;
use crate::domain::input::parse_numeric_id;
use crate::error::AppError;

pub async fn bookings_csv(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let caller = state
        .jwt
        .caller_from_header(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
        .await;
    let started = async {
        let event_id = parse_numeric_id(&event_id, "event")
            .map_err(|_| AppError::NotFound(format!("event {event_id} does not exist")))?;
        state.booking.export_bookings_csv(&caller, event_id).await
    }
    .await;
    match started {
        Ok(stream) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"bookings.csv\"",
                ),
            ],
            Body::from_stream(stream.map_err(|e| std::io::Error::other(e.to_string()))),
        )
            .into_response(),
        Err(err) => {
            let status = match &err {
                AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                AppError::Forbidden(_) => StatusCode::FORBIDDEN,
                AppError::NotFound(_) => StatusCode::NOT_FOUND,
                AppError::RetryLater { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, format!("{}\n", err)).into_response()
        }
    }
}
