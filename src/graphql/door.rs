//! The door (admin only): looking tickets up and checking them in.

use async_graphql::{Context, ID, Object, Result};

use super::errors::GqlResultExt;
use super::types::{CheckIn, Ticket};
use super::{booking, caller};
use crate::domain::input::{IdempotencyKey, parse_numeric_id};

#[derive(Default)]
pub struct DoorQuery;

#[Object]
impl DoorQuery {
    /// The ticket with this code, or null (admin only). Failed look-ups are rate limited.
    async fn ticket(&self, ctx: &Context<'_>, code: String) -> Result<Option<Ticket>> {
        Ok(booking(ctx)
            .ticket_by_code(caller(ctx), &code)
            .await
            .gql()?
            .map(Into::into))
    }
}

#[derive(Default)]
pub struct DoorMutation;

#[Object]
impl DoorMutation {
    /// Redeems a ticket at the door of `eventId`, exactly once (admin only). Later calls get
    /// `ALREADY_CHECKED_IN` with `extensions.checkedInAt`; a retry with the same
    /// `idempotencyKey` gets the first answer. Unknown codes, another event's tickets and
    /// tickets of cancelled or refunded bookings get `TICKET_INVALID` with
    /// `extensions.reason`; failed look-ups are rate limited (`RETRY_LATER`).
    async fn check_in(
        &self,
        ctx: &Context<'_>,
        code: String,
        event_id: ID,
        idempotency_key: Option<String>,
    ) -> Result<CheckIn> {
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        let key = IdempotencyKey::parse(idempotency_key).gql()?;
        Ok(booking(ctx)
            .check_in(caller(ctx), &code, event_id, key)
            .await
            .gql()?
            .into())
    }
}
