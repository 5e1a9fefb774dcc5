//! Writing a seat's claim. A seat's status, hold, hold expiry and booking columns always
//! change together, and every change bumps its version.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, UpdateMany};

use crate::domain::status::SeatStatus;
use crate::error::AppError;
use entity::{hold_seat, seat};

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

/// The seats among `locked` still stored HELD by a hold that ran out (the caller checked they
/// are claimable): their old hold lets go of them, so they can take a new claim. Returns them.
pub(crate) async fn reclaim_run_out<C: ConnectionTrait>(
    txn: &C,
    locked: &[seat::Model],
) -> Result<Vec<i64>, AppError> {
    let reclaimed: Vec<i64> = locked
        .iter()
        .filter(|s| s.status == SeatStatus::Held)
        .map(|s| s.id)
        .collect();
    if !reclaimed.is_empty() {
        hold_seat::Entity::update_many()
            .col_expr(hold_seat::Column::Active, Expr::value(false))
            .filter(hold_seat::Column::SeatId.is_in(reclaimed.clone()))
            .filter(hold_seat::Column::Active.eq(true))
            .exec(txn)
            .await?;
    }
    Ok(reclaimed)
}
