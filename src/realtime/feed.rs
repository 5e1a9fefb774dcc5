//! One subscriber's ordered feed of an event's seat changes: replay from the log after
//! `afterSeq`, then live changes from the bus, with no duplicate and no gap at the seam.
//! A change that arrives ahead of one not yet seen is preceded by the missing ones, read
//! from the log (every published change is committed, so the log has them).

use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::{SeatChangeBus, log};
use crate::db::Db;
use crate::domain::seat_change::SeatChange;
use crate::error::AppError;

/// Most changes replayed from the log in one read.
const REPLAY_BATCH: u64 = 5_000;

/// Opens feeds; cheap to clone.
#[derive(Clone)]
pub struct SeatChangeFeed {
    db: Db,
    bus: Arc<dyn SeatChangeBus>,
}

impl SeatChangeFeed {
    pub fn new(db: Db, bus: Arc<dyn SeatChangeBus>) -> Self {
        Self { db, bus }
    }

    /// The feed for `event_id`, starting after `after_seq` (or from now).
    pub async fn open(
        &self,
        event_id: i64,
        after_seq: Option<i64>,
    ) -> Result<impl Stream<Item = Result<SeatChange, AppError>> + use<>, AppError> {
        // Subscribe before reading where we are, so nothing falls between the two.
        let mut live = self.bus.subscribe(event_id);
        let current = log::current_seq(&self.db.conn, event_id).await?;
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
        let db = self.db.clone();
        Ok(async_stream::stream! {
            let mut last = start;
            // Replay what the client missed, in batches, up to `current`.
            while last < current {
                match log::between(&db.conn, event_id, last, current, Some(REPLAY_BATCH)).await {
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
                            match log::between(&db.conn, event_id, last, change.seq - 1, Some(REPLAY_BATCH)).await {
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
        match log::oldest_seq(&self.db.conn, event_id).await? {
            Some(first) if first <= after + 1 => Ok(()),
            _ => Err(AppError::BadInput(format!(
                "changes after seq {after} are no longer kept; reload the seat map and subscribe with its seq"
            ))),
        }
    }
}
