//! Bookings: confirming holds, cancelling, reading.

use async_graphql::{Context, ID, Object, Result};

use super::errors::GqlResultExt;
use super::types::Booking;
use super::{booking, checkout, user};
use crate::domain::input::{IdempotencyKey, parse_uuid_id};

#[derive(Default)]
pub struct BookingQuery;

#[Object]
impl BookingQuery {
    /// Your bookings, newest first.
    async fn my_bookings(&self, ctx: &Context<'_>) -> Result<Vec<Booking>> {
        let user = user(ctx).gql()?;
        let bookings = booking(ctx).my_bookings(user).await.gql()?;
        Ok(bookings.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct BookingMutation;

#[Object]
impl BookingMutation {
    /// Books your active hold directly (payments off, or a hold that costs nothing).
    async fn confirm_hold(
        &self,
        ctx: &Context<'_>,
        hold_id: ID,
        idempotency_key: Option<String>,
    ) -> Result<Booking> {
        let user = user(ctx).gql()?;
        let hold_id = parse_uuid_id(&hold_id, "hold").gql()?;
        let key = IdempotencyKey::parse(idempotency_key).gql()?;
        Ok(booking(ctx)
            .confirm_hold(user, &hold_id, key)
            .await
            .gql()?
            .into())
    }

    /// Cancels your booking and frees its seats (a paid booking is refunded).
    async fn cancel_booking(&self, ctx: &Context<'_>, booking_id: ID) -> Result<Booking> {
        let user = user(ctx).gql()?;
        let booking_id = parse_uuid_id(&booking_id, "booking").gql()?;
        Ok(checkout(ctx)
            .cancel_booking(user, &booking_id)
            .await
            .gql()?
            .into())
    }
}
