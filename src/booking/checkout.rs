//! Checkout: paying for a hold with Stripe, as a persisted saga that never loses money or
//! seats.
//!
//! 1. `startCheckout` creates a PaymentIntent with manual capture (the card is only
//!    authorised) under an idempotency key derived from the hold, records the checkout
//!    (`PENDING`) and extends the hold once by a bounded grace period.
//! 2. Once the payment is authorised — learned from `completeCheckout` (the server asks Stripe
//!    itself), a webhook, or the reconciliation worker — one transaction books the hold if it
//!    is still ours (`BOOKED`), or, if it can no longer be honoured, marks the authorisation
//!    for cancelling (`CANCELLING`, or `REFUNDING` if money was already captured).
//! 3. The Stripe call that follows (capture, cancel or refund) is made with no row lock held;
//!    the checkout's state *is* the outbox: a worker retries pending calls with exponential
//!    backoff, so a crash at any point resumes to a consistent end.
//!
//! Every path to the same checkout serialises on the checkout row (locked first, before any
//! seat), and every Stripe call carries an idempotency key, so all of this may run more than
//! once, in any order, on any instance.

use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TryInsertResult,
};
use tracing::instrument;

use super::BookingService;
use super::changes::{self, PendingChange};
use super::holds::ensure_active;
use super::idempotency::{self, Operation};
use super::model::{BookingStatus, BookingView, HoldStatus, IdempotencyKey, SeatStatus, now_ms};
use super::views;
use crate::auth::User;
use crate::error::AppError;
use crate::payment::{IntentStatus, PaymentError, PaymentIntent, StripeClient, WebhookEvent};
use crate::realtime::SeatChange;
use entity::{booking, checkout, hold, seat, stripe_event};

/// Where a checkout is in its saga.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckoutState {
    /// Waiting for the card.
    Pending,
    /// Booked; the authorised payment is still to be captured.
    Booked,
    Captured,
    /// The hold could not be honoured; the authorisation is still to be cancelled.
    Cancelling,
    Cancelled,
    /// Money was captured but the seats are not (or no longer) the buyer's; refund to make.
    Refunding,
    Refunded,
    /// The payment failed; the hold was released.
    Failed,
}

impl CheckoutState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Booked => "BOOKED",
            Self::Captured => "CAPTURED",
            Self::Cancelling => "CANCELLING",
            Self::Cancelled => "CANCELLED",
            Self::Refunding => "REFUNDING",
            Self::Refunded => "REFUNDED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(raw: &str) -> Self {
        match raw {
            "BOOKED" => Self::Booked,
            "CAPTURED" => Self::Captured,
            "CANCELLING" => Self::Cancelling,
            "CANCELLED" => Self::Cancelled,
            "REFUNDING" => Self::Refunding,
            "REFUNDED" => Self::Refunded,
            "FAILED" => Self::Failed,
            _ => Self::Pending,
        }
    }

    /// States with a Stripe call still to make.
    const OUTBOX: [&'static str; 3] = ["BOOKED", "CANCELLING", "REFUNDING"];
}

/// What a client needs to take the card step.
#[derive(Clone, Debug)]
pub struct CheckoutView {
    pub hold_id: String,
    pub payment_intent_id: String,
    pub client_secret: String,
    pub amount_cents: i64,
    pub currency: String,
}

impl From<checkout::Model> for CheckoutView {
    fn from(c: checkout::Model) -> Self {
        Self {
            hold_id: c.hold_id,
            payment_intent_id: c.payment_intent_id,
            client_secret: c.client_secret,
            amount_cents: c.amount_cents,
            currency: c.currency,
        }
    }
}

/// How settling a payment ended.
#[derive(Debug)]
enum Settled {
    Booked(String),
    /// The hold could not be honoured; the money goes back (cancel or refund).
    NotHonoured,
    /// The payment failed or was cancelled; the hold was released.
    Failed,
    /// Nothing decided yet (the buyer has not paid).
    Pending(IntentStatus),
}

fn payment_error(err: PaymentError) -> AppError {
    if err.is_transient() {
        AppError::retry_later(
            1_000,
            "the payment provider is not answering; try again shortly",
        )
    } else {
        AppError::Internal(format!("payment provider refused a request: {err}"))
    }
}

fn key(action: &str, hold_id: &str) -> String {
    format!("onsale-{action}-{hold_id}")
}

