//! Stored rows for the unit tests of the pure rules.

use super::status::{HoldStatus, SeatStatus};
use entity::{hold, seat};

/// A free seat `id` of event 1, section "S", row "A", numbered and laid out by its id.
pub fn seat(id: i64) -> seat::Model {
    let n = i32::try_from(id).unwrap_or(i32::MAX);
    seat::Model {
        id,
        event_id: 1,
        section: "S".into(),
        row_label: "A".into(),
        number: n,
        price_cents: 100,
        position: n,
        status: SeatStatus::Available,
        hold_id: None,
        hold_expires_at_ms: None,
        booking_id: None,
        version: 0,
        category_id: None,
        accessible: false,
        blocked: false,
        blocked_reason: None,
    }
}

/// Seat `id` held by hold "h1" until `expires_at_ms`.
pub fn held_seat(id: i64, expires_at_ms: i64) -> seat::Model {
    seat::Model {
        status: SeatStatus::Held,
        hold_id: Some("h1".into()),
        hold_expires_at_ms: Some(expires_at_ms),
        ..seat(id)
    }
}

/// Hold "h1" of event 1 with `status`, running until `expires_at_ms`.
pub fn hold(status: HoldStatus, expires_at_ms: i64) -> hold::Model {
    hold::Model {
        id: "h1".into(),
        event_id: 1,
        user_id: "u".into(),
        status,
        expires_at_ms,
        total_cents: 0,
        created_at_ms: 0,
        updated_at_ms: 0,
        extensions_used: 0,
    }
}
