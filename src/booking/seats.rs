//! Writing a seat's claim. A seat's status, hold, hold expiry and booking columns always
//! change together, and every change bumps its version.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{EntityTrait, UpdateMany};

use crate::domain::status::SeatStatus;
use entity::seat;

/// Who a seat belongs to after a change.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Claim<'a> {
    Free,
    Held {
        hold_id: &'a str,
        expires_at_ms: i64,
    },
    Booked {
        booking_id: &'a str,
    },
}

/// An `UPDATE seats` that sets the claim; the caller adds which seats (and their guards).
pub(crate) fn set_claim(claim: Claim<'_>) -> UpdateMany<seat::Entity> {
    let (status, hold_id, expires_at_ms, booking_id) = match claim {
        Claim::Free => (SeatStatus::Available, None, None, None),
        Claim::Held {
            hold_id,
            expires_at_ms,
        } => (SeatStatus::Held, Some(hold_id), Some(expires_at_ms), None),
        Claim::Booked { booking_id } => (SeatStatus::Booked, None, None, Some(booking_id)),
    };
    seat::Entity::update_many()
        .col_expr(seat::Column::Status, Expr::value(status))
        .col_expr(
            seat::Column::HoldId,
            Expr::value(hold_id.map(str::to_owned)),
        )
        .col_expr(seat::Column::HoldExpiresAtMs, Expr::value(expires_at_ms))
        .col_expr(
            seat::Column::BookingId,
            Expr::value(booking_id.map(str::to_owned)),
        )
        .col_expr(
            seat::Column::Version,
            Expr::col(seat::Column::Version).add(1),
        )
}
