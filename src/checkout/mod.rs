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
//! once, in any order, on any instance. The decisions themselves are pure code in `state`.
//! Cancelling a booking lives here too, since a paid one must give the money back.

mod event_cancel;
mod outbox;
mod saga;
pub mod state;
mod worker;

use std::time::Duration;

use crate::booking::BookingService;
use crate::domain::limits::PAYMENT_RETRY_AFTER_MS;
use crate::error::AppError;
use crate::payment::{PaymentError, StripeClient};
use entity::checkout;

/// Timings of the saga.
#[derive(Clone, Debug)]
pub struct CheckoutSettings {
    /// How far `startCheckout` extends a hold (once), so a buyer typing card details keeps it.
    pub grace: Duration,
    /// How long a checkout may wait before the worker asks Stripe about it itself.
    pub reconcile_after: Duration,
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

/// The payment saga on top of the booking rules; cheap to clone.
#[derive(Clone)]
pub struct CheckoutService {
    booking: BookingService,
    /// `None`: payments off.
    stripe: Option<StripeClient>,
    settings: CheckoutSettings,
}

impl CheckoutService {
    pub fn new(
        booking: BookingService,
        stripe: Option<StripeClient>,
        settings: CheckoutSettings,
    ) -> Self {
        Self {
            booking,
            stripe,
            settings,
        }
    }

    fn stripe(&self) -> Result<&StripeClient, AppError> {
        self.stripe.as_ref().ok_or_else(|| {
            AppError::BadInput("payments are off on this server: book with confirmHold".into())
        })
    }
}

fn payment_error(err: PaymentError) -> AppError {
    if err.is_transient() {
        AppError::retry_later(
            PAYMENT_RETRY_AFTER_MS,
            "the payment provider is not answering; try again shortly",
        )
    } else {
        AppError::Internal(format!("payment provider refused a request: {err}"))
    }
}

/// The idempotency key of a Stripe call about a hold.
fn stripe_key(action: &str, hold_id: &str) -> String {
    format!("onsale-{action}-{hold_id}")
}
