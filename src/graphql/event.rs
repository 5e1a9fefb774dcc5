//! Events and seat maps.

use async_graphql::{Context, ID, InputObject, Object, Result};
use chrono::{DateTime, Utc};

use super::errors::GqlResultExt;
use super::types::{Event, SeatMap};
use super::{booking, caller};
use crate::booking::event_input::{NewEvent, NewRow, NewSection};
use crate::domain::input::{parse_label, parse_numeric_id};
use crate::domain::limits::SECTION_NAME_MAX_CHARS;

/// One row of seats, numbered 1 to `seats`.
#[derive(InputObject)]
pub struct RowInput {
    pub label: String,
    pub seats: i32,
    pub price_cents: i32,
}

/// A named section of rows.
#[derive(InputObject)]
pub struct SectionInput {
    pub name: String,
    pub rows: Vec<RowInput>,
}

/// A new event and its seating plan.
#[derive(InputObject)]
pub struct CreateEventInput {
    pub name: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub sections: Vec<SectionInput>,
}

#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// All events, soonest first, with live seat counts.
    async fn events(&self, ctx: &Context<'_>) -> Result<Vec<Event>> {
        let events = booking(ctx).events().await.gql()?;
        Ok(events.into_iter().map(Into::into).collect())
    }

    /// One event, or null if there is none with this id.
    async fn event(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Event>> {
        let Ok(id) = parse_numeric_id(&id, "event") else {
            return Ok(None);
        };
        Ok(booking(ctx).event(id).await.gql()?.map(Into::into))
    }

    /// The seats of an event (optionally one section) with the `seq` the map reflects.
    #[graphql(complexity = "super::SEAT_MAP_COMPLEXITY + child_complexity")]
    async fn seat_map(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        section: Option<String>,
    ) -> Result<SeatMap> {
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        let section = section
            .map(|s| parse_label(&s, "section", SECTION_NAME_MAX_CHARS))
            .transpose()
            .gql()?;
        let map = booking(ctx)
            .seat_map(event_id, section.as_deref())
            .await
            .gql()?;
        Ok(map.into())
    }
}

#[derive(Default)]
pub struct EventMutation;

#[Object]
impl EventMutation {
    /// Creates an event with its seats (admin only).
    async fn create_event(&self, ctx: &Context<'_>, input: CreateEventInput) -> Result<Event> {
        caller(ctx).admin().gql()?;
        let input = NewEvent {
            name: input.name,
            venue: input.venue,
            starts_at_ms: input.starts_at.timestamp_millis(),
            sections: input
                .sections
                .into_iter()
                .map(|s| NewSection {
                    name: s.name,
                    rows: s
                        .rows
                        .into_iter()
                        .map(|r| NewRow {
                            label: r.label,
                            seats: r.seats,
                            price_cents: r.price_cents,
                        })
                        .collect(),
                })
                .collect(),
        };
        Ok(booking(ctx).create_event(input).await.gql()?.into())
    }
}
