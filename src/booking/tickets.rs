//! Tickets: written in the transaction that books the seats, one per seat, each with a fresh
//! unguessable code. A cancelled or refunded booking keeps its tickets; its status is what
//! makes them invalid at the door.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::domain::area::HoldAreaView;
use crate::domain::ticket::TicketCode;
use crate::domain::views::TicketView;
use crate::error::AppError;
use entity::ticket;

/// Writes one ticket per seat of a new booking inside `txn`.
pub async fn issue_for_seats<C: ConnectionTrait>(
    txn: &C,
    booking_id: &str,
    event_id: i64,
    seat_ids: &[i64],
    now: i64,
) -> Result<(), AppError> {
    if seat_ids.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(seat_ids.len());
    for seat_id in seat_ids {
        let code = TicketCode::generate()
            .map_err(|e| AppError::Internal(format!("no randomness for a ticket code: {e}")))?;
        rows.push(ticket::ActiveModel {
            code: Set(code.as_str().to_owned()),
            booking_id: Set(booking_id.to_owned()),
            event_id: Set(event_id),
            seat_id: Set(Some(*seat_id)),
            area_id: Set(None),
            checked_in_at_ms: Set(None),
            created_at_ms: Set(now),
            ..Default::default()
        });
    }
    ticket::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Writes `quantity` tickets per general-admission line of a new booking inside `txn`.
pub async fn issue_for_places<C: ConnectionTrait>(
    txn: &C,
    booking_id: &str,
    event_id: i64,
    lines: &[HoldAreaView],
    now: i64,
) -> Result<(), AppError> {
    let mut rows = Vec::new();
    for line in lines {
        for _ in 0..line.quantity {
            let code = TicketCode::generate()
                .map_err(|e| AppError::Internal(format!("no randomness for a ticket code: {e}")))?;
            rows.push(ticket::ActiveModel {
                code: Set(code.as_str().to_owned()),
                booking_id: Set(booking_id.to_owned()),
                event_id: Set(event_id),
                seat_id: Set(None),
                area_id: Set(Some(line.area_id)),
                checked_in_at_ms: Set(None),
                created_at_ms: Set(now),
                ..Default::default()
            });
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    ticket::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// The tickets of each of `booking_ids`, seats first in seat order.
pub async fn of_bookings<C: ConnectionTrait>(
    conn: &C,
    booking_ids: impl IntoIterator<Item = String>,
) -> Result<HashMap<String, Vec<TicketView>>, AppError> {
    let ids: Vec<String> = booking_ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut per_booking: HashMap<String, Vec<TicketView>> = HashMap::new();
    for t in ticket::Entity::find()
        .filter(ticket::Column::BookingId.is_in(ids))
        .order_by_asc(ticket::Column::SeatId)
        .order_by_asc(ticket::Column::Id)
        .all(conn)
        .await?
    {
        per_booking
            .entry(t.booking_id.clone())
            .or_default()
            .push(TicketView::of(t));
    }
    Ok(per_booking)
}
