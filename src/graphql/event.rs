//! Events and seat maps.

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, Result};
use chrono::{DateTime, Utc};

use super::cache_hint::CacheHint;
use super::errors::GqlResultExt;
use super::types::{Event, EventStatus, Seat, SeatMap};
use super::{booking, caller, checkout};
use crate::auth::Caller;
use crate::booking::event_input::{
    EventUpdate, NewArea, NewCategory, NewEvent, NewRow, NewSection, SaleSettings,
};
use crate::booking::events::Viewer;
use crate::domain::input::{SeatIds, parse_label, parse_numeric_id};
use crate::domain::limits::{MAX_SEATS_PER_BLOCK, SECTION_NAME_MAX_CHARS};
use crate::domain::sale::BuyerLimits;

/// One row of seats, numbered 1 to `seats`.
#[derive(InputObject)]
pub struct RowInput {
    pub label: String,
    pub seats: i32,
    pub price_cents: i32,
    /// A category name of the event: the seats take its price (`priceCents` must then be 0
    /// or the category's price).
    pub category: Option<String>,
    /// Numbers of the row's accessible seats.
    pub accessible: Option<Vec<i32>>,
}

/// A price category of a new event.
#[derive(InputObject)]
pub struct CategoryInput {
    pub name: String,
    pub price_cents: i32,
    /// A display colour, such as `#1e90ff`.
    pub color: Option<String>,
}

/// A general-admission area of a new event: `capacity` places of one category.
#[derive(InputObject)]
pub struct AreaInput {
    pub name: String,
    pub capacity: i32,
    /// A category name of the event: each place costs its price.
    pub category: String,
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
    /// Price categories that rows and areas may name.
    pub categories: Option<Vec<CategoryInput>>,
    /// General-admission areas (sections may then be empty).
    pub areas: Option<Vec<AreaInput>>,
    /// ON_SALE unless given.
    pub status: Option<EventStatus>,
    /// When sales open (inclusive).
    pub sales_start_at: Option<DateTime<Utc>>,
    /// When sales close (exclusive).
    pub sales_end_at: Option<DateTime<Utc>>,
    /// Most seats and places in one hold (null: the server's default).
    pub max_seats_per_order: Option<i32>,
    /// Most seats and places per buyer across active holds and confirmed bookings.
    pub max_seats_per_buyer: Option<i32>,
    /// How often `extendHold` may be used on one hold (1 unless given).
    pub max_hold_extensions: Option<i32>,
}

/// Changes to an event: a field left out stays as it is; an explicit null clears a limit or a
/// window end.
#[derive(InputObject)]
pub struct UpdateEventInput {
    pub name: Option<String>,
    pub venue: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub sales_start_at: MaybeUndefined<DateTime<Utc>>,
    pub sales_end_at: MaybeUndefined<DateTime<Utc>>,
    pub max_seats_per_order: MaybeUndefined<i32>,
    pub max_seats_per_buyer: MaybeUndefined<i32>,
    pub max_hold_extensions: Option<i32>,
}

/// A field that may be left out (unchanged) or null (cleared).
fn patch<T, U>(value: MaybeUndefined<T>, convert: impl FnOnce(T) -> U) -> Option<Option<U>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(convert(v))),
    }
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Admins see DRAFT events; everyone else does not.
pub(crate) fn viewer(ctx: &Context<'_>) -> Viewer {
    Viewer::of(matches!(caller(ctx), Caller::User(user) if user.admin))
}

