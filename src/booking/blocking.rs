//! Blocking seats: the organizer takes AVAILABLE seats off sale (all or nothing) and puts
//! them back. Each change is logged with the event's next `seq` and published like any other
//! seat change; a blocked seat is never claimable (`rules::claimable`).

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use tracing::instrument;

use super::BookingService;
use super::rules::check_requested;
use super::seats::{Claim, reclaim_run_out, set_claim};
use crate::db::RowLock;
use crate::domain::clock::now_ms;
use crate::domain::input::SeatIds;
use crate::domain::limits::BLOCKED_REASON_MAX_CHARS;
use crate::domain::seat_change::PendingChange;
use crate::domain::status::{SeatStatus, seat_status_at};
use crate::domain::views::SeatView;
use crate::error::AppError;
use crate::realtime::{Published, log};
use entity::seat;

impl BookingService {
    /// Blocks the seats, all or none: each must be AVAILABLE (a held or booked one is
    /// `SEAT_UNAVAILABLE` with its id) or already BLOCKED (left as it is).
    #[instrument(skip_all, fields(event.id = event_id), err(level = "debug"))]
    pub async fn block_seats(
        &self,
        event_id: i64,
        seat_ids: SeatIds,
        reason: Option<String>,
    ) -> Result<Vec<SeatView>, AppError> {
        let reason = reason
            .map(|r| crate::domain::input::parse_label(&r, "reason", BLOCKED_REASON_MAX_CHARS))
            .transpose()?;
        let ids = seat_ids.as_slice();
        let reason = reason.as_deref();
        let published = self
            .db
            .write(|txn| async move {
                let txn = &*txn;
                let locked = self.locked_seats_of(txn, event_id, ids).await?;
                let now = now_ms();
                let to_block: Vec<&seat::Model> = locked
                    .iter()
                    .filter(|s| seat_status_at(s, now) != SeatStatus::Blocked)
                    .collect();
                let unblocked: Vec<seat::Model> = to_block.iter().map(|s| (*s).clone()).collect();
                check_requested(&unblocked, &ids_of(&unblocked), event_id, now)?;
                if to_block.is_empty() {
                    return Ok(Published::default());
                }
                let block_ids = ids_of(&unblocked);
                let reclaimed = reclaim_run_out(txn, &unblocked).await?;
                if !reclaimed.is_empty() {
                    set_claim(Claim::Free)
                        .filter(seat::Column::Id.is_in(reclaimed))
                        .exec(txn)
                        .await?;
                }
                set_blocked(txn, &block_ids, true, reason).await?;
                let pending = block_ids.into_iter().map(PendingChange::blocked).collect();
                log::append(txn, event_id, pending).await
            })
            .await?;
        self.finish_blocking(event_id, ids, published, "seats blocked")
            .await
    }

    /// Puts BLOCKED seats back on sale, all or none: a seat that is not blocked is
    /// `BAD_USER_INPUT` naming it.
    #[instrument(skip_all, fields(event.id = event_id), err(level = "debug"))]
    pub async fn unblock_seats(
        &self,
        event_id: i64,
        seat_ids: SeatIds,
    ) -> Result<Vec<SeatView>, AppError> {
        let ids = seat_ids.as_slice();
        let published = self
            .db
            .write(|txn| async move {
                let txn = &*txn;
                let locked = self.locked_seats_of(txn, event_id, ids).await?;
                let not_blocked: Vec<i64> =
                    locked.iter().filter(|s| !s.blocked).map(|s| s.id).collect();
                if !not_blocked.is_empty() {
                    return Err(AppError::NotBlocked {
                        seat_ids: not_blocked,
                    });
                }
                set_blocked(txn, ids, false, None).await?;
                let pending = ids.iter().copied().map(PendingChange::available).collect();
                log::append(txn, event_id, pending).await
            })
            .await?;
        self.finish_blocking(event_id, ids, published, "seats unblocked")
            .await
    }

    /// Locks the seats (ascending ids) after checking they exist and are the event's.
    async fn locked_seats_of<C: ConnectionTrait>(
        &self,
        txn: &C,
        event_id: i64,
        ids: &[i64],
    ) -> Result<Vec<seat::Model>, AppError> {
        let locked = self.db.lock_seats(txn, ids, RowLock::Wait).await?;
        if let Some(missing) = ids.iter().find(|id| !locked.iter().any(|s| s.id == **id)) {
            return Err(AppError::NotFound(format!("seat {missing} does not exist")));
        }
        if let Some(other) = locked.iter().find(|s| s.event_id != event_id) {
            return Err(AppError::BadInput(format!(
                "seat {} belongs to another event",
                other.id
            )));
        }
        Ok(locked)
    }

    /// Publishes a committed block or unblock and returns the seats as admins see them.
    async fn finish_blocking(
        &self,
        event_id: i64,
        ids: &[i64],
        published: Published,
        what: &'static str,
    ) -> Result<Vec<SeatView>, AppError> {
        self.bus.publish_all(published).await;
        tracing::info!(event.id = event_id, seats = ids.len(), "{what}");
        let now = now_ms();
        Ok(seat::Entity::find()
            .filter(seat::Column::Id.is_in(ids.to_vec()))
            .all(&self.db.conn)
            .await?
            .iter()
            .map(|s| SeatView::of(s, now))
            .collect())
    }
}

fn ids_of(seats: &[seat::Model]) -> Vec<i64> {
    seats.iter().map(|s| s.id).collect()
}

/// Sets or clears the `blocked` flag (and its reason) of `ids`, bumping their version.
async fn set_blocked<C: ConnectionTrait>(
    txn: &C,
    ids: &[i64],
    blocked: bool,
    reason: Option<&str>,
) -> Result<(), AppError> {
    seat::Entity::update_many()
        .col_expr(seat::Column::Blocked, Expr::value(blocked))
        .col_expr(
            seat::Column::BlockedReason,
            Expr::value(reason.map(str::to_owned)),
        )
        .col_expr(
            seat::Column::Version,
            Expr::col(seat::Column::Version).add(1),
        )
        .filter(seat::Column::Id.is_in(ids.to_vec()))
        .exec(txn)
        .await?;
    Ok(())
}
