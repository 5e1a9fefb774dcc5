//! Live seat changes over WebSocket.

use async_graphql::{Context, ID, Result, Subscription};
use futures::{Stream, StreamExt};

use super::errors::GqlResultExt;
use super::event::viewer;
use super::types::SeatChange;
use super::{booking, feed};
use crate::domain::input::parse_numeric_id;

#[derive(Default)]
pub struct SeatChangeSubscription;

#[Subscription]
impl SeatChangeSubscription {
    /// Every change of the event's seats, in `seq` order. With `afterSeq`, first replays the
    /// changes after it (use the `seq` of `seatMap`), then continues live.
    async fn seat_changes(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        after_seq: Option<i32>,
    ) -> Result<impl Stream<Item = Result<SeatChange>> + use<>> {
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        booking(ctx)
            .visible_event(event_id, viewer(ctx))
            .await
            .gql()?;
        let changes = feed(ctx)
            .open(event_id, after_seq.map(i64::from))
            .await
            .gql()?;
        Ok(changes.map(|item| item.map(SeatChange::from).gql()))
    }
}
