//! The append-only seat-change log: every state change of a seat gets the next `seq` of its
//! event — on SQLite in the transaction that made the change, on PostgreSQL right after that
//! transaction commits (`super::sequencer`). It is the source of truth that the bus only
//! carries: replay (`afterSeq`), gap filling and the seat-map cache read it.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::domain::clock::now_ms;
use crate::domain::seat_change::{PendingChange, SeatChange};
use crate::error::AppError;
use crate::realtime::Published;
use entity::{event, seat_change, seat_change_pending};

/// Logs `pending` for `event_id` in the transaction that made the changes.
///
/// On PostgreSQL the changes are written to `seat_change_pending` without a `seq`: the write
/// takes no lock of the event's, so the writers of one event commit side by side, and the
/// event's sequencer numbers the committed changes right after (the returned [`Published`]
/// names the event in `unnumbered`; publishing it runs the sequencer). On SQLite, whose one
/// writer holds the whole database anyway, the changes are numbered here, under the event's
/// counter, and returned with their `seq`.
pub async fn append<C: ConnectionTrait>(
    txn: &C,
    event_id: i64,
    pending: Vec<PendingChange>,
) -> Result<Published, AppError> {
    if pending.is_empty() {
        return Ok(Published::default());
    }
    let now = now_ms();
    if txn.get_database_backend() == DbBackend::Postgres {
        seat_change_pending::Entity::insert_many(pending.into_iter().map(|p| {
            seat_change_pending::ActiveModel {
                event_id: Set(event_id),
                seat_id: Set(p.seat_id),
                status: Set(p.status),
                hold_expires_at_ms: Set(p.hold_expires_at_ms),
                created_at_ms: Set(now),
                ..Default::default()
            }
        }))
        .exec_without_returning(txn)
        .await?;
        return Ok(Published {
            unnumbered: Some(event_id),
            ..Published::default()
        });
    }
    let n = i64::try_from(pending.len()).unwrap_or(i64::MAX);
    let last = event::Entity::update_many()
        .col_expr(event::Column::Seq, Expr::col(event::Column::Seq).add(n))
        .filter(event::Column::Id.eq(event_id))
        .exec_with_returning(txn)
        .await?
        .pop()
        .ok_or_else(|| AppError::NotFound(format!("event {event_id} does not exist")))?
        .seq;
    let changes: Vec<SeatChange> = pending
        .into_iter()
        .zip(last - n + 1..)
        .map(|(p, seq)| SeatChange {
            event_id,
            seat_id: p.seat_id,
            status: p.status,
            hold_expires_at_ms: p.hold_expires_at_ms,
            seq,
        })
        .collect();
    insert_numbered(txn, &changes, now).await?;
    Ok(changes.into())
}

/// Writes numbered changes to the log.
async fn insert_numbered<C: ConnectionTrait>(
    txn: &C,
    changes: &[SeatChange],
    now: i64,
) -> Result<(), AppError> {
    if changes.is_empty() {
        return Ok(());
    }
    seat_change::Entity::insert_many(changes.iter().map(|c| seat_change::ActiveModel {
        event_id: Set(c.event_id),
        seq: Set(c.seq),
        seat_id: Set(c.seat_id),
        status: Set(c.status),
        hold_expires_at_ms: Set(c.hold_expires_at_ms),
        created_at_ms: Set(now),
        ..Default::default()
    }))
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// The event's latest `seq` (`NOT_FOUND` for an unknown event).
pub async fn current_seq<C: ConnectionTrait>(conn: &C, event_id: i64) -> Result<i64, AppError> {
    event::Entity::find_by_id(event_id)
        .select_only()
        .column(event::Column::Seq)
        .into_tuple::<i64>()
        .one(conn)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("event {event_id} does not exist")))
}

/// Logged changes with `after < seq <= upto`, in order, at most `limit` of them.
pub async fn between<C: ConnectionTrait>(
    conn: &C,
    event_id: i64,
    after: i64,
    upto: i64,
    limit: Option<u64>,
) -> Result<Vec<SeatChange>, AppError> {
    let rows = seat_change::Entity::find()
        .filter(seat_change::Column::EventId.eq(event_id))
        .filter(seat_change::Column::Seq.gt(after))
        .filter(seat_change::Column::Seq.lte(upto))
        .order_by_asc(seat_change::Column::Seq)
        .limit(limit)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| SeatChange {
            event_id: r.event_id,
            seat_id: r.seat_id,
            status: r.status,
            hold_expires_at_ms: r.hold_expires_at_ms,
            seq: r.seq,
        })
        .collect())
}

/// The oldest `seq` still kept for the event, if any.
pub async fn oldest_seq<C: ConnectionTrait>(
    conn: &C,
    event_id: i64,
) -> Result<Option<i64>, AppError> {
    Ok(seat_change::Entity::find()
        .filter(seat_change::Column::EventId.eq(event_id))
        .order_by_asc(seat_change::Column::Seq)
        .one(conn)
        .await?
        .map(|r| r.seq))
}

/// Deletes log rows written before `cutoff_ms`; returns how many.
pub async fn prune_before<C: ConnectionTrait>(conn: &C, cutoff_ms: i64) -> Result<u64, AppError> {
    Ok(seat_change::Entity::delete_many()
        .filter(seat_change::Column::CreatedAtMs.lt(cutoff_ms))
        .exec(conn)
        .await?
        .rows_affected)
}
