//! Loading the views the services return: holds and bookings with their seats, and the
//! ownership check in front of every act on one.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::areas::{lines_of_bookings, lines_of_holds};
use crate::auth::User;
use crate::domain::clock::now_ms;
use crate::domain::sale::Extension;
use crate::domain::status::hold_status_at;
use crate::domain::views::{BookingView, HoldView, SeatView};
use crate::error::AppError;
use entity::{booking, booking_seat, event, hold, hold_seat, seat};

/// The seats of each owner (a hold or a booking) from `(owner id, seat id)` links, as they
/// show at `now`, in link order.
async fn seats_by_owner<C: ConnectionTrait>(
    conn: &C,
    links: Vec<(String, i64)>,
    now: i64,
) -> Result<HashMap<String, Vec<SeatView>>, AppError> {
    if links.is_empty() {
        return Ok(HashMap::new());
    }
    let seats: HashMap<i64, seat::Model> = seat::Entity::find()
        .filter(seat::Column::Id.is_in(links.iter().map(|(_, id)| *id)))
        .all(conn)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let mut per_owner: HashMap<String, Vec<SeatView>> = HashMap::new();
    for (owner, seat_id) in links {
        if let Some(s) = seats.get(&seat_id) {
            per_owner
                .entry(owner)
                .or_default()
                .push(SeatView::of(s, now));
        }
    }
    Ok(per_owner)
}

/// Views of `holds`, with their seats, in the given order.
pub async fn holds<C: ConnectionTrait>(
    conn: &C,
    holds: Vec<hold::Model>,
) -> Result<Vec<HoldView>, AppError> {
    if holds.is_empty() {
        return Ok(Vec::new());
    }
    let links = hold_seat::Entity::find()
        .filter(hold_seat::Column::HoldId.is_in(holds.iter().map(|h| h.id.clone())))
        .order_by_asc(hold_seat::Column::SeatId)
        .all(conn)
        .await?
        .into_iter()
        .map(|l| (l.hold_id, l.seat_id))
        .collect();
    let now = now_ms();
    let mut seats = seats_by_owner(conn, links, now).await?;
    let mut areas = lines_of_holds(conn, holds.iter().map(|h| h.id.clone()).collect()).await?;
    let allowed: HashMap<i64, i32> = event::Entity::find()
        .select_only()
        .column(event::Column::Id)
        .column(event::Column::MaxHoldExtensions)
        .filter(event::Column::Id.is_in(holds.iter().map(|h| h.event_id)))
        .into_tuple::<(i64, i32)>()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    Ok(holds
        .into_iter()
        .map(|h| HoldView {
            seats: seats.remove(&h.id).unwrap_or_default(),
            areas: areas.remove(&h.id).unwrap_or_default(),
            status: hold_status_at(&h, now),
            extensions_left: Extension {
                expires_at_ms: h.expires_at_ms,
                created_at_ms: h.created_at_ms,
                used: h.extensions_used,
                allowed: allowed.get(&h.event_id).copied().unwrap_or(0),
            }
            .left(),
            id: h.id,
            event_id: h.event_id,
            user_id: h.user_id,
            expires_at_ms: h.expires_at_ms,
            total_cents: h.total_cents,
            created_at_ms: h.created_at_ms,
        })
        .collect())
}

/// Views of `bookings`, with their seats, in the given order.
pub async fn bookings<C: ConnectionTrait>(
    conn: &C,
    bookings: Vec<booking::Model>,
) -> Result<Vec<BookingView>, AppError> {
    if bookings.is_empty() {
        return Ok(Vec::new());
    }
    let links = booking_seat::Entity::find()
        .filter(booking_seat::Column::BookingId.is_in(bookings.iter().map(|b| b.id.clone())))
        .order_by_asc(booking_seat::Column::SeatId)
        .all(conn)
        .await?
        .into_iter()
        .map(|l| (l.booking_id, l.seat_id))
        .collect();
    let mut seats = seats_by_owner(conn, links, now_ms()).await?;
    let mut tickets =
        super::tickets::of_bookings(conn, bookings.iter().map(|b| b.id.clone())).await?;
    let mut areas =
        lines_of_bookings(conn, bookings.iter().map(|b| b.id.clone()).collect()).await?;
    Ok(bookings
        .into_iter()
        .map(|b| BookingView {
            seats: seats.remove(&b.id).unwrap_or_default(),
            tickets: tickets.remove(&b.id).unwrap_or_default(),
            areas: areas.remove(&b.id).unwrap_or_default(),
            id: b.id,
            event_id: b.event_id,
            hold_id: b.hold_id,
            user_id: b.user_id,
            status: b.status,
            total_cents: b.total_cents,
            payment_intent_id: b.payment_intent_id,
            created_at_ms: b.created_at_ms,
        })
        .collect())
}

/// `found`, or `NOT_FOUND` naming `what` and `id`.
pub fn existing<M>(found: Option<M>, what: &str, id: &str) -> Result<M, AppError> {
    found.ok_or_else(|| AppError::NotFound(format!("{what} {id} does not exist")))
}

/// The one view `many` makes of `model`.
fn single<V>(mut views: Vec<V>, what: &str) -> Result<V, AppError> {
    views
        .pop()
        .ok_or_else(|| AppError::Internal(format!("the {what} view vanished")))
}

pub async fn hold<C: ConnectionTrait>(conn: &C, id: &str) -> Result<HoldView, AppError> {
    let model = existing(
        hold::Entity::find_by_id(id.to_owned()).one(conn).await?,
        "hold",
        id,
    )?;
    single(holds(conn, vec![model]).await?, "hold")
}

pub async fn booking<C: ConnectionTrait>(conn: &C, id: &str) -> Result<BookingView, AppError> {
    let model = existing(
        booking::Entity::find_by_id(id.to_owned()).one(conn).await?,
        "booking",
        id,
    )?;
    single(bookings(conn, vec![model]).await?, "booking")
}

/// `FORBIDDEN` unless `user` owns what belongs to `owner` (or is an admin).
pub fn ensure_owner(user: &User, owner: &str, what: &str) -> Result<(), AppError> {
    if owner == user.id || user.admin {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "this {what} belongs to someone else"
        )))
    }
}

/// The stored hold if `user` may act on it.
pub async fn owned_hold<C: ConnectionTrait>(
    conn: &C,
    user: &User,
    hold_id: &str,
) -> Result<hold::Model, AppError> {
    let stored = existing(
        hold::Entity::find_by_id(hold_id.to_owned())
            .one(conn)
            .await?,
        "hold",
        hold_id,
    )?;
    ensure_owner(user, &stored.user_id, "hold")?;
    Ok(stored)
}

/// The stored booking if `user` may act on it.
pub async fn owned_booking<C: ConnectionTrait>(
    conn: &C,
    user: &User,
    booking_id: &str,
) -> Result<booking::Model, AppError> {
    let stored = existing(
        booking::Entity::find_by_id(booking_id.to_owned())
            .one(conn)
            .await?,
        "booking",
        booking_id,
    )?;
    ensure_owner(user, &stored.user_id, "booking")?;
    Ok(stored)
}
