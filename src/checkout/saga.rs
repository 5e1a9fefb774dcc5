//! The saga's steps that clients and Stripe drive: starting a checkout, settling a payment
//! (from `completeCheckout`, a webhook or the worker) and cancelling a booking.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TryInsertResult};
use tracing::instrument;

use super::outbox::set_state;
use super::state::{self, CheckoutState, IntentOutcome, Settled};
use super::{CheckoutService, CheckoutView, payment_error, stripe_key};
use crate::auth::User;
use crate::booking::idempotency::{self, Operation};
use crate::booking::{ensure_active, views};
use crate::db::RowLock;
use crate::domain::clock::{millis, now_ms};
use crate::domain::input::IdempotencyKey;
use crate::domain::limits::PAYMENT_RETRY_AFTER_MS;
use crate::domain::status::BookingStatus;
use crate::domain::views::BookingView;
use crate::error::AppError;
use crate::payment::{IntentStatus, PaymentIntent, WebhookEvent};
use crate::realtime::Published;
use entity::{booking, checkout, stripe_event};

impl CheckoutService {
    /// Starts paying for the caller's active hold: one PaymentIntent per hold, however often
    /// this is called.
    #[instrument(skip_all, fields(hold.id = %hold_id, user.id = %user.id), err(level = "debug"))]
    pub async fn start_checkout(
        &self,
        user: &User,
        hold_id: &str,
        key: Option<IdempotencyKey>,
    ) -> Result<CheckoutView, AppError> {
        let stripe = self.stripe()?;
        let db = self.booking.db();
        let op = Operation::StartCheckout;
        if let Some(view) =
            idempotency::replay(&db.conn, &user.id, op, key.as_ref(), |id| async move {
                self.checkout_view(&id).await
            })
            .await?
        {
            return Ok(view);
        }
        let _slot = self.booking.admit_mutation()?;
        let stored = views::owned_hold(&db.conn, user, hold_id).await?;
        if let Some(existing) = checkout::Entity::find_by_id(hold_id.to_owned())
            .one(&db.conn)
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
                &stripe_key("checkout", hold_id),
            )
            .await
            .map_err(payment_error)?;
        let client_secret = intent.client_secret.clone().ok_or_else(|| {
            AppError::Internal("the payment provider returned no client secret".into())
        })?;
        let (intent_ref, client_secret, key_ref) = (&intent, &client_secret, key.as_ref());
        let outcome = db
            .write(|txn| async move {
                let txn = &*txn;
                let (current, locked) = self.booking.lock_hold(txn, hold_id).await?;
                if let Some(existing) = checkout::Entity::find_by_id(hold_id.to_owned())
                    .one(txn)
                    .await?
                {
                    return Ok((existing, Published::default()));
                }
                let now = now_ms();
                ensure_active(&current, now)?;
                // Extended once (a checkout exists from now on), by a bounded grace period.
                let expiry = current.expires_at_ms.max(now + millis(self.settings.grace));
                let published = if expiry > current.expires_at_ms {
                    self.booking
                        .extend_hold_in(txn, &current, &locked, expiry)
                        .await?
                } else {
                    Published::default()
                };
                let created = checkout::Entity::insert(checkout::ActiveModel {
                    hold_id: Set(hold_id.to_owned()),
                    user_id: Set(current.user_id.clone()),
                    event_id: Set(current.event_id),
                    payment_intent_id: Set(intent_ref.id.clone()),
                    client_secret: Set(client_secret.clone()),
                    amount_cents: Set(current.total_cents),
                    currency: Set(intent_ref.currency.clone()),
                    state: Set(CheckoutState::Pending),
                    booking_id: Set(None),
                    attempts: Set(0),
                    next_attempt_at_ms: Set(now + millis(self.settings.reconcile_after)),
                    lease_token: Set(None),
                    last_error: Set(None),
                    created_at_ms: Set(now),
                    updated_at_ms: Set(now),
                })
                .exec_with_returning(txn)
                .await?;
                idempotency::record_if(txn, &user.id, op, key_ref, hold_id).await?;
                Ok((created, published))
            })
            .await;
        match outcome {
            Ok((created, published)) => {
                self.booking.bus().publish_all(published).await;
                if created.payment_intent_id != intent.id {
                    // A concurrent twin won; its intent is the one. Let ours go.
                    let _ = stripe
                        .cancel_payment_intent(&intent.id, &stripe_key("orphan", &intent.id))
                        .await;
                }
                tracing::info!(payment_intent = %created.payment_intent_id, "checkout started");
                Ok(created.into())
            }
            Err(err) => {
                // Nobody can pay an intent whose secret was never handed out, but tidy up.
                let _ = stripe
                    .cancel_payment_intent(&intent.id, &stripe_key("cancel", hold_id))
                    .await;
                if let Some(k) = &key
                    && let Ok(Some(id)) = idempotency::lookup(&db.conn, &user.id, op, k).await
                {
                    return self.checkout_view(&id).await;
                }
                Err(err)
            }
        }
    }

    async fn checkout_view(&self, hold_id: &str) -> Result<CheckoutView, AppError> {
        checkout::Entity::find_by_id(hold_id.to_owned())
            .one(&self.booking.db().conn)
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
        let conn = &self.booking.db().conn;
        views::owned_hold(conn, user, hold_id).await?;
        let stored = checkout::Entity::find_by_id(hold_id.to_owned())
            .one(conn)
            .await?
            .ok_or_else(|| {
                AppError::BadInput(
                    "no checkout was started for this hold: call startCheckout first".into(),
                )
            })?;
        if let Some(booking_id) = &stored.booking_id {
            return views::booking(conn, booking_id).await;
        }
        let intent = stripe
            .retrieve_payment_intent(&stored.payment_intent_id)
            .await
            .map_err(payment_error)?;
        match self.settle(&stored, &intent, None).await? {
            Settled::Booked(booking_id) => views::booking(conn, &booking_id).await,
            Settled::NotHonoured => Err(AppError::HoldExpired),
            Settled::Failed => Err(AppError::HoldNotActive("released: the payment failed")),
            Settled::Pending(IntentStatus::Processing) => Err(AppError::retry_later(
                PAYMENT_RETRY_AFTER_MS,
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
            .one(&self.booking.db().conn)
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
        .exec_without_returning(&self.booking.db().conn)
        .await;
        Ok(())
    }

    /// Acts on the current state of the intent.
    pub(super) async fn settle(
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
        match state::on_intent(&intent.status, final_failure) {
            IntentOutcome::Paid { captured } => {
                self.finalize_paid(&stored.hold_id, captured, event).await
            }
            IntentOutcome::Failed(final_state) => {
                self.payment_failed(&stored.hold_id, final_state, event)
                    .await
            }
            IntentOutcome::Pending(status) => {
                if let Some(e) = event {
                    self.record_event_alone(e).await?;
                }
                Ok(Settled::Pending(status))
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
        let query = self.booking.db().locking(
            checkout::Entity::find_by_id(hold_id.to_owned()),
            RowLock::Wait,
        );
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
            .booking
            .db()
            .write(|txn| async move {
                let txn = &*txn;
                let Some(stored) = self.lock_checkout(txn, hold_id, event).await? else {
                    return Ok((
                        self.settled_from_state(hold_id).await?,
                        Published::default(),
                    ));
                };
                if stored.state != CheckoutState::Pending {
                    return Ok((
                        state::settled_of(stored.state, stored.booking_id.as_deref()),
                        Published::default(),
                    ));
                }
                let now = now_ms();
                match self
                    .booking
                    .book_hold(txn, hold_id, Some(&stored.payment_intent_id))
                    .await
                {
                    Ok((booking_id, published)) => {
                        let next = state::after_payment(captured, true);
                        set_state(txn, hold_id, next, Some(&booking_id), now).await?;
                        Ok((Settled::Booked(booking_id), published))
                    }
                    Err(AppError::HoldExpired | AppError::HoldNotActive(_)) => {
                        let next = state::after_payment(captured, false);
                        set_state(txn, hold_id, next, None, now).await?;
                        Ok((Settled::NotHonoured, Published::default()))
                    }
                    Err(other) => Err(other),
                }
            })
            .await?;
        self.booking.bus().publish_all(published).await;
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
            .one(&self.booking.db().conn)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no checkout for hold {hold_id}")))?;
        Ok(state::settled_of(
            stored.state,
            stored.booking_id.as_deref(),
        ))
    }

    /// The payment failed or was cancelled: release the hold (its seats return to AVAILABLE).
    async fn payment_failed(
        &self,
        hold_id: &str,
        final_state: CheckoutState,
        event: Option<&WebhookEvent>,
    ) -> Result<Settled, AppError> {
        let published = self
            .booking
            .db()
            .write(|txn| async move {
                let txn = &*txn;
                let Some(stored) = self.lock_checkout(txn, hold_id, event).await? else {
                    return Ok(Published::default());
                };
                if stored.state != CheckoutState::Pending {
                    return Ok(Published::default());
                }
                let published = self.booking.release_in(txn, hold_id).await?;
                set_state(txn, hold_id, final_state, None, now_ms()).await?;
                Ok(published)
            })
            .await?;
        if !published.is_empty() {
            tracing::info!(hold.id = %hold_id, "payment failed; hold released");
        }
        self.booking.bus().publish_all(published).await;
        Ok(Settled::Failed)
    }

    /// Cancels the caller's confirmed booking and frees its seats; a paid booking gives the
    /// money back (refund, or cancelling the authorisation). Cancelling again returns it
    /// unchanged.
    #[instrument(skip_all, fields(booking.id = %booking_id, user.id = %user.id), err(level = "debug"))]
    pub async fn cancel_booking(
        &self,
        user: &User,
        booking_id: &str,
    ) -> Result<BookingView, AppError> {
        let db = self.booking.db();
        let stored = views::owned_booking(&db.conn, user, booking_id).await?;
        if stored.status != BookingStatus::Confirmed {
            return views::booking(&db.conn, booking_id).await;
        }
        let _slot = self.booking.admit_mutation()?;
        self.cancel_stored_booking(&stored).await?;
        views::booking(&db.conn, booking_id).await
    }

    /// Cancels a booking that was confirmed when read, frees and publishes its seats, and
    /// gives a paid one's money back. Nothing happens if it is no longer confirmed.
    pub(super) async fn cancel_stored_booking(
        &self,
        stored: &booking::Model,
    ) -> Result<(), AppError> {
        let paid = stored.payment_intent_id.is_some();
        let booking_id = stored.id.as_str();
        let published = self
            .booking
            .db()
            .write(|txn| async move {
                let txn = &*txn;
                if paid {
                    self.cancel_paid_in(txn, stored).await
                } else {
                    self.booking
                        .cancel_in(txn, booking_id, BookingStatus::Cancelled)
                        .await
                }
            })
            .await?;
        self.booking.finish_cancel(booking_id, published).await;
        if paid {
            // Refund (or cancel the authorisation) now; the worker retries if Stripe fails.
            self.run_outbox_step(&stored.hold_id).await;
        }
        Ok(())
    }

    /// Cancels a paid booking inside `txn` and queues the money's return: a refund if it was
    /// captured, else the cancellation of the authorisation.
    async fn cancel_paid_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        booking: &booking::Model,
    ) -> Result<Published, AppError> {
        let Some(stored) = self.lock_checkout(txn, &booking.hold_id, None).await? else {
            return Ok(Published::default());
        };
        let published = self
            .booking
            .cancel_in(txn, &booking.id, BookingStatus::Cancelled)
            .await?;
        set_state(
            txn,
            &booking.hold_id,
            state::on_booking_cancelled(stored.state),
            stored.booking_id.as_deref(),
            now_ms(),
        )
        .await?;
        Ok(published)
    }
}
