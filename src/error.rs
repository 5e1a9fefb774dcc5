//! The one error type of the service layer and its one mapping to the contract's
//! `extensions.code` values.

use async_graphql::ErrorExtensions;
use sea_orm::DbErr;

/// Everything a request can end in, other than success.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadInput(String),
    #[error("{message}")]
    SeatUnavailable { seat_ids: Vec<i64>, message: String },
    #[error("the hold expired; hold the seats again")]
    HoldExpired,
    #[error("the hold is {0}, not active")]
    HoldNotActive(&'static str),
    #[error("{message}")]
    RetryLater {
        retry_after_ms: u64,
        message: String,
    },
    /// A bug or an unexpected failure; the cause is logged, never sent to clients.
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    /// The contract's `extensions.code` for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadInput(_) => "BAD_USER_INPUT",
            Self::SeatUnavailable { .. } => "SEAT_UNAVAILABLE",
            Self::HoldExpired => "HOLD_EXPIRED",
            Self::HoldNotActive(_) => "HOLD_NOT_ACTIVE",
            Self::RetryLater { .. } => "RETRY_LATER",
            Self::Internal(_) => "INTERNAL",
        }
    }

    pub fn retry_later(retry_after_ms: u64, message: impl Into<String>) -> Self {
        Self::RetryLater {
            retry_after_ms,
            message: message.into(),
        }
    }

    pub fn seat_unavailable(seat_ids: Vec<i64>) -> Self {
        let message = if seat_ids.is_empty() {
            "not enough seats are available".to_owned()
        } else {
            let list: Vec<String> = seat_ids.iter().map(i64::to_string).collect();
            format!(
                "seat(s) {} already taken; pick other seats",
                list.join(", ")
            )
        };
        Self::SeatUnavailable { seat_ids, message }
    }

    /// Whether retrying the same operation may succeed (the database said "try again").
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RetryLater { .. })
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        match crate::booking::db::classify(&err) {
            crate::booking::db::DbFailure::Transient => {
                tracing::debug!(error = %err, "transient database failure");
                Self::retry_later(50, "the database is busy; try again shortly")
            }
            crate::booking::db::DbFailure::SeatTaken => Self::seat_unavailable(Vec::new()),
            crate::booking::db::DbFailure::BadValue => {
                Self::BadInput("a value could not be stored (check for control characters or out-of-range numbers)".into())
            }
            crate::booking::db::DbFailure::Other => Self::Internal(err.to_string()),
        }
    }
}

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
                Self::SeatUnavailable { seat_ids, .. } => {
                    let ids: Vec<String> = seat_ids.iter().map(i64::to_string).collect();
                    ext.set("seatIds", ids);
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
