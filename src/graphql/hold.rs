//! Holds: taking, releasing and reading seats held for a while.

use async_graphql::{Context, ID, Object, Result};

use super::types::{Hold, HoldStatus};
use super::{service, user};
use crate::booking::model::{
    IdempotencyKey, SeatCount, SeatIds, parse_label, parse_numeric_id, parse_uuid_id,
};
use crate::error::GqlResultExt;

#[derive(Default)]
pub struct HoldQuery;

#[Object]
impl HoldQuery {
    /// One of your holds (null if it does not exist; FORBIDDEN if it is someone else's).
    async fn hold(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Hold>> {
        let user = user(ctx).gql()?;
        let Ok(id) = parse_uuid_id(&id, "hold") else {
            return Ok(None);
        };
        Ok(service(ctx).hold(user, &id).await.gql()?.map(Into::into))
    }

    /// Your holds, newest first, optionally of one status.
    async fn my_holds(&self, ctx: &Context<'_>, status: Option<HoldStatus>) -> Result<Vec<Hold>> {
        let user = user(ctx).gql()?;
        let holds = service(ctx)
            .my_holds(user, status.map(Into::into))
            .await
            .gql()?;
        Ok(holds.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct HoldMutation;

#[Object]
impl HoldMutation {
    /// Holds all of the given seats for you, or none of them (SEAT_UNAVAILABLE lists the taken ones).
    async fn hold_seats(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        seat_ids: Vec<ID>,
        idempotency_key: Option<String>,
    ) -> Result<Hold> {
        let user = user(ctx).gql()?;
        let svc = service(ctx);
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        super::queue::require_admission(ctx, user, event_id).await?;
        let raw: Vec<String> = seat_ids.into_iter().map(|id| id.0).collect();
        let seat_ids = SeatIds::parse(&raw, svc.settings().max_seats_per_hold).gql()?;
        let key = IdempotencyKey::parse(idempotency_key).gql()?;
        Ok(svc
            .hold_seats(user, event_id, seat_ids, key)
            .await
            .gql()?
            .into())
    }

    /// Holds the best `count` free seats (adjacent in one row when possible).
    async fn hold_best_available(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        count: i32,
        section: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<Hold> {
        let user = user(ctx).gql()?;
        let svc = service(ctx);
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        super::queue::require_admission(ctx, user, event_id).await?;
        let count = SeatCount::parse(count, svc.settings().max_seats_per_hold).gql()?;
        let section = section
            .map(|s| parse_label(&s, "section", 100))
            .transpose()
            .gql()?;
        let key = IdempotencyKey::parse(idempotency_key).gql()?;
        Ok(svc
            .hold_best_available(user, event_id, count, section, key)
            .await
            .gql()?
            .into())
    }

    /// Gives your hold's seats back at once.
    async fn release_hold(&self, ctx: &Context<'_>, hold_id: ID) -> Result<Hold> {
        let user = user(ctx).gql()?;
        let hold_id = parse_uuid_id(&hold_id, "hold").gql()?;
        Ok(service(ctx)
            .release_hold(user, &hold_id)
            .await
            .gql()?
            .into())
    }
}
