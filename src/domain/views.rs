//! What the services return: events, seat maps, holds and bookings as clients see them at
//! one moment, apart from the tables and from the GraphQL types that wrap them.

use super::area::{AreaView, HoldAreaView};
use super::sale::{BuyerLimits, SaleWindow};
use super::status::{BookingStatus, EventStatus, HoldStatus, SeatStatus, seat_status_at};

/// A seat as clients see it at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatView {
    pub id: i64,
    pub section: String,
    pub row: String,
    pub number: i32,
    pub price_cents: i64,
    pub status: SeatStatus,
    pub hold_expires_at_ms: Option<i64>,
    pub category_id: Option<i64>,
    pub accessible: bool,
    /// Why the organizer blocked it (only for admins' eyes; views for others clear it).
    pub blocked_reason: Option<String>,
}

impl SeatView {
    /// The stored seat as it shows at `now`.
    pub fn of(seat: &entity::seat::Model, now: i64) -> Self {
        Self::with_status(seat, seat_status_at(seat, now))
    }

    /// The stored seat, shown with `status` (the hold expiry only while `Held`).
    pub fn with_status(seat: &entity::seat::Model, status: SeatStatus) -> Self {
        Self {
            id: seat.id,
            section: seat.section.clone(),
            row: seat.row_label.clone(),
            number: seat.number,
            price_cents: seat.price_cents,
            status,
            hold_expires_at_ms: (status == SeatStatus::Held)
                .then_some(seat.hold_expires_at_ms)
                .flatten(),
            category_id: seat.category_id,
            accessible: seat.accessible,
            blocked_reason: (status == SeatStatus::Blocked)
                .then(|| seat.blocked_reason.clone())
                .flatten(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct EventView {
    pub id: i64,
    pub name: String,
    pub venue: String,
    pub starts_at_ms: i64,
    pub seat_count: i64,
    pub available: i64,
    pub held: i64,
    pub booked: i64,
    pub blocked: i64,
    pub status: EventStatus,
    pub sales_start_at_ms: Option<i64>,
    pub sales_end_at_ms: Option<i64>,
    /// ON_SALE and inside the sales window at the moment of the view.
    pub on_sale_now: bool,
    pub limits: BuyerLimits,
    pub max_hold_extensions: i32,
    pub categories: Vec<CategoryView>,
    /// General-admission areas, ascending by id; their places are in the counts above.
    pub areas: Vec<AreaView>,
}

/// A price category of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryView {
    pub id: i64,
    pub name: String,
    pub price_cents: i64,
    pub color: Option<String>,
}

/// How many of an event's seats show each status at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeatCounts {
    pub total: i64,
    pub held: i64,
    pub booked: i64,
    pub blocked: i64,
}

impl EventView {
    /// The stored event with its seat counts and areas (whose places are added to the
    /// counts), as it shows at `now`.
    pub fn of(
        event: entity::event::Model,
        seats: SeatCounts,
        categories: Vec<CategoryView>,
        areas: Vec<AreaView>,
        now: i64,
    ) -> Self {
        let counts = areas.iter().fold(seats, |c, a| SeatCounts {
            total: c.total + a.capacity,
            held: c.held + a.held,
            booked: c.booked + a.booked,
            blocked: c.blocked + a.blocked,
        });
        let window = SaleWindow::of(&event);
        let limits = BuyerLimits::of(&event);
        Self {
            id: event.id,
            name: event.name,
            venue: event.venue,
            starts_at_ms: event.starts_at_ms,
            seat_count: counts.total,
            available: counts.total - counts.held - counts.booked - counts.blocked,
            held: counts.held,
            booked: counts.booked,
            blocked: counts.blocked,
            status: event.status,
            sales_start_at_ms: event.sales_start_at_ms,
            sales_end_at_ms: event.sales_end_at_ms,
            on_sale_now: window.on_sale_at(now),
            limits,
            max_hold_extensions: event.max_hold_extensions,
            categories,
            areas,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SeatMapView {
    pub event: EventView,
    pub seats: Vec<SeatView>,
    pub seq: i64,
    /// The first instant after the view was taken at which it would read differently with
    /// nothing committed in between (a shown hold runs out, the sales window opens or
    /// closes); `None`: only a committed change can alter it. See [`changes_by_itself_at`].
    pub changes_by_itself_at: Option<i64>,
}

/// The first instant after `now` at which a map of `seats` (every seat of the event: its
/// counts include them all) and `event` would read differently with nothing committed.
pub fn changes_by_itself_at(event: &EventView, seats: &[SeatView], now: i64) -> Option<i64> {
    let expiries = seats.iter().filter_map(|s| s.hold_expires_at_ms);
    let window = [event.sales_start_at_ms, event.sales_end_at_ms]
        .into_iter()
        .flatten();
    expiries.chain(window).filter(|at| *at > now).min()
}

#[derive(Clone, Debug)]
pub struct HoldView {
    pub id: String,
    pub event_id: i64,
    pub user_id: String,
    pub seats: Vec<SeatView>,
    pub areas: Vec<HoldAreaView>,
    pub status: HoldStatus,
    pub expires_at_ms: i64,
    pub total_cents: i64,
    pub created_at_ms: i64,
    pub extensions_left: i32,
}

#[derive(Clone, Debug)]
pub struct BookingView {
    pub id: String,
    pub event_id: i64,
    pub hold_id: String,
    pub user_id: String,
    pub seats: Vec<SeatView>,
    pub areas: Vec<HoldAreaView>,
    pub status: BookingStatus,
    pub total_cents: i64,
    pub payment_intent_id: Option<String>,
    pub created_at_ms: i64,
    /// One per seat, in seat order; only its owner and admins are ever shown a booking.
    pub tickets: Vec<TicketView>,
}

/// A ticket: one seat (or general-admission place) of a booking, with its door code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketView {
    pub id: i64,
    pub booking_id: String,
    pub event_id: i64,
    pub seat_id: Option<i64>,
    pub area_id: Option<i64>,
    pub code: String,
    pub checked_in_at_ms: Option<i64>,
}

impl TicketView {
    pub fn of(ticket: entity::ticket::Model) -> Self {
        Self {
            id: ticket.id,
            booking_id: ticket.booking_id,
            event_id: ticket.event_id,
            seat_id: ticket.seat_id,
            area_id: ticket.area_id,
            code: ticket.code,
            checked_in_at_ms: ticket.checked_in_at_ms,
        }
    }
}

/// A redeemed ticket and the booking it belongs to.
#[derive(Clone, Debug)]
pub struct CheckInView {
    pub ticket: TicketView,
    pub booking: BookingView,
}
