//! Paying for a hold with Stripe.

use async_graphql::{Context, ID, Object, Result, SimpleObject};

use super::errors::GqlResultExt;
use super::types::{Booking, int};
use super::{checkout, user};
use crate::checkout::CheckoutView;
use crate::domain::input::{IdempotencyKey, parse_uuid_id};

/// What the client needs for the card step (Stripe.js `confirmCardPayment` with the secret).
#[derive(SimpleObject, Clone, Debug)]
pub struct Checkout {
    pub hold_id: ID,
    pub payment_intent_id: String,
    pub client_secret: String,
    pub amount_cents: i32,
    pub currency: String,
}

impl From<CheckoutView> for Checkout {
    fn from(c: CheckoutView) -> Self {
        Self {
            hold_id: ID(c.hold_id),
            payment_intent_id: c.payment_intent_id,
            client_secret: c.client_secret,
            amount_cents: int(c.amount_cents),
            currency: c.currency,
        }
    }
}

#[derive(Default)]
pub struct CheckoutMutation;

#[Object]
impl CheckoutMutation {
    /// Starts paying for your hold (payments on): the card is only authorised until the seats
    /// are booked. Extends the hold once so the card step does not lose the seats.
    async fn start_checkout(
        &self,
        ctx: &Context<'_>,
        hold_id: ID,
        idempotency_key: Option<String>,
    ) -> Result<Checkout> {
        let user = user(ctx).gql()?;
        let hold_id = parse_uuid_id(&hold_id, "hold").gql()?;
        let key = IdempotencyKey::parse(idempotency_key).gql()?;
        Ok(checkout(ctx)
            .start_checkout(user, &hold_id, key)
            .await
            .gql()?
            .into())
    }

    /// After the card step: the server asks Stripe itself and books the hold if the payment is
    /// authorised (else the money goes back and you get HOLD_EXPIRED).
    async fn complete_checkout(&self, ctx: &Context<'_>, hold_id: ID) -> Result<Booking> {
        let user = user(ctx).gql()?;
        let hold_id = parse_uuid_id(&hold_id, "hold").gql()?;
        Ok(checkout(ctx)
            .complete_checkout(user, &hold_id)
            .await
            .gql()?
            .into())
    }
}