impl BookingService {
    fn stripe(&self) -> Result<&StripeClient, AppError> {
        self.stripe.as_ref().ok_or_else(|| {
            AppError::BadInput("payments are off on this server: book with confirmHold".into())
        })
    }

    fn ms(d: std::time::Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }

    /// Starts paying for the caller's active hold: one PaymentIntent per hold, however often
    /// this is called.
    #[instrument(skip_all, fields(hold.id = %hold_id, user.id = %user.id), err(level = "debug"))]
    pub async fn start_checkout(
        &self,
        user: &User,
        hold_id: &str,
        key_: Option<IdempotencyKey>,
    ) -> Result<CheckoutView, AppError> {
        let stripe = self.stripe()?;
        let op = Operation::StartCheckout;
        if let Some(k) = &key_
            && let Some(id) = idempotency::lookup(&self.db.conn, &user.id, op, k).await?
        {
            return self.checkout_view(&id).await;
        }
        let _slot = self.admit_mutation()?;
        let stored = self.owned_hold(user, hold_id).await?;
        if let Some(existing) = checkout::Entity::find_by_id(hold_id.to_owned())
            .one(&self.db.conn)
            .await?
        {
            return Ok(existing.into());
        }
        ensure_active(&stored, now_ms())?;
        if stored.total_cents <= 0 {
            return Err(AppError::BadInput(
                "this hold costs nothing: book it with confirmHold".into(),
            ));
        }
        let event_id = stored.event_id.to_string();
        let intent = stripe
            .create_payment_intent(
                stored.total_cents,
                stripe.currency(),
                &[
                    ("hold_id", hold_id),
                    ("user", &user.id),
                    ("event_id", &event_id),
                ],
                &key("checkout", hold_id),
            )
            .await
            .map_err(payment_error)?;
        let client_secret = intent.client_secret.clone().ok_or_else(|| {
            AppError::Internal("the payment provider returned no client secret".into())
        })?;
        let outcome = self
            .db
            .retry(|| async {
                let tx = self.db.begin_write().await?;
                let (current, locked) = self.lock_hold(&tx.txn, hold_id).await?;
                if let Some(existing) = checkout::Entity::find_by_id(hold_id.to_owned())
                    .one(&tx.txn)
                    .await?
                {
                    return Ok((existing, Vec::new()));
                }
                let now = now_ms();
                ensure_active(&current, now)?;
                // Extended once (a checkout exists from now on), by a bounded grace period.
                let expiry = current
                    .expires_at_ms
                    .max(now + Self::ms(self.settings.checkout_grace));
                let mut pending = Vec::new();
                if expiry > current.expires_at_ms {
                    hold::Entity::update_many()
                        .col_expr(hold::Column::ExpiresAtMs, Expr::value(expiry))
                        .col_expr(hold::Column::UpdatedAtMs, Expr::value(now))
                        .filter(hold::Column::Id.eq(hold_id))
                        .exec(&tx.txn)
                        .await?;
                    seat::Entity::update_many()
                        .col_expr(seat::Column::HoldExpiresAtMs, Expr::value(expiry))
                        .filter(seat::Column::HoldId.eq(hold_id))
                        .exec(&tx.txn)
                        .await?;
                    pending = locked
                        .iter()
                        .map(|s| PendingChange {
                            seat_id: s.id,
                            status: SeatStatus::Held,
                            hold_expires_at_ms: Some(expiry),
                        })
                        .collect();
                }
                let model = checkout::ActiveModel {
                    hold_id: Set(hold_id.to_owned()),
                    user_id: Set(current.user_id.clone()),
                    event_id: Set(current.event_id),
                    payment_intent_id: Set(intent.id.clone()),
                    client_secret: Set(client_secret.clone()),
                    amount_cents: Set(current.total_cents),
                    currency: Set(intent.currency.clone()),
                    state: Set(CheckoutState::Pending.as_str().into()),
                    booking_id: Set(None),
                    attempts: Set(0),
                    next_attempt_at_ms: Set(now + Self::ms(self.settings.checkout_reconcile_after)),
                    last_error: Set(None),
                    created_at_ms: Set(now),
                    updated_at_ms: Set(now),
                };
                let created = checkout::Entity::insert(model)
                    .exec_with_returning(&tx.txn)
                    .await?;
                let published = changes::append(&tx.txn, current.event_id, pending).await?;
                if let Some(k) = &key_ {
                    idempotency::record(&tx.txn, &user.id, op, k, hold_id).await?;
                }
                tx.commit().await?;
                Ok((created, published))
            })
            .await;
        match outcome {
            Ok((created, published)) => {
                self.bus.publish(published).await;
                if created.payment_intent_id != intent.id {
                    // A concurrent twin won; its intent is the one. Let ours go.
                    let _ = stripe
                        .cancel_payment_intent(&intent.id, &key("orphan", &intent.id))
                        .await;
                }
                tracing::info!(payment_intent = %created.payment_intent_id, "checkout started");
                Ok(created.into())
            }
            Err(err) => {
                // Nobody can pay an intent whose secret was never handed out, but tidy up.
                let _ = stripe
                    .cancel_payment_intent(&intent.id, &key("cancel", hold_id))
                    .await;
                if let Some(k) = &key_
                    && let Ok(Some(id)) = idempotency::lookup(&self.db.conn, &user.id, op, k).await
                {
                    return self.checkout_view(&id).await;
                }
                Err(err)
            }
        }
    }

