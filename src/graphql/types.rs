//! GraphQL output types. They wrap the service's views, never the tables.

use async_graphql::{Enum, ID, SimpleObject};
use chrono::{DateTime, TimeZone, Utc};

use crate::domain::area::{AreaChange as DomainAreaChange, AreaView, HoldAreaView};
use crate::domain::seat_change::SeatChange as DomainSeatChange;
use crate::domain::status::seat_status_char;
use crate::domain::views::{
    BookingView, CategoryView, CheckInView, EventView, HoldView, SeatMapView, SeatView, TicketView,
};

pub fn datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// GraphQL `Int` is 32-bit; counts and cents beyond it are clamped rather than wrapped.
pub fn int(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
}

/// Whether a seat can be taken.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::domain::status::SeatStatus")]
pub enum SeatStatus {
    Available,
    Held,
    Booked,
    /// Taken off sale by the organizer.
    Blocked,
}

/// Where a hold is in its life.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::domain::status::HoldStatus")]
pub enum HoldStatus {
    Active,
    Confirmed,
    Released,
    Expired,
}

/// Where a booking is in its life.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::domain::status::BookingStatus")]
pub enum BookingStatus {
    Confirmed,
    Cancelled,
    Refunded,
}

/// Where an event is in its life; only ON_SALE events (inside their sales window) take holds.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::domain::status::EventStatus")]
pub enum EventStatus {
    /// Being prepared: only admins see it.
    Draft,
    OnSale,
    Paused,
    Closed,
    /// Final: holds released, bookings cancelled and paid ones refunded.
    Cancelled,
}

/// An event with live seat counts.
#[derive(SimpleObject, Clone, Debug)]
pub struct Event {
    pub id: ID,
    pub name: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub seat_count: i32,
    /// Seats free to hold now (including seats of holds that have run out).
    pub available: i32,
    pub held: i32,
    pub booked: i32,
    /// Seats taken off sale; seatCount = available + held + booked + blocked.
    pub blocked: i32,
    pub status: EventStatus,
    /// ON_SALE and inside the sales window right now.
    pub on_sale_now: bool,
    /// When sales open (inclusive); null: as soon as the event is ON_SALE.
    pub sales_start_at: Option<DateTime<Utc>>,
    /// When sales close (exclusive); null: when the event is closed.
    pub sales_end_at: Option<DateTime<Utc>>,
    /// Most seats and places in one hold; null: the server's default.
    pub max_seats_per_order: Option<i32>,
    /// Most seats and places in one buyer's active holds and confirmed bookings of this event.
    pub max_seats_per_buyer: Option<i32>,
    /// How often `extendHold` may be used on one hold.
    pub max_hold_extensions: i32,
    pub categories: Vec<Category>,
    /// General-admission areas; their places are counted in the seat counts above.
    pub areas: Vec<Area>,
}

/// General admission: a capacity, not numbered seats.
#[derive(SimpleObject, Clone, Debug)]
pub struct Area {
    pub id: ID,
    pub name: String,
    pub category_id: ID,
    /// capacity = available + held + booked + blocked.
    pub capacity: i32,
    pub available: i32,
    pub held: i32,
    pub booked: i32,
    pub blocked: i32,
    /// Per area, +1 per committed change of its counts; unrelated to `seq`.
    pub version: i32,
}

impl From<AreaView> for Area {
    fn from(a: AreaView) -> Self {
        Self {
            id: ID(a.id.to_string()),
            name: a.name.clone(),
            category_id: ID(a.category_id.to_string()),
            capacity: int(a.capacity),
            available: int(a.available()),
            held: int(a.held),
            booked: int(a.booked),
            blocked: int(a.blocked),
            version: int(a.version),
        }
    }
}

/// Places of one area in a hold or booking.
#[derive(SimpleObject, Clone, Debug)]
pub struct HoldArea {
    pub area_id: ID,
    pub quantity: i32,
    /// The price of one place.
    pub price_cents: i32,
}

impl From<HoldAreaView> for HoldArea {
    fn from(l: HoldAreaView) -> Self {
        Self {
            area_id: ID(l.area_id.to_string()),
            quantity: int(l.quantity),
            price_cents: int(l.price_cents),
        }
    }
}

