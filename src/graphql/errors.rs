//! The one mapping from service errors to GraphQL errors: the contract's `extensions.code`
//! and the extensions each code carries. Internal causes are logged, never sent.

use async_graphql::{ErrorExtensions, ScalarType};

use super::types::datetime;

use crate::error::AppError;

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        let message = match self {
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
                Self::SeatUnavailable { seat_ids, .. } | Self::NotBlocked { seat_ids } => {
                    let ids: Vec<String> = seat_ids.iter().map(i64::to_string).collect();
                    ext.set("seatIds", ids);
                }
                Self::AreaUnavailable { area_ids, .. } => {
                    let ids: Vec<String> = area_ids.iter().map(i64::to_string).collect();
                    ext.set("seatIds", Vec::<String>::new());
                    ext.set("areaIds", ids);
                }
                Self::NotOnSale {
                    sales_start_at_ms: Some(start),
                    ..
                } => {
                    ext.set("salesStartAt", datetime(*start).to_value());
                }
                Self::LimitExceeded { over, .. } => {
                    ext.set("limit", over.limit);
                    ext.set("kind", over.kind.as_str());
                }
                Self::AlreadyCheckedIn { checked_in_at_ms } => {
                    ext.set("checkedInAt", datetime(*checked_in_at_ms).to_value());
                }
                Self::TicketInvalid(reason) => {
                    ext.set("reason", reason.as_str());
                }
                Self::RetryLater { retry_after_ms, .. } => {
                    ext.set("retryAfterMs", *retry_after_ms);
                }
                _ => {}
            }
        })
    }
}

/// Converts service results into GraphQL results with the contract's error codes.
pub trait GqlResultExt<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> GqlResultExt<T> for Result<T, AppError> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|e| e.extend())
    }
}
