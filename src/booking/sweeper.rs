//! The expiry sweeper: returns the seats and places of holds that ran out and records the
//! change. Correctness never depends on it (an expired hold's seats are claimable at once);
//! it makes expiry visible on seat maps.

use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::BookingService;
use crate::domain::clock::{millis, now_ms};
use crate::domain::limits::SWEEP_BATCH;
use crate::domain::status::{HoldStatus, hold_status_at};
use crate::error::AppError;
use crate::realtime::{Published, log};
use crate::tasks::{self, Shutdown};
use entity::hold;

impl BookingService {
    /// Expires every hold past its expiry (a batch at a time). Returns how many it expired.
    pub async fn sweep_expired(&self) -> Result<usize, AppError> {
        let now = now_ms();
        let due = hold::Entity::find()
            .filter(hold::Column::Status.eq(HoldStatus::Active))
            .filter(hold::Column::ExpiresAtMs.lte(now))
            .order_by_asc(hold::Column::ExpiresAtMs)
            .limit(SWEEP_BATCH)
            .all(&self.db.conn)
            .await?;
        let mut expired = 0;
        for stored in due {
            let hold_id = stored.id.as_str();
            let published = self
                .db
                .write(|txn| async move {
                    let txn = &*txn;
                    let (current, locked) = self.lock_hold(txn, hold_id).await?;
                    if hold_status_at(&current, now_ms()) != HoldStatus::Expired
                        || current.status != HoldStatus::Active
                    {
                        return Ok(Published::default());
                    }
                    Ok(self
                        .end_hold_in(txn, &current, &locked, HoldStatus::Expired)
                        .await?
                        .unwrap_or_default())
                })
                .await?;
            if !published.is_empty() {
                expired += 1;
            }
            self.bus.publish_all(published).await;
        }
        if expired > 0 {
            metrics::counter!("onsale_holds_expired_total").increment(expired as u64);
            tracing::info!(count = expired, "expired holds swept");
        }
        Ok(expired)
    }

    /// Deletes seat-change log rows older than the retention window. Subscribers asking for
    /// history before what is kept are told to reload the seat map.
    pub async fn prune_change_log(&self) -> Result<u64, AppError> {
        let cutoff = now_ms() - millis(self.settings.change_retention);
        let deleted = log::prune_before(&self.db.conn, cutoff).await?;
        if deleted > 0 {
            tracing::info!(rows = deleted, "pruned the seat-change log");
        }
        Ok(deleted)
    }

    /// Runs the sweeper every `interval` until `shutdown` turns true.
    pub async fn run_sweeper(self, interval: Duration, shutdown: Shutdown) {
        tasks::every(interval, shutdown, || async {
            if let Err(err) = self.sweep_expired().await {
                tracing::warn!(error = %err, "expiry sweep failed; will try again");
            }
            if let Err(err) = self.prune_change_log().await {
                tracing::warn!(error = %err, "pruning the change log failed; will try again");
            }
        })
        .await;
    }
}
