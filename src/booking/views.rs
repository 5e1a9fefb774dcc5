//! Loading the views the service returns (holds and bookings with their seats).

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::booking::model::{BookingStatus, BookingView, HoldStatus, HoldView, SeatView, now_ms};
use crate::error::AppError;
use entity::{booking, booking_seat, hold, hold_seat, seat};

async fn seats_by_id<C: ConnectionTrait>(
    conn: &C,
    ids: Vec<i64>,
) -> Result<HashMap<i64, seat::Model>, AppError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(seat::Entity::find()
        .filter(seat::Column::Id.is_in(ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect())
}

/// Views of `holds`, with their seats, in the given order.
pub async fn holds<C: ConnectionTrait>(
    conn: &C,
    holds: Vec<hold::Model>,
) -> Result<Vec<HoldView>, AppError> {
    let ids: Vec<String> = holds.iter().map(|h| h.id.clone()).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let links = hold_seat::Entity::find()
        .filter(hold_seat::Column::HoldId.is_in(ids))
        .order_by_asc(hold_seat::Column::SeatId)
        .all(conn)
        .await?;
    let seats = seats_by_id(conn, links.iter().map(|l| l.seat_id).collect()).await?;
    let now = now_ms();
    let mut per_hold: HashMap<&str, Vec<SeatView>> = HashMap::new();
    for link in &links {
        if let Some(s) = seats.get(&link.seat_id) {
            per_hold
                .entry(link.hold_id.as_str())
                .or_default()
                .push(SeatView::of(s, now));
        }
    }
    Ok(holds
        .iter()
        .map(|h| HoldView {
            id: h.id.clone(),
            event_id: h.event_id,
            user_id: h.user_id.clone(),
            seats: per_hold.remove(h.id.as_str()).unwrap_or_default(),
            status: HoldStatus::of(h, now),
            expires_at_ms: h.expires_at_ms,
            total_cents: h.total_cents,
        })
        .collect())
}

pub async fn hold<C: ConnectionTrait>(conn: &C, id: &str) -> Result<HoldView, AppError> {
    let model = hold::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("hold {id} does not exist")))?;
    holds(conn, vec![model])
        .await?
        .pop()
        .ok_or_else(|| AppError::Internal("hold view vanished".into()))
}

/// Views of `bookings`, with their seats, in the given order.
pub async fn bookings<C: ConnectionTrait>(
    conn: &C,
    bookings: Vec<booking::Model>,
) -> Result<Vec<BookingView>, AppError> {
    let ids: Vec<String> = bookings.iter().map(|b| b.id.clone()).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let links = booking_seat::Entity::find()
        .filter(booking_seat::Column::BookingId.is_in(ids))
        .order_by_asc(booking_seat::Column::SeatId)
        .all(conn)
        .await?;
    let seats = seats_by_id(conn, links.iter().map(|l| l.seat_id).collect()).await?;
    let now = now_ms();
    let mut per_booking: HashMap<&str, Vec<SeatView>> = HashMap::new();
    for link in &links {
        if let Some(s) = seats.get(&link.seat_id) {
            per_booking
                .entry(link.booking_id.as_str())
                .or_default()
                .push(SeatView::of(s, now));
        }
    }
    Ok(bookings
        .iter()
        .map(|b| BookingView {
            id: b.id.clone(),
            event_id: b.event_id,
            hold_id: b.hold_id.clone(),
            user_id: b.user_id.clone(),
            seats: per_booking.remove(b.id.as_str()).unwrap_or_default(),
            status: BookingStatus::parse(&b.status),
            total_cents: b.total_cents,
            payment_intent_id: b.payment_intent_id.clone(),
            created_at_ms: b.created_at_ms,
        })
        .collect())
}

pub async fn booking<C: ConnectionTrait>(conn: &C, id: &str) -> Result<BookingView, AppError> {
    let model = booking::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("booking {id} does not exist")))?;
    bookings(conn, vec![model])
        .await?
        .pop()
        .ok_or_else(|| AppError::Internal("booking view vanished".into()))
}