    async fn checkout_view(&self, hold_id: &str) -> Result<CheckoutView, AppError> {
        checkout::Entity::find_by_id(hold_id.to_owned())
            .one(&self.db.conn)
            .await?
            .map(Into::into)
            .ok_or_else(|| AppError::NotFound(format!("no checkout for hold {hold_id}")))
    }

    /// After the card step: asks Stripe (never trusting the client) and books the hold if the
    /// payment is authorised. Calling it again returns the same booking.
    #[instrument(skip_all, fields(hold.id = %hold_id, user.id = %user.id), err(level = "debug"))]
    pub async fn complete_checkout(
        &self,
        user: &User,
        hold_id: &str,
    ) -> Result<BookingView, AppError> {
        let stripe = self.stripe()?;
        self.owned_hold(user, hold_id).await?;
        let stored = checkout::Entity::find_by_id(hold_id.to_owned())
            .one(&self.db.conn)
            .await?
            .ok_or_else(|| {
                AppError::BadInput(
                    "no checkout was started for this hold: call startCheckout first".into(),
                )
            })?;
        if let Some(booking_id) = &stored.booking_id {
            return views::booking(&self.db.conn, booking_id).await;
        }
        let intent = stripe
            .retrieve_payment_intent(&stored.payment_intent_id)
            .await
            .map_err(payment_error)?;
        match self.settle(&stored, &intent, None).await? {
            Settled::Booked(booking_id) => views::booking(&self.db.conn, &booking_id).await,
            Settled::NotHonoured => Err(AppError::HoldExpired),
            Settled::Failed => Err(AppError::HoldNotActive("released: the payment failed")),
            Settled::Pending(IntentStatus::Processing) => Err(AppError::retry_later(
                1_000,
                "the payment is still processing; try again shortly",
            )),
            Settled::Pending(status) => Err(AppError::BadInput(format!(
                "the payment is not authorised yet (it is {status}); finish the card step first"
            ))),
        }
    }

    /// A verified Stripe event. Events may come in any order and more than once: the current
    /// intent is fetched from Stripe, and the event id is recorded with its effect.
    #[instrument(skip_all, fields(stripe.event = %event.id, stripe.type = %event.event_type), err)]
    pub async fn handle_stripe_event(&self, event: &WebhookEvent) -> Result<(), AppError> {
        let stripe = self.stripe()?;
        let Some(from_event) = event.payment_intent() else {
            return self.record_event_alone(event).await;
        };
        let Some(stored) = checkout::Entity::find()
            .filter(checkout::Column::PaymentIntentId.eq(from_event.id.as_str()))
            .one(&self.db.conn)
            .await?
        else {
            tracing::info!(payment_intent = %from_event.id, "webhook for an intent that is not ours; ignored");
            return self.record_event_alone(event).await;
        };
        let intent = stripe
            .retrieve_payment_intent(&stored.payment_intent_id)
            .await
            .map_err(payment_error)?;
        let result = self.settle(&stored, &intent, Some(event)).await?;
        metrics::counter!("onsale_webhook_events_total", "type" => event.event_type.clone())
            .increment(1);
        tracing::info!(outcome = ?result, "webhook processed");
        Ok(())
    }

