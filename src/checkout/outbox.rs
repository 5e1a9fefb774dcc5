//! The outbox: the Stripe call a checkout waits for (capture, cancel or refund), made with
//! no row lock held, under a lease, retried with exponential backoff until it is done.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::state::{self, AfterRefusal, CheckoutState, OUTBOX, StripeCall};
use super::{CheckoutService, stripe_key};
use crate::domain::clock::{millis, now_ms};
use crate::domain::limits::{OUTBOX_BACKOFF, OUTBOX_LEASE, OUTBOX_MAX_DOUBLINGS};
use crate::domain::status::BookingStatus;
use crate::error::AppError;
use crate::payment::{PaymentError, StripeClient};
use crate::realtime::Published;
use entity::checkout;

impl CheckoutService {
    /// Makes the Stripe call a checkout is waiting for, if it is due and nobody else is making
    /// it (a lease on `next_attempt_at_ms`). Failures are retried later with backoff.
    pub(super) async fn run_outbox_step(&self, hold_id: &str) {
        let Some(stripe) = self.stripe.as_ref() else {
            return;
        };
        let conn = &self.booking.db().conn;
        let now = now_ms();
        let claimed = checkout::Entity::update_many()
            .col_expr(
                checkout::Column::NextAttemptAtMs,
                Expr::value(now + millis(OUTBOX_LEASE)),
            )
            .filter(checkout::Column::HoldId.eq(hold_id))
            .filter(checkout::Column::State.is_in(OUTBOX))
            .filter(checkout::Column::NextAttemptAtMs.lte(now))
            .exec(conn)
            .await;
        if !matches!(claimed, Ok(r) if r.rows_affected == 1) {
            return;
        }
        let Ok(Some(stored)) = checkout::Entity::find_by_id(hold_id.to_owned())
            .one(conn)
            .await
        else {
            return;
        };
        let Some(call) = StripeCall::due(stored.state) else {
            return;
        };
        let pi = stored.payment_intent_id.as_str();
        let key = stripe_key(call.key_word(), hold_id);
        let result = match call {
            StripeCall::Capture => stripe.capture_payment_intent(pi, &key).await.map(|_| ()),
            StripeCall::CancelAuthorisation => {
                stripe.cancel_payment_intent(pi, &key).await.map(|_| ())
            }
            StripeCall::Refund => stripe.create_refund(pi, &key).await.map(|_| ()),
        };
        let outcome = match result {
            Ok(()) => self.finish_outbox_step(&stored, call.done()).await,
            Err(err) if err.is_transient() => Err(AppError::retry_later(0, err.to_string())),
            Err(err) => self.outbox_refused(stripe, &stored, err).await,
        };
        if let Err(err) = outcome {
            let attempts = stored.attempts.saturating_add(1);
            let backoff =
                millis(OUTBOX_BACKOFF).saturating_mul(1 << attempts.clamp(0, OUTBOX_MAX_DOUBLINGS));
            tracing::warn!(hold.id = %hold_id, attempts, error = %err, "stripe call failed; will retry");
            let _ = checkout::Entity::update_many()
                .col_expr(checkout::Column::Attempts, Expr::value(attempts))
                .col_expr(
                    checkout::Column::NextAttemptAtMs,
                    Expr::value(now_ms() + backoff),
                )
                .col_expr(checkout::Column::LastError, Expr::value(err.to_string()))
                .filter(checkout::Column::HoldId.eq(hold_id))
                .exec(conn)
                .await;
        }
    }

    async fn finish_outbox_step(
        &self,
        stored: &checkout::Model,
        done: CheckoutState,
    ) -> Result<(), AppError> {
        // The refund's webhook event is written with the booking's new status.
        self.booking
            .db()
            .write(|txn| async move {
                let txn = &*txn;
                set_state(
                    txn,
                    &stored.hold_id,
                    done,
                    stored.booking_id.as_deref(),
                    now_ms(),
                )
                .await?;
                if done == CheckoutState::Refunded
                    && let Some(booking_id) = &stored.booking_id
                {
                    self.booking.mark_refunded(txn, booking_id).await?;
                }
                Ok(())
            })
            .await?;
        tracing::info!(hold.id = %stored.hold_id, state = ?done, "stripe call done");
        Ok(())
    }

    /// Stripe refused the call for good: find out where the intent really is and end there.
    async fn outbox_refused(
        &self,
        stripe: &StripeClient,
        stored: &checkout::Model,
        err: PaymentError,
    ) -> Result<(), AppError> {
        let intent = stripe
            .retrieve_payment_intent(&stored.payment_intent_id)
            .await
            .map_err(|e| AppError::retry_later(0, e.to_string()))?;
        match state::after_refusal(stored.state, &intent.status) {
            AfterRefusal::Done(done) => self.finish_outbox_step(stored, done).await,
            AfterRefusal::Move(next) => {
                set_state(
                    &self.booking.db().conn,
                    &stored.hold_id,
                    next,
                    stored.booking_id.as_deref(),
                    now_ms(),
                )
                .await
            }
            AfterRefusal::CancelBooking => {
                // The authorisation is gone: no booking may stay without payment.
                tracing::error!(hold.id = %stored.hold_id, error = %err, "capture impossible; cancelling the booking");
                let published = self
                    .booking
                    .db()
                    .write(|txn| async move {
                        let txn = &*txn;
                        let published = match &stored.booking_id {
                            Some(id) => {
                                self.booking
                                    .cancel_in(txn, id, BookingStatus::Cancelled)
                                    .await?
                            }
                            None => Published::default(),
                        };
                        set_state(
                            txn,
                            &stored.hold_id,
                            CheckoutState::Failed,
                            stored.booking_id.as_deref(),
                            now_ms(),
                        )
                        .await?;
                        Ok(published)
                    })
                    .await?;
                self.booking.bus().publish_all(published).await;
                Ok(())
            }
            AfterRefusal::Retry if stored.state == CheckoutState::Refunding => {
                Err(AppError::Internal(format!("refund refused: {err}")))
            }
            AfterRefusal::Retry => Err(AppError::Internal(format!("stripe refused: {err}"))),
        }
    }
}

/// Moves a checkout to `state` (resetting its attempts, due at once).
pub(super) async fn set_state<C: ConnectionTrait>(
    conn: &C,
    hold_id: &str,
    state: CheckoutState,
    booking_id: Option<&str>,
    now: i64,
) -> Result<(), AppError> {
    checkout::Entity::update_many()
        .col_expr(checkout::Column::State, Expr::value(state))
        .col_expr(
            checkout::Column::BookingId,
            Expr::value(booking_id.map(str::to_owned)),
        )
        .col_expr(checkout::Column::Attempts, Expr::value(0))
        .col_expr(checkout::Column::NextAttemptAtMs, Expr::value(now))
        .col_expr(checkout::Column::UpdatedAtMs, Expr::value(now))
        .filter(checkout::Column::HoldId.eq(hold_id))
        .exec(conn)
        .await?;
    Ok(())
}
