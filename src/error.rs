//! The one error type of the service layer, with the contract's `extensions.code` of each
//! variant. It knows neither GraphQL nor the database: `graphql::errors` turns it into a
//! GraphQL error, `db::errors` turns database errors into it.

use crate::domain::sale::{LimitKind, NotOnSale, OverLimit};
use crate::domain::status::EventStatus;
use crate::domain::ticket::TicketInvalid;

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
    /// Areas with fewer available places than a hold (or a block) asked for.
    #[error("{message}")]
    AreaUnavailable { area_ids: Vec<i64>, message: String },
    /// `unblockSeats` of seats that are not blocked.
    #[error("these seats are not blocked")]
    NotBlocked { seat_ids: Vec<i64> },
    #[error("the hold expired; hold the seats again")]
    HoldExpired,
    #[error("the hold is {0}, not active")]
    HoldNotActive(&'static str),
    /// The event takes no new holds now (`sales_start_at_ms`: when its window opens).
    #[error("{message}")]
    NotOnSale {
        sales_start_at_ms: Option<i64>,
        message: String,
    },
    /// Over a per-event limit.
    #[error("{message}")]
    LimitExceeded { over: OverLimit, message: String },
    /// The ticket was redeemed already, at `checked_in_at_ms`.
    #[error("this ticket was already checked in")]
    AlreadyCheckedIn { checked_in_at_ms: i64 },
    /// The ticket lets nobody in.
    #[error("this ticket is not valid here ({})", .0.as_str())]
    TicketInvalid(TicketInvalid),
    #[error("{message}")]
    RetryLater {
        retry_after_ms: u64,
        message: String,
    },
    /// A worker's lease on this work (named) was taken over: a newer holder does it, so this
    /// one must neither apply nor answer anything. Workers act on it; clients never see it.
    #[error("the lease of {0} was taken over")]
    LeaseLost(&'static str),
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
            Self::BadInput(_) | Self::NotBlocked { .. } => "BAD_USER_INPUT",
            Self::SeatUnavailable { .. } | Self::AreaUnavailable { .. } => "SEAT_UNAVAILABLE",
            Self::HoldExpired => "HOLD_EXPIRED",
            Self::HoldNotActive(_) => "HOLD_NOT_ACTIVE",
            Self::NotOnSale { .. } => "NOT_ON_SALE",
            Self::LimitExceeded { .. } => "LIMIT_EXCEEDED",
            Self::AlreadyCheckedIn { .. } => "ALREADY_CHECKED_IN",
            Self::TicketInvalid(_) => "TICKET_INVALID",
            Self::RetryLater { .. } => "RETRY_LATER",
            Self::LeaseLost(_) | Self::Internal(_) => "INTERNAL",
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

    pub fn area_unavailable(area_ids: Vec<i64>) -> Self {
        let list: Vec<String> = area_ids.iter().map(i64::to_string).collect();
        let message = format!(
            "area(s) {} have fewer places available than asked",
            list.join(", ")
        );
        Self::AreaUnavailable { area_ids, message }
    }

    /// Why an event takes no new holds, as a client reads it.
    pub fn not_on_sale(why: NotOnSale) -> Self {
        let (sales_start_at_ms, message) = match why {
            NotOnSale::Status(EventStatus::Draft) => (None, "the event is not on sale yet".into()),
            NotOnSale::Status(EventStatus::Paused) => (None, "sales are paused".into()),
            NotOnSale::Status(EventStatus::Closed) => (None, "sales are closed".into()),
            NotOnSale::Status(EventStatus::Cancelled) => (None, "the event is cancelled".into()),
            NotOnSale::Status(EventStatus::OnSale) | NotOnSale::Over => {
                (None, "sales are over".into())
            }
            NotOnSale::NotYet { sales_start_at_ms } => (
                Some(sales_start_at_ms),
                "sales have not opened yet; see extensions.salesStartAt".to_owned(),
            ),
        };
        Self::NotOnSale {
            sales_start_at_ms,
            message,
        }
    }

    /// Over a per-event limit, as a client reads it.
    pub fn limit_exceeded(over: OverLimit) -> Self {
        let limit = over.limit;
        let message = match over.kind {
            LimitKind::Order => format!("at most {limit} seat(s) and place(s) per hold"),
            LimitKind::Buyer => {
                format!("at most {limit} seat(s) and place(s) per buyer for this event")
            }
            LimitKind::Extensions => "this hold cannot be extended any further".to_owned(),
        };
        Self::LimitExceeded { over, message }
    }

    /// Whether retrying the same operation may succeed (the database said "try again").
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RetryLater { .. })
    }
}