    async fn record_event_alone(&self, event: &WebhookEvent) -> Result<(), AppError> {
        let _ = stripe_event::Entity::insert(stripe_event::ActiveModel {
            id: Set(event.id.clone()),
            event_type: Set(event.event_type.clone()),
            received_at_ms: Set(now_ms()),
        })
        .exec_without_returning(&self.db.conn)
        .await;
        Ok(())
    }

    /// Acts on the current state of the intent.
    async fn settle(
        &self,
        stored: &checkout::Model,
        intent: &PaymentIntent,
        event: Option<&WebhookEvent>,
    ) -> Result<Settled, AppError> {
        if intent.id != stored.payment_intent_id
            || intent.amount != stored.amount_cents
            || intent
                .metadata
                .get("hold_id")
                .is_some_and(|h| *h != stored.hold_id)
        {
            return Err(AppError::Internal(format!(
                "payment intent {} does not match checkout of hold {}",
                intent.id, stored.hold_id
            )));
        }
        let final_failure = event.is_some_and(|e| {
            e.event_type == "payment_intent.payment_failed"
                || e.event_type == "payment_intent.canceled"
        });
        match &intent.status {
            IntentStatus::RequiresCapture => {
                self.finalize_paid(&stored.hold_id, false, event).await
            }
            IntentStatus::Succeeded => self.finalize_paid(&stored.hold_id, true, event).await,
            IntentStatus::Canceled => {
                self.payment_failed(&stored.hold_id, CheckoutState::Cancelled, event)
                    .await
            }
            IntentStatus::RequiresPaymentMethod if final_failure => {
                self.payment_failed(&stored.hold_id, CheckoutState::Failed, event)
                    .await
            }
            other => {
                if let Some(e) = event {
                    self.record_event_alone(e).await?;
                }
                Ok(Settled::Pending(other.clone()))
            }
        }
    }