/// An area's counts after a committed change; apply it only if its version is higher than
/// the one you hold.
#[derive(SimpleObject, Clone, Debug)]
pub struct AreaChange {
    pub event_id: ID,
    pub area_id: ID,
    pub available: i32,
    pub held: i32,
    pub booked: i32,
    pub blocked: i32,
    pub version: i32,
}

impl From<DomainAreaChange> for AreaChange {
    fn from(c: DomainAreaChange) -> Self {
        Self {
            event_id: ID(c.event_id.to_string()),
            area_id: ID(c.area_id.to_string()),
            available: int(c.available),
            held: int(c.held),
            booked: int(c.booked),
            blocked: int(c.blocked),
            version: int(c.version),
        }
    }
}

/// A price category: seats of a category cost its price.
#[derive(SimpleObject, Clone, Debug)]
pub struct Category {
    pub id: ID,
    pub name: String,
    pub price_cents: i32,
    pub color: Option<String>,
}

impl From<CategoryView> for Category {
    fn from(c: CategoryView) -> Self {
        Self {
            id: ID(c.id.to_string()),
            name: c.name,
            price_cents: int(c.price_cents),
            color: c.color,
        }
    }
}

impl From<EventView> for Event {
    fn from(e: EventView) -> Self {
        Self {
            id: ID(e.id.to_string()),
            name: e.name,
            venue: e.venue,
            starts_at: datetime(e.starts_at_ms),
            seat_count: int(e.seat_count),
            available: int(e.available),
            held: int(e.held),
            booked: int(e.booked),
            blocked: int(e.blocked),
            status: e.status.into(),
            on_sale_now: e.on_sale_now,
            sales_start_at: e.sales_start_at_ms.map(datetime),
            sales_end_at: e.sales_end_at_ms.map(datetime),
            max_seats_per_order: e.limits.per_order,
            max_seats_per_buyer: e.limits.per_buyer,
            max_hold_extensions: e.max_hold_extensions,
            categories: e.categories.into_iter().map(Into::into).collect(),
            areas: e.areas.into_iter().map(Into::into).collect(),
        }
    }
}

/// One seat and its status right now.
#[derive(SimpleObject, Clone, Debug)]
pub struct Seat {
    pub id: ID,
    pub section: String,
    pub row: String,
    pub number: i32,
    pub price_cents: i32,
    pub status: SeatStatus,
    /// When the hold on this seat runs out; set while HELD.
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// Its price category, if it has one.
    pub category_id: Option<ID>,
    /// An accessible place.
    pub accessible: bool,
    /// Why the seat is blocked (admins only; null for everyone else).
    pub blocked_reason: Option<String>,
}

impl From<SeatView> for Seat {
    fn from(s: SeatView) -> Self {
        Self {
            id: ID(s.id.to_string()),
            section: s.section,
            row: s.row,
            number: s.number,
            price_cents: int(s.price_cents),
            status: s.status.into(),
            hold_expires_at: s.hold_expires_at_ms.map(datetime),
            category_id: s.category_id.map(|id| ID(id.to_string())),
            accessible: s.accessible,
            blocked_reason: s.blocked_reason,
        }
    }
}

/// An event's seats and the seat-change sequence number they reflect.
#[derive(SimpleObject, Clone, Debug)]
pub struct SeatMap {
    pub event: Event,
    pub seats: Vec<Seat>,
    /// Subscribe to `seatChanges` with `afterSeq` set to this to stay exactly current.
    pub seq: i32,
    /// The compact form for big venues: one character per seat of `seats`, in the same
    /// (layout) order: `A` available, `H` held, `B` booked, `X` blocked (unknown characters:
    /// not holdable). Load `seats { id … }` once, then only `states` and `seq`, and apply
    /// `seatChanges` from that `seq` by seat id.
    pub states: String,
    /// The event's general-admission areas; follow them with `areaChanges`.
    pub areas: Vec<Area>,
}

impl From<SeatMapView> for SeatMap {
    fn from(m: SeatMapView) -> Self {
        Self {
            states: m.seats.iter().map(|s| seat_status_char(s.status)).collect(),
            areas: m.event.areas.iter().cloned().map(Into::into).collect(),
            event: m.event.into(),
            seats: m.seats.into_iter().map(Into::into).collect(),
            seq: int(m.seq),
        }
    }
}

