//! The checkout worker: due outbox calls, and checkouts left waiting (a lost webhook, a
//! closed browser) whose intent it fetches and settles itself.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::CheckoutService;
use super::state::{CheckoutState, OUTBOX, Settled};
use crate::domain::clock::{millis, now_ms};
use crate::domain::status::{HoldStatus, hold_status_at};
use crate::error::AppError;
use crate::tasks::{self, Shutdown};
use entity::{checkout, hold};

/// Most checkouts one pass looks at, of each kind.
const PASS_BATCH: u64 = 50;

impl CheckoutService {
    /// One pass of the checkout worker: cancelled events left half wound up, due Stripe calls,
    /// then checkouts left waiting whose intent is fetched and settled.
    pub async fn run_checkout_pass(&self) -> Result<(), AppError> {
        self.finish_cancellations().await?;
        let Some(stripe) = self.stripe.as_ref() else {
            return Ok(());
        };
        let conn = &self.booking.db().conn;
        let now = now_ms();
        let due = checkout::Entity::find()
            .filter(checkout::Column::State.is_in(OUTBOX))
            .filter(checkout::Column::NextAttemptAtMs.lte(now))
            .order_by_asc(checkout::Column::NextAttemptAtMs)
            .limit(PASS_BATCH)
            .all(conn)
            .await?;
        for stored in due {
            self.run_outbox_step(&stored.hold_id).await;
        }
        let waiting = checkout::Entity::find()
            .filter(checkout::Column::State.eq(CheckoutState::Pending))
            .filter(checkout::Column::NextAttemptAtMs.lte(now))
            .order_by_asc(checkout::Column::NextAttemptAtMs)
            .limit(PASS_BATCH)
            .all(conn)
            .await?;
        for stored in waiting {
            let lease = checkout::Entity::update_many()
                .col_expr(
                    checkout::Column::NextAttemptAtMs,
                    Expr::value(now + millis(self.settings.reconcile_after)),
                )
                .filter(checkout::Column::HoldId.eq(stored.hold_id.as_str()))
                .filter(checkout::Column::NextAttemptAtMs.lte(now))
                .exec(conn)
                .await?;
            if lease.rows_affected != 1 {
                continue;
            }
            let intent = match stripe
                .retrieve_payment_intent(&stored.payment_intent_id)
                .await
            {
                Ok(intent) => intent,
                Err(err) => {
                    tracing::warn!(hold.id = %stored.hold_id, error = %err, "reconciliation: cannot read the intent; will retry");
                    continue;
                }
            };
            match self.settle(&stored, &intent, None).await {
                Ok(Settled::Pending(_)) => self.abandon_if_expired(&stored).await?,
                Ok(outcome) => {
                    tracing::info!(hold.id = %stored.hold_id, ?outcome, "reconciled a waiting checkout")
                }
                Err(err) => {
                    tracing::warn!(hold.id = %stored.hold_id, error = %err, "reconciliation failed; will retry")
                }
            }
        }
        Ok(())
    }

    /// A checkout nobody paid whose hold has run out: cancel the intent so a late card step
    /// cannot take money for seats that may be gone.
    async fn abandon_if_expired(&self, stored: &checkout::Model) -> Result<(), AppError> {
        let conn = &self.booking.db().conn;
        let hold = hold::Entity::find_by_id(stored.hold_id.clone())
            .one(conn)
            .await?;
        let expired = hold.is_none_or(|h| hold_status_at(&h, now_ms()) != HoldStatus::Active);
        if !expired {
            return Ok(());
        }
        let moved = checkout::Entity::update_many()
            .col_expr(
                checkout::Column::State,
                Expr::value(CheckoutState::Cancelling),
            )
            .col_expr(checkout::Column::NextAttemptAtMs, Expr::value(now_ms()))
            .filter(checkout::Column::HoldId.eq(stored.hold_id.as_str()))
            .filter(checkout::Column::State.eq(CheckoutState::Pending))
            .exec(conn)
            .await?;
        if moved.rows_affected == 1 {
            tracing::info!(hold.id = %stored.hold_id, "unpaid checkout of an expired hold: cancelling the intent");
            self.run_outbox_step(&stored.hold_id).await;
        }
        Ok(())
    }

    /// Runs the checkout worker every `interval` until shutdown (with payments off, it only
    /// finishes cancelled events).
    pub async fn run_checkout_worker(self, interval: std::time::Duration, shutdown: Shutdown) {
        tasks::every(interval, shutdown, || async {
            if let Err(err) = self.run_checkout_pass().await {
                tracing::warn!(error = %err, "checkout worker pass failed; will try again");
            }
        })
        .await;
    }
}
