//! General-admission areas: taking places off sale, and their live counts over WebSocket.

use async_graphql::{Context, ID, Object, Result, Subscription};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::errors::GqlResultExt;
use super::event::viewer;
use super::types::{Area, AreaChange};
use super::{booking, caller};
use crate::domain::input::parse_numeric_id;

#[derive(Default)]
pub struct AreaMutation;

#[Object]
impl AreaMutation {
    /// Takes `quantity` available places of an area off sale (admin only); fewer available
    /// places than that is SEAT_UNAVAILABLE with `areaIds`.
    async fn block_area_places(
        &self,
        ctx: &Context<'_>,
        area_id: ID,
        quantity: i32,
    ) -> Result<Area> {
        caller(ctx).admin().gql()?;
        let area_id = parse_numeric_id(&area_id, "area").gql()?;
        Ok(booking(ctx)
            .block_area_places(area_id, quantity)
            .await
            .gql()?
            .into())
    }

    /// Puts `quantity` blocked places of an area back on sale (admin only); more than are
    /// blocked is BAD_USER_INPUT.
    async fn unblock_area_places(
        &self,
        ctx: &Context<'_>,
        area_id: ID,
        quantity: i32,
    ) -> Result<Area> {
        caller(ctx).admin().gql()?;
        let area_id = parse_numeric_id(&area_id, "area").gql()?;
        Ok(booking(ctx)
            .unblock_area_places(area_id, quantity)
            .await
            .gql()?
            .into())
    }
}

#[derive(Default)]
pub struct AreaSubscription;

#[Subscription]
impl AreaSubscription {
    /// The counts of the event's areas after each committed change, from now on (no replay):
    /// load `seatMap.areas` first, then apply a change only if its `version` is higher than
    /// the one you hold.
    async fn area_changes(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
    ) -> Result<impl Stream<Item = Result<AreaChange>> + use<>> {
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        let svc = booking(ctx);
        svc.visible_event(event_id, viewer(ctx)).await.gql()?;
        let changes = BroadcastStream::new(svc.bus().subscribe_areas(event_id));
        // A subscriber that fell behind skips what it missed: every change carries the full
        // counts, so the next one brings it up to date.
        Ok(changes.filter_map(|item| async move { item.ok().map(|c| Ok(AreaChange::from(c))) }))
    }
}
