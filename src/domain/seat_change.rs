//! Seat changes: what the change log records and the bus carries.

use super::status::SeatStatus;

/// One committed change of one seat, with its place (`seq`) in the event's change log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeatChange {
    pub event_id: i64,
    pub seat_id: i64,
    pub status: SeatStatus,
    pub hold_expires_at_ms: Option<i64>,
    pub seq: i64,
}

/// A change about to be logged; the change log gives it its `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingChange {
    pub seat_id: i64,
    pub status: SeatStatus,
    pub hold_expires_at_ms: Option<i64>,
}

impl PendingChange {
    /// The seat is free again.
    pub fn available(seat_id: i64) -> Self {
        Self {
            seat_id,
            status: SeatStatus::Available,
            hold_expires_at_ms: None,
        }
    }

    /// The seat is held until `expires_at_ms`.
    pub fn held(seat_id: i64, expires_at_ms: i64) -> Self {
        Self {
            seat_id,
            status: SeatStatus::Held,
            hold_expires_at_ms: Some(expires_at_ms),
        }
    }

    /// The organizer took the seat off sale.
    pub fn blocked(seat_id: i64) -> Self {
        Self {
            seat_id,
            status: SeatStatus::Blocked,
            hold_expires_at_ms: None,
        }
    }

    /// The seat is booked.
    pub fn booked(seat_id: i64) -> Self {
        Self {
            seat_id,
            status: SeatStatus::Booked,
            hold_expires_at_ms: None,
        }
    }
}