    /// Locks the checkout row (first, before any seat) and records the event with the effect.
    /// Returns `None` if the event was already processed.
    async fn lock_checkout<C: ConnectionTrait>(
        &self,
        txn: &C,
        hold_id: &str,
        event: Option<&WebhookEvent>,
    ) -> Result<Option<checkout::Model>, AppError> {
        if let Some(e) = event {
            let inserted = stripe_event::Entity::insert(stripe_event::ActiveModel {
                id: Set(e.id.clone()),
                event_type: Set(e.event_type.clone()),
                received_at_ms: Set(now_ms()),
            })
            .on_conflict_do_nothing()
            .exec_without_returning(txn)
            .await?;
            if !matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
                return Ok(None);
            }
        }
        let mut query = checkout::Entity::find_by_id(hold_id.to_owned());
        if self.db.is_postgres() {
            query = query.lock(LockType::Update);
        }
        query
            .one(txn)
            .await?
            .map(Some)
            .ok_or_else(|| AppError::NotFound(format!("no checkout for hold {hold_id}")))
    }

    /// The payment is authorised (or captured): book the hold if it is still ours, else give
    /// the money back. Exactly one outcome however often this runs.
    async fn finalize_paid(
        &self,
        hold_id: &str,
        captured: bool,
        event: Option<&WebhookEvent>,
    ) -> Result<Settled, AppError> {
        let (settled, published) = self
            .db
            .retry(|| async {
                let tx = self.db.begin_write().await?;
                let Some(stored) = self.lock_checkout(&tx.txn, hold_id, event).await? else {
                    return Ok((self.settled_from_state(hold_id).await?, Vec::new()));
                };
                let state = CheckoutState::parse(&stored.state);
                if state != CheckoutState::Pending {
                    tx.commit().await?;
                    return Ok((settled_of(&stored), Vec::new()));
                }
                let now = now_ms();
                let outcome = match self
                    .book_hold(&tx.txn, hold_id, Some(&stored.payment_intent_id))
                    .await
                {
                    Ok((booking_id, published)) => {
                        let next = if captured {
                            CheckoutState::Captured
                        } else {
                            CheckoutState::Booked
                        };
                        set_state(&tx.txn, hold_id, next, Some(&booking_id), now).await?;
                        (Settled::Booked(booking_id), published)
                    }
                    Err(AppError::HoldExpired | AppError::HoldNotActive(_)) => {
                        let next = if captured {
                            CheckoutState::Refunding
                        } else {
                            CheckoutState::Cancelling
                        };
                        set_state(&tx.txn, hold_id, next, None, now).await?;
                        (Settled::NotHonoured, Vec::new())
                    }
                    Err(other) => return Err(other),
                };
                tx.commit().await?;
                Ok(outcome)
            })
            .await?;
        self.bus.publish(published).await;
        match &settled {
            Settled::Booked(id) => {
                metrics::counter!("onsale_bookings_confirmed_total").increment(1);
                tracing::info!(booking.id = %id, "paid hold booked");
            }
            Settled::NotHonoured => {
                tracing::warn!(
                    "payment arrived for a hold that can no longer be honoured; giving the money back"
                );
            }
            _ => {}
        }
        // The Stripe call (capture, or cancel/refund) right away; the worker retries it if need be.
        self.run_outbox_step(hold_id).await;
        Ok(settled)
    }

    async fn settled_from_state(&self, hold_id: &str) -> Result<Settled, AppError> {
        let stored = checkout::Entity::find_by_id(hold_id.to_owned())
            .one(&self.db.conn)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no checkout for hold {hold_id}")))?;
        Ok(settled_of(&stored))
    }

    /// The payment failed or was cancelled: release the hold (its seats return to AVAILABLE).
    async fn payment_failed(
        &self,
        hold_id: &str,
        final_state: CheckoutState,
        event: Option<&WebhookEvent>,
    ) -> Result<Settled, AppError> {
        let published = self
            .db
            .retry(|| async {
                let tx = self.db.begin_write().await?;
                let Some(stored) = self.lock_checkout(&tx.txn, hold_id, event).await? else {
                    return Ok(Vec::new());
                };
                if CheckoutState::parse(&stored.state) != CheckoutState::Pending {
                    tx.commit().await?;
                    return Ok(Vec::new());
                }
                let now = now_ms();
                let published = self.release_in(&tx.txn, hold_id).await?;
                set_state(&tx.txn, hold_id, final_state, None, now).await?;
                tx.commit().await?;
                Ok(published)
            })
            .await?;
        if !published.is_empty() {
            tracing::info!(hold.id = %hold_id, "payment failed; hold released");
        }
        self.bus.publish(published).await;
        Ok(Settled::Failed)
    }

    /// Releases a hold's seats inside `txn` (if it is still active).
    async fn release_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        hold_id: &str,
    ) -> Result<Vec<SeatChange>, AppError> {
        let (current, locked) = self.lock_hold(txn, hold_id).await?;
        Ok(self
            .end_hold_in(txn, &current, &locked, HoldStatus::Released)
            .await?
            .unwrap_or_default())
    }

    /// Cancels a paid booking inside `txn` and queues the money's return: a refund if it was
    /// captured, else the cancellation of the authorisation.
    pub(crate) async fn cancel_paid_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        booking: &booking::Model,
    ) -> Result<Vec<SeatChange>, AppError> {
        let Some(stored) = self.lock_checkout(txn, &booking.hold_id, None).await? else {
            return Ok(Vec::new());
        };
        let published = self
            .cancel_in(txn, &booking.id, BookingStatus::Cancelled)
            .await?;
        let next = match CheckoutState::parse(&stored.state) {
            CheckoutState::Booked => CheckoutState::Cancelling,
            CheckoutState::Captured => CheckoutState::Refunding,
            other => other,
        };
        set_state(
            txn,
            &booking.hold_id,
            next,
            stored.booking_id.as_deref(),
            now_ms(),
        )
        .await?;
        Ok(published)
    }

    /// Makes the Stripe call a checkout is waiting for, if it is due and nobody else is making
    /// it (a lease on `next_attempt_at_ms`). Failures are retried later with backoff.
    pub(crate) async fn run_outbox_step(&self, hold_id: &str) {
        let Some(stripe) = self.stripe.as_ref() else {
            return;
        };
        let now = now_ms();
        let claimed = checkout::Entity::update_many()
            .col_expr(checkout::Column::NextAttemptAtMs, Expr::value(now + 30_000))
            .filter(checkout::Column::HoldId.eq(hold_id))
            .filter(checkout::Column::State.is_in(CheckoutState::OUTBOX))
            .filter(checkout::Column::NextAttemptAtMs.lte(now))
            .exec(&self.db.conn)
            .await;
        if !matches!(claimed, Ok(r) if r.rows_affected == 1) {
            return;
        }
        let Ok(Some(stored)) = checkout::Entity::find_by_id(hold_id.to_owned())
            .one(&self.db.conn)
            .await
        else {
            return;
        };
        let pi = stored.payment_intent_id.as_str();
        let state = CheckoutState::parse(&stored.state);
        let result = match state {
            CheckoutState::Booked => stripe
                .capture_payment_intent(pi, &key("capture", hold_id))
                .await
                .map(|_| CheckoutState::Captured),
            CheckoutState::Cancelling => stripe
                .cancel_payment_intent(pi, &key("cancel", hold_id))
                .await
                .map(|_| CheckoutState::Cancelled),
            CheckoutState::Refunding => stripe
                .create_refund(pi, &key("refund", hold_id))
                .await
                .map(|_| CheckoutState::Refunded),
            _ => return,
        };
        let outcome = match result {
            Ok(done) => self.finish_outbox_step(&stored, done).await,
            Err(err) if err.is_transient() => Err(AppError::retry_later(0, err.to_string())),
            Err(err) => self.outbox_refused(stripe, &stored, state, err).await,
        };
        if let Err(err) = outcome {
            let attempts = stored.attempts.saturating_add(1);
            let backoff = 1_000i64.saturating_mul(1 << attempts.clamp(0, 6));
            tracing::warn!(hold.id = %hold_id, attempts, error = %err, "stripe call failed; will retry");
            let _ = checkout::Entity::update_many()
                .col_expr(checkout::Column::Attempts, Expr::value(attempts))
                .col_expr(
                    checkout::Column::NextAttemptAtMs,
                    Expr::value(now_ms() + backoff),
                )
                .col_expr(checkout::Column::LastError, Expr::value(err.to_string()))
                .filter(checkout::Column::HoldId.eq(hold_id))
                .exec(&self.db.conn)
                .await;
        }
    }

    async fn finish_outbox_step(
        &self,
        stored: &checkout::Model,
        done: CheckoutState,
    ) -> Result<(), AppError> {
        let now = now_ms();
        set_state(
            &self.db.conn,
            &stored.hold_id,
            done,
            stored.booking_id.as_deref(),
            now,
        )
        .await?;
        if done == CheckoutState::Refunded
            && let Some(booking_id) = &stored.booking_id
        {
            booking::Entity::update_many()
                .col_expr(
                    booking::Column::Status,
                    Expr::value(BookingStatus::Refunded.as_str()),
                )
                .col_expr(booking::Column::UpdatedAtMs, Expr::value(now))
                .filter(booking::Column::Id.eq(booking_id.as_str()))
                .filter(booking::Column::Status.eq("CANCELLED"))
                .exec(&self.db.conn)
                .await?;
        }
        tracing::info!(hold.id = %stored.hold_id, state = done.as_str(), "stripe call done");
        Ok(())
    }

    /// Stripe refused the call for good: find out where the intent really is and end there.
    async fn outbox_refused(
        &self,
        stripe: &StripeClient,
        stored: &checkout::Model,
        state: CheckoutState,
        err: PaymentError,
    ) -> Result<(), AppError> {
        let intent = stripe
            .retrieve_payment_intent(&stored.payment_intent_id)
            .await
            .map_err(|e| AppError::retry_later(0, e.to_string()))?;
        let done = match (state, &intent.status) {
            (CheckoutState::Booked, IntentStatus::Succeeded) => CheckoutState::Captured,
            (CheckoutState::Cancelling, IntentStatus::Canceled) => CheckoutState::Cancelled,
            (CheckoutState::Cancelling, IntentStatus::Succeeded) => {
                set_state(
                    &self.db.conn,
                    &stored.hold_id,
                    CheckoutState::Refunding,
                    stored.booking_id.as_deref(),
                    now_ms(),
                )
                .await?;
                return Ok(());
            }
            (
                CheckoutState::Booked,
                IntentStatus::Canceled | IntentStatus::RequiresPaymentMethod,
            ) => {
                // The authorisation is gone: no booking may stay without payment.
                tracing::error!(hold.id = %stored.hold_id, error = %err, "capture impossible; cancelling the booking");
                let published = self
                    .db
                    .retry(|| async {
                        let tx = self.db.begin_write().await?;
                        let published = match &stored.booking_id {
                            Some(id) => {
                                self.cancel_in(&tx.txn, id, BookingStatus::Cancelled)
                                    .await?
                            }
                            None => Vec::new(),
                        };
                        set_state(
                            &tx.txn,
                            &stored.hold_id,
                            CheckoutState::Failed,
                            stored.booking_id.as_deref(),
                            now_ms(),
                        )
                        .await?;
                        tx.commit().await?;
                        Ok(published)
                    })
                    .await?;
                self.bus.publish(published).await;
                return Ok(());
            }
            (CheckoutState::Refunding, _) => {
                return Err(AppError::Internal(format!("refund refused: {err}")));
            }
            _ => return Err(AppError::Internal(format!("stripe refused: {err}"))),
        };
        self.finish_outbox_step(stored, done).await
    }

    /// One pass of the checkout worker: due Stripe calls, then checkouts left waiting (a lost
    /// webhook, a closed browser) whose intent is fetched and settled.
    pub async fn run_checkout_pass(&self) -> Result<(), AppError> {
        let Some(stripe) = self.stripe.as_ref() else {
            return Ok(());
        };
        let now = now_ms();
        let due = checkout::Entity::find()
            .filter(checkout::Column::State.is_in(CheckoutState::OUTBOX))
            .filter(checkout::Column::NextAttemptAtMs.lte(now))
            .order_by_asc(checkout::Column::NextAttemptAtMs)
            .limit(50)
            .all(&self.db.conn)
            .await?;
        for stored in due {
            self.run_outbox_step(&stored.hold_id).await;
        }
        let waiting = checkout::Entity::find()
            .filter(checkout::Column::State.eq(CheckoutState::Pending.as_str()))
            .filter(checkout::Column::NextAttemptAtMs.lte(now))
            .order_by_asc(checkout::Column::NextAttemptAtMs)
            .limit(50)
            .all(&self.db.conn)
            .await?;
        for stored in waiting {
            let lease = checkout::Entity::update_many()
                .col_expr(
                    checkout::Column::NextAttemptAtMs,
                    Expr::value(now + Self::ms(self.settings.checkout_reconcile_after)),
                )
                .filter(checkout::Column::HoldId.eq(stored.hold_id.as_str()))
                .filter(checkout::Column::NextAttemptAtMs.lte(now))
                .exec(&self.db.conn)
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
        let hold = hold::Entity::find_by_id(stored.hold_id.clone())
            .one(&self.db.conn)
            .await?;
        let expired = hold.is_none_or(|h| HoldStatus::of(&h, now_ms()) != HoldStatus::Active);
        if !expired {
            return Ok(());
        }
        let moved = checkout::Entity::update_many()
            .col_expr(
                checkout::Column::State,
                Expr::value(CheckoutState::Cancelling.as_str()),
            )
            .col_expr(checkout::Column::NextAttemptAtMs, Expr::value(now_ms()))
            .filter(checkout::Column::HoldId.eq(stored.hold_id.as_str()))
            .filter(checkout::Column::State.eq(CheckoutState::Pending.as_str()))
            .exec(&self.db.conn)
            .await?;
        if moved.rows_affected == 1 {
            tracing::info!(hold.id = %stored.hold_id, "unpaid checkout of an expired hold: cancelling the intent");
            self.run_outbox_step(&stored.hold_id).await;
        }
        Ok(())
    }

    /// Runs the checkout worker until shutdown.
    pub async fn run_checkout_worker(
        self,
        interval: std::time::Duration,
        mut shutdown: super::sweeper::Shutdown,
    ) {
        if self.stripe.is_none() {
            return;
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(err) = self.run_checkout_pass().await {
                        tracing::warn!(error = %err, "checkout worker pass failed; will try again");
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    }
}

fn settled_of(stored: &checkout::Model) -> Settled {
    match CheckoutState::parse(&stored.state) {
        CheckoutState::Booked | CheckoutState::Captured => match &stored.booking_id {
            Some(id) => Settled::Booked(id.clone()),
            None => Settled::NotHonoured,
        },
        CheckoutState::Failed | CheckoutState::Cancelled if stored.booking_id.is_none() => {
            Settled::Failed
        }
        CheckoutState::Pending => Settled::Pending(IntentStatus::RequiresPaymentMethod),
        _ => Settled::NotHonoured,
    }
}

async fn set_state<C: ConnectionTrait>(
    conn: &C,
    hold_id: &str,
    state: CheckoutState,
    booking_id: Option<&str>,
    now: i64,
) -> Result<(), AppError> {
    checkout::Entity::update_many()
        .col_expr(checkout::Column::State, Expr::value(state.as_str()))
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