#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// All events, soonest first, with live seat counts.
    async fn events(&self, ctx: &Context<'_>) -> Result<Vec<Event>> {
        let events = booking(ctx).events(viewer(ctx)).await.gql()?;
        Ok(events.into_iter().map(Into::into).collect())
    }

    /// One event, or null if there is none with this id.
    async fn event(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Event>> {
        let Ok(id) = parse_numeric_id(&id, "event") else {
            return Ok(None);
        };
        Ok(booking(ctx)
            .event(id, viewer(ctx))
            .await
            .gql()?
            .map(Into::into))
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
            .seat_map(event_id, section.as_deref(), viewer(ctx))
            .await
            .gql()?;
        if let (Some(hint), Some(at)) = (ctx.data_opt::<CacheHint>(), map.changes_by_itself_at) {
            hint.changes_at(at);
        }
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
                            category: r.category,
                            accessible: r.accessible.unwrap_or_default(),
                        })
                        .collect(),
                })
                .collect(),
            sale: SaleSettings {
                status: input
                    .status
                    .map_or_else(|| SaleSettings::default().status, Into::into),
                sales_start_at_ms: input.sales_start_at.map(millis),
                sales_end_at_ms: input.sales_end_at.map(millis),
                max_hold_extensions: input
                    .max_hold_extensions
                    .unwrap_or(SaleSettings::default().max_hold_extensions),
            },
            limits: BuyerLimits {
                per_order: input.max_seats_per_order,
                per_buyer: input.max_seats_per_buyer,
            },
            categories: input
                .categories
                .unwrap_or_default()
                .into_iter()
                .map(|c| NewCategory {
                    name: c.name,
                    price_cents: c.price_cents,
                    color: c.color,
                })
                .collect(),
            areas: input
                .areas
                .unwrap_or_default()
                .into_iter()
                .map(|a| NewArea {
                    name: a.name,
                    capacity: a.capacity,
                    category: a.category,
                })
                .collect(),
        };
        Ok(booking(ctx).create_event(input).await.gql()?.into())
    }

    /// Changes an event's details, sales window or limits (admin only).
    async fn update_event(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateEventInput,
    ) -> Result<Event> {
        caller(ctx).admin().gql()?;
        let id = parse_numeric_id(&id, "event").gql()?;
        let change = EventUpdate {
            name: input.name,
            venue: input.venue,
            starts_at_ms: input.starts_at.map(millis),
            sales_start_at_ms: patch(input.sales_start_at, millis),
            sales_end_at_ms: patch(input.sales_end_at, millis),
            max_seats_per_order: patch(input.max_seats_per_order, |v| v),
            max_seats_per_buyer: patch(input.max_seats_per_buyer, |v| v),
            max_hold_extensions: input.max_hold_extensions,
        };
        Ok(booking(ctx).update_event(id, change).await.gql()?.into())
    }

    /// Moves an event through its life (admin only): DRAFT → ON_SALE or CANCELLED,
    /// ON_SALE ↔ PAUSED, ON_SALE or PAUSED → CLOSED, CLOSED → ON_SALE, any → CANCELLED
    /// (final: releases every hold, cancels every booking and refunds the paid ones).
    async fn set_event_status(
        &self,
        ctx: &Context<'_>,
        id: ID,
        status: EventStatus,
    ) -> Result<Event> {
        caller(ctx).admin().gql()?;
        let id = parse_numeric_id(&id, "event").gql()?;
        Ok(checkout(ctx)
            .set_event_status(id, status.into())
            .await
            .gql()?
            .into())
    }

    /// Takes seats off sale (admin only), all or none: each must be AVAILABLE (a held or booked
    /// seat is SEAT_UNAVAILABLE with its id); an already BLOCKED seat is left as it is.
    async fn block_seats(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        seat_ids: Vec<ID>,
        reason: Option<String>,
    ) -> Result<Vec<Seat>> {
        caller(ctx).admin().gql()?;
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        let seat_ids = seat_list(seat_ids).gql()?;
        let seats = booking(ctx)
            .block_seats(event_id, seat_ids, reason)
            .await
            .gql()?;
        Ok(seats.into_iter().map(Into::into).collect())
    }

    /// Puts BLOCKED seats back on sale (admin only), all or none.
    async fn unblock_seats(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        seat_ids: Vec<ID>,
    ) -> Result<Vec<Seat>> {
        caller(ctx).admin().gql()?;
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        let seat_ids = seat_list(seat_ids).gql()?;
        let seats = booking(ctx).unblock_seats(event_id, seat_ids).await.gql()?;
        Ok(seats.into_iter().map(Into::into).collect())
    }
}

fn seat_list(ids: Vec<ID>) -> Result<SeatIds, crate::error::AppError> {
    let raw: Vec<String> = ids.into_iter().map(|id| id.0).collect();
    SeatIds::parse(&raw, MAX_SEATS_PER_BLOCK)
}
