//! One subscriber's ordered feed of an event's seat changes: replay from the log after
//! `afterSeq`, then live changes from the bus, with no duplicate and no gap at the seam.
//! A change that arrives ahead of one not yet seen is preceded by the missing ones, read
//! from the log (every published change is committed, so the log has them).

use futures::Stream;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::broadcast::error::RecvError;

use super::SeatChange;
use crate::booking::BookingService;
use crate::booking::model::SeatStatus;
use crate::error::AppError;
use entity::{event, seat_change};

/// Most changes replayed from the log in one read.
const REPLAY_BATCH: u64 = 5_000;

impl BookingService {
    /// The feed for `event_id`, starting after `after_seq` (or from now).
    pub async fn seat_change_feed(
        &self,
        event_id: i64,
        after_seq: Option<i64>,
    ) -> Result<impl Stream<Item = Result<SeatChange, AppError>> + use<>, AppError> {
        // Subscribe before reading where we are, so nothing falls between the two.
        let mut live = self.bus().subscribe(event_id);
        let current = event::Entity::find_by_id(event_id)
            .one(&self.db().conn)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("event {event_id} does not exist")))?
            .seq;
        let start = match after_seq {
            None => current,
            Some(seq) if seq < 0 => {
                return Err(AppError::BadInput("afterSeq must not be negative".into()));
            }
            Some(seq) if seq > current => {
                return Err(AppError::BadInput(format!(
                    "afterSeq {seq} is ahead of the event's latest change {current}"
                )));
            }
            Some(seq) => {
                self.ensure_retained(event_id, seq, current).await?;
                seq
            }
        };
        let service = self.clone();
        Ok(async_stream::stream! {
            let mut last = start;
            // Replay what the client missed, in batches, up to `current`.
            while last < current {
                match service.logged_changes(event_id, last, current).await {
                    Ok(batch) if batch.is_empty() => break,
                    Ok(batch) => for change in batch { last = change.seq; yield Ok(change); },
                    Err(err) => { yield Err(err); return; }
                }
            }
            loop {
                match live.recv().await {
                    Ok(change) if change.seq <= last => continue,
                    Ok(change) => {
                        if change.seq > last + 1 {
                            match service.logged_changes(event_id, last, change.seq - 1).await {
                                Ok(missing) => for m in missing { last = m.seq; yield Ok(m); },
                                Err(err) => { yield Err(err); return; }
                            }
                        }
                        if change.seq > last {
                            last = change.seq;
                            yield Ok(change);
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        yield Err(AppError::retry_later(0, format!(
                            "this subscriber fell too far behind; resubscribe with afterSeq {last}"
                        )));
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// Changes with `after < seq <= upto`, in order (at most one batch).
    async fn logged_changes(
        &self,
        event_id: i64,
        after: i64,
        upto: i64,
    ) -> Result<Vec<SeatChange>, AppError> {
        let rows = seat_change::Entity::find()
            .filter(seat_change::Column::EventId.eq(event_id))
            .filter(seat_change::Column::Seq.gt(after))
            .filter(seat_change::Column::Seq.lte(upto))
            .order_by_asc(seat_change::Column::Seq)
            .limit(REPLAY_BATCH)
            .all(&self.db().conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| SeatChange {
                event_id: r.event_id,
                seat_id: r.seat_id,
                status: SeatStatus::parse(&r.status),
                hold_expires_at_ms: r.hold_expires_at_ms,
                seq: r.seq,
            })
            .collect())
    }

    /// Fails if changes after `after` were pruned from the log.
    async fn ensure_retained(
        &self,
        event_id: i64,
        after: i64,
        current: i64,
    ) -> Result<(), AppError> {
        if after == current {
            return Ok(());
        }
        let oldest = seat_change::Entity::find()
            .filter(seat_change::Column::EventId.eq(event_id))
            .order_by_asc(seat_change::Column::Seq)
            .one(&self.db().conn)
            .await?
            .map(|r| r.seq);
        match oldest {
            Some(first) if first <= after + 1 => Ok(()),
            _ => Err(AppError::BadInput(format!(
                "changes after seq {after} are no longer kept; reload the seat map and subscribe with its seq"
            ))),
        }
    }
}
