//! Holds: taking, releasing and reading seats held for a while.

use async_graphql::{Context, ID, InputObject, Object, Result};

use super::errors::GqlResultExt;
use super::queue::admission;
use super::types::{Hold, HoldStatus};
use super::{booking, user};
use crate::booking::admission::Admission;
use crate::booking::holds::SeatFilter;
use crate::domain::area::{AreaQuantities, hold_seat_ids};
use crate::domain::input::{
    IdempotencyKey, SeatCount, parse_label, parse_numeric_id, parse_uuid_id,
};
use crate::domain::limits::SECTION_NAME_MAX_CHARS;

/// Places of one general-admission area.
#[derive(InputObject)]
pub struct AreaQuantityInput {
    pub area_id: ID,
    pub quantity: i32,
}

pub(crate) fn area_quantities(
    areas: Option<Vec<AreaQuantityInput>>,
) -> Result<AreaQuantities, crate::error::AppError> {
    let raw: Vec<(String, i32)> = areas
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.area_id.0, a.quantity))
        .collect();
    AreaQuantities::parse(&raw)
}

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
        Ok(booking(ctx).hold(user, &id).await.gql()?.map(Into::into))
    }

    /// Your holds, newest first, optionally of one status.
    async fn my_holds(&self, ctx: &Context<'_>, status: Option<HoldStatus>) -> Result<Vec<Hold>> {
        let user = user(ctx).gql()?;
        let holds = booking(ctx)
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
    /// Holds all of the given seats and general-admission places for you, or none of them
    /// (SEAT_UNAVAILABLE lists the taken seats in `seatIds`, the short areas in `areaIds`).
    async fn hold_seats(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        #[graphql(desc = "may be [] when areas are given")] seat_ids: Vec<ID>,
        idempotency_key: Option<String>,
        #[graphql(desc = "general-admission places, in the same all-or-nothing hold")]
        areas: Option<Vec<AreaQuantityInput>>,
    ) -> Result<Hold> {
        let user = user(ctx).gql()?;
        let svc = booking(ctx);
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        let areas = area_quantities(areas).gql()?;
        let raw: Vec<String> = seat_ids.into_iter().map(|id| id.0).collect();
        let seat_ids = hold_seat_ids(&raw, svc.settings().max_seats_per_hold, &areas).gql()?;
        let key = IdempotencyKey::parse(idempotency_key).gql()?;
        Ok(svc
            .hold_seats(
                user,
                event_id,
                seat_ids,
                areas,
                key,
                Admission::Direct(admission(ctx)),
            )
            .await
            .gql()?
            .into())
    }

    /// Holds the best `count` free seats (adjacent in one row when possible, never stranding
    /// a single free seat when another choice does not).
    #[expect(
        clippy::too_many_arguments,
        reason = "one per GraphQL argument of the contract"
    )]
    async fn hold_best_available(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        count: i32,
        section: Option<String>,
        idempotency_key: Option<String>,
        #[graphql(desc = "only seats of this price category")] category: Option<ID>,
        #[graphql(desc = "true: accessible seats only; false: others only; null: any")]
        accessible: Option<bool>,
    ) -> Result<Hold> {
        let user = user(ctx).gql()?;
        let svc = booking(ctx);
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        let count = SeatCount::parse(count, svc.settings().max_seats_per_hold).gql()?;
        let section = section
            .map(|s| parse_label(&s, "section", SECTION_NAME_MAX_CHARS))
            .transpose()
            .gql()?;
        let key = IdempotencyKey::parse(idempotency_key).gql()?;
        let filter = SeatFilter {
            section,
            category_id: category
                .map(|id| parse_numeric_id(&id, "category"))
                .transpose()
                .gql()?,
            accessible,
        };
        Ok(svc
            .hold_best_available(
                user,
                event_id,
                count,
                filter,
                key,
                Admission::Direct(admission(ctx)),
            )
            .await
            .gql()?
            .into())
    }

    /// Keeps your active hold longer: its expiry moves by the hold TTL, at most the event's
    /// `maxHoldExtensions` times and never past two hours from its creation (LIMIT_EXCEEDED).
    async fn extend_hold(
        &self,
        ctx: &Context<'_>,
        hold_id: ID,
        idempotency_key: Option<String>,
    ) -> Result<Hold> {
        let user = user(ctx).gql()?;
        let hold_id = parse_uuid_id(&hold_id, "hold").gql()?;
        let key = IdempotencyKey::parse(idempotency_key).gql()?;
        Ok(booking(ctx)
            .extend_hold(user, &hold_id, key)
            .await
            .gql()?
            .into())
    }

    /// Gives your hold's seats back at once.
    async fn release_hold(&self, ctx: &Context<'_>, hold_id: ID) -> Result<Hold> {
        let user = user(ctx).gql()?;
        let hold_id = parse_uuid_id(&hold_id, "hold").gql()?;
        Ok(booking(ctx)
            .release_hold(user, &hold_id)
            .await
            .gql()?
            .into())
    }
}