/// Seats held for one user until `expiresAt`.
#[derive(SimpleObject, Clone, Debug)]
pub struct Hold {
    pub id: ID,
    pub event_id: ID,
    pub seats: Vec<Seat>,
    /// General-admission places in the hold.
    pub areas: Vec<HoldArea>,
    pub status: HoldStatus,
    pub expires_at: DateTime<Utc>,
    pub total_cents: i32,
    /// Who holds it.
    pub user_id: String,
    /// How often `extendHold` may still be used on it.
    pub extensions_left: i32,
    pub created_at: DateTime<Utc>,
}

impl From<HoldView> for Hold {
    fn from(h: HoldView) -> Self {
        Self {
            id: ID(h.id),
            event_id: ID(h.event_id.to_string()),
            seats: h.seats.into_iter().map(Into::into).collect(),
            areas: h.areas.into_iter().map(Into::into).collect(),
            status: h.status.into(),
            expires_at: datetime(h.expires_at_ms),
            total_cents: int(h.total_cents),
            user_id: h.user_id,
            extensions_left: h.extensions_left,
            created_at: datetime(h.created_at_ms),
        }
    }
}

/// Booked seats.
#[derive(SimpleObject, Clone, Debug)]
pub struct Booking {
    pub id: ID,
    pub event_id: ID,
    pub hold_id: ID,
    pub seats: Vec<Seat>,
    /// General-admission places in the booking.
    pub areas: Vec<HoldArea>,
    pub status: BookingStatus,
    pub total_cents: i32,
    pub payment_intent_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Who booked it.
    pub user_id: String,
    /// One per seat, with the codes to show at the door.
    pub tickets: Vec<Ticket>,
}

impl From<BookingView> for Booking {
    fn from(b: BookingView) -> Self {
        Self {
            id: ID(b.id),
            event_id: ID(b.event_id.to_string()),
            hold_id: ID(b.hold_id),
            seats: b.seats.into_iter().map(Into::into).collect(),
            areas: b.areas.into_iter().map(Into::into).collect(),
            status: b.status.into(),
            total_cents: int(b.total_cents),
            payment_intent_id: b.payment_intent_id,
            created_at: datetime(b.created_at_ms),
            user_id: b.user_id,
            tickets: b.tickets.into_iter().map(Into::into).collect(),
        }
    }
}

/// Entry for one seat (or general-admission place) of a booking.
#[derive(SimpleObject, Clone, Debug)]
pub struct Ticket {
    pub id: ID,
    pub booking_id: ID,
    pub event_id: ID,
    /// Set for a seat.
    pub seat_id: Option<ID>,
    /// Set for a general-admission place.
    pub area_id: Option<ID>,
    /// Unguessable, letters and digits only; only the booking's owner and admins read it.
    pub code: String,
    /// When it was redeemed at the door.
    pub checked_in_at: Option<DateTime<Utc>>,
}

impl From<TicketView> for Ticket {
    fn from(t: TicketView) -> Self {
        Self {
            id: ID(t.id.to_string()),
            booking_id: ID(t.booking_id),
            event_id: ID(t.event_id.to_string()),
            seat_id: t.seat_id.map(|id| ID(id.to_string())),
            area_id: t.area_id.map(|id| ID(id.to_string())),
            code: t.code,
            checked_in_at: t.checked_in_at_ms.map(datetime),
        }
    }
}

/// A ticket redeemed at the door, and its booking.
#[derive(SimpleObject, Clone, Debug)]
pub struct CheckIn {
    pub ticket: Ticket,
    pub booking: Booking,
}

impl From<CheckInView> for CheckIn {
    fn from(c: CheckInView) -> Self {
        Self {
            ticket: c.ticket.into(),
            booking: c.booking.into(),
        }
    }
}

/// One committed change of one seat.
#[derive(SimpleObject, Clone, Debug)]
pub struct SeatChange {
    pub event_id: ID,
    pub seat_id: ID,
    pub status: SeatStatus,
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// Strictly increasing per event; a gap means a missed change.
    pub seq: i32,
}

impl From<DomainSeatChange> for SeatChange {
    fn from(c: DomainSeatChange) -> Self {
        Self {
            event_id: ID(c.event_id.to_string()),
            seat_id: ID(c.seat_id.to_string()),
            status: c.status.into(),
            hold_expires_at: c.hold_expires_at_ms.map(datetime),
            seq: int(c.seq),
        }
    }
}
