//! The outbox: the Stripe call a checkout waits for (capture, cancel or refund), made with
//! no row lock held, under a lease, retried with exponential backoff until it is done.
//!
//! The lease is `next_attempt_at_ms` moved ahead plus a `lease_token` drawn afresh by each
//! taking of it. A Stripe call can outlast the lease (a slow answer, a paused process) and
//! another worker then takes it over; every write that ends the step is fenced on the
//! token, so the worker that lost the lease writes nothing (its Stripe call was made with the
//! same idempotency key as the new holder's, so Stripe did it once).

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
        let token: i64 = rand::random();
        let claimed = checkout::Entity::update_many()
            .col_expr(
                checkout::Column::NextAttemptAtMs,
                Expr::value(now + millis(OUTBOX_LEASE)),
            )
            .col_expr(checkout::Column::LeaseToken, Expr::value(token))
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
            Ok(()) => self.finish_outbox_step(&stored, token, call.done()).await,
            Err(err) if err.is_transient() => Err(AppError::retry_later(0, err.to_string())),
            Err(err) => self.outbox_refused(stripe, &stored, token, err).await,
        };
        let lost = match outcome {
            Ok(()) => false,
            Err(AppError::LeaseLost(_)) => true,
            Err(err) => {
                let attempts = stored.attempts.saturating_add(1);
                let backoff = millis(OUTBOX_BACKOFF)
                    .saturating_mul(1 << attempts.clamp(0, OUTBOX_MAX_DOUBLINGS));
                tracing::warn!(hold.id = %hold_id, attempts, error = %err, "stripe call failed; will retry");
                let noted = checkout::Entity::update_many()
                    .col_expr(checkout::Column::Attempts, Expr::value(attempts))
                    .col_expr(
                        checkout::Column::NextAttemptAtMs,
                        Expr::value(now_ms() + backoff),
                    )
                    .col_expr(checkout::Column::LastError, Expr::value(err.to_string()))
                    .filter(checkout::Column::HoldId.eq(hold_id))
                    .filter(checkout::Column::LeaseToken.eq(token))
                    .exec(conn)
                    .await;
                matches!(noted, Ok(r) if r.rows_affected == 0)
            }
        };
        if lost {
            metrics::counter!("onsale_leases_lost_total", "lease" => "checkout").increment(1);
            tracing::warn!(hold.id = %hold_id, "the checkout's lease was taken over during the stripe call; its new holder records the outcome");
        }
    }

    async fn finish_outbox_step(
        &self,
        stored: &checkout::Model,
        token: i64,
        done: CheckoutState,
    ) -> Result<(), AppError> {
        // The refund's webhook event is written with the booking's new status.
        self.booking
            .db()
            .write(|txn| async move {
                let txn = &*txn;
                still_leased(txn, &stored.hold_id, token).await?;
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
        token: i64,
        err: PaymentError,
    ) -> Result<(), AppError> {
        let intent = stripe
            .retrieve_payment_intent(&stored.payment_intent_id)
            .await
            .map_err(|e| AppError::retry_later(0, e.to_string()))?;
        match state::after_refusal(stored.state, &intent.status) {
            AfterRefusal::Done(done) => self.finish_outbox_step(stored, token, done).await,
            AfterRefusal::Move(next) => {
                self.booking
                    .db()
                    .write(|txn| async move {
                        let txn = &*txn;
                        still_leased(txn, &stored.hold_id, token).await?;
                        set_state(
                            txn,
                            &stored.hold_id,
                            next,
                            stored.booking_id.as_deref(),
                            now_ms(),
                        )
                        .await
                    })
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
                        still_leased(txn, &stored.hold_id, token).await?;
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

/// The first statement of a transaction that ends an outbox step: the lease must still be
/// the one taken with `token` (else [`AppError::LeaseLost`]), and the row stays locked until
/// the transaction ends, so the lease cannot be taken over halfway.
async fn still_leased<C: ConnectionTrait>(
    txn: &C,
    hold_id: &str,
    token: i64,
) -> Result<(), AppError> {
    let kept = checkout::Entity::update_many()
        .col_expr(checkout::Column::LeaseToken, Expr::value(token))
        .filter(checkout::Column::HoldId.eq(hold_id))
        .filter(checkout::Column::LeaseToken.eq(token))
        .exec(txn)
        .await?;
    if kept.rows_affected == 1 {
        Ok(())
    } else {
        Err(AppError::LeaseLost("the checkout"))
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
