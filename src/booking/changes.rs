//! The append-only seat-change log: every state change of a seat gets the next `seq` of its
//! event, in the same transaction as the change itself.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::booking::model::{SeatStatus, now_ms};
use crate::error::AppError;
use crate::realtime::SeatChange;
use entity::{event, seat_change};

/// A change about to be logged (its `seq` is assigned by [`append`]).
#[derive(Clone, Debug)]
pub struct PendingChange {
    pub seat_id: i64,
    pub status: SeatStatus,
    pub hold_expires_at_ms: Option<i64>,
}

/// Logs `pending` for `event_id` and returns the changes with their `seq`. The event's counter
/// row is the last thing a write transaction touches, so its lock is held only until commit.
pub async fn append<C: ConnectionTrait>(
    txn: &C,
    event_id: i64,
    pending: Vec<PendingChange>,
) -> Result<Vec<SeatChange>, AppError> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let n = i64::try_from(pending.len()).unwrap_or(i64::MAX);
    let updated = event::Entity::update_many()
        .col_expr(event::Column::Seq, Expr::col(event::Column::Seq).add(n))
        .filter(event::Column::Id.eq(event_id))
        .exec_with_returning(txn)
        .await?;
    let last = updated
        .first()
        .map(|e| e.seq)
        .ok_or_else(|| AppError::NotFound(format!("event {event_id} does not exist")))?;
    let first = last - n + 1;
    let now = now_ms();
    let changes: Vec<SeatChange> = pending
        .into_iter()
        .zip(first..)
        .map(|(p, seq)| SeatChange {
            event_id,
            seat_id: p.seat_id,
            status: p.status,
            hold_expires_at_ms: p.hold_expires_at_ms,
            seq,
        })
        .collect();
    seat_change::Entity::insert_many(changes.iter().map(|c| seat_change::ActiveModel {
        event_id: Set(c.event_id),
        seq: Set(c.seq),
        seat_id: Set(c.seat_id),
        status: Set(c.status.as_str().to_owned()),
        hold_expires_at_ms: Set(c.hold_expires_at_ms),
        created_at_ms: Set(now),
        ..Default::default()
    }))
    .exec(txn)
    .await?;
    Ok(changes)
}
