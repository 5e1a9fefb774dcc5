//! Statuses. They are stored as strings through the enums of `entity::status`; here are the
//! rules that read them at a moment: a hold that has run out no longer counts, even before
//! the sweeper records it.

pub use entity::status::{BookingStatus, CheckoutState, EventStatus, HoldStatus, SeatStatus};

/// What a seat stored as `stored` (held until `hold_expires_at_ms`) shows at `now`.
pub fn live_seat_status(
    stored: SeatStatus,
    hold_expires_at_ms: Option<i64>,
    now: i64,
) -> SeatStatus {
    match stored {
        SeatStatus::Held if hold_expires_at_ms.is_some_and(|t| t > now) => SeatStatus::Held,
        SeatStatus::Held => SeatStatus::Available,
        other => other,
    }
}

/// What a stored seat shows at `now`: BLOCKED while the organizer has it off sale.
pub fn seat_status_at(seat: &entity::seat::Model, now: i64) -> SeatStatus {
    live_seat_status(stored_seat_status(seat), seat.hold_expires_at_ms, now)
}

/// The stored claim status, with the `blocked` flag read as BLOCKED.
pub fn stored_seat_status(seat: &entity::seat::Model) -> SeatStatus {
    if seat.blocked {
        SeatStatus::Blocked
    } else {
        seat.status
    }
}

/// A seat status as one character of the seat map's compact form (`SeatMap.states`):
/// `A` available, `H` held, `B` booked, `X` blocked.
pub fn seat_status_char(status: SeatStatus) -> char {
    match status {
        SeatStatus::Available => 'A',
        SeatStatus::Held => 'H',
        SeatStatus::Booked => 'B',
        SeatStatus::Blocked => 'X',
    }
}

/// What a stored hold shows at `now`: an active hold past its expiry is expired.
pub fn hold_status_at(hold: &entity::hold::Model, now: i64) -> HoldStatus {
    match hold.status {
        HoldStatus::Active if hold.expires_at_ms <= now => HoldStatus::Expired,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::hold;

    #[test]
    fn a_hold_counts_until_its_expiry_and_not_at_it() {
        assert_eq!(
            live_seat_status(SeatStatus::Held, Some(10), 9),
            SeatStatus::Held
        );
        assert_eq!(
            live_seat_status(SeatStatus::Held, Some(10), 10),
            SeatStatus::Available
        );
        assert_eq!(
            live_seat_status(SeatStatus::Held, None, 0),
            SeatStatus::Available
        );
        assert_eq!(
            live_seat_status(SeatStatus::Booked, None, 99),
            SeatStatus::Booked
        );
        assert_eq!(
            live_seat_status(SeatStatus::Available, Some(99), 0),
            SeatStatus::Available
        );
    }

    #[test]
    fn a_blocked_seat_shows_blocked() {
        let blocked = entity::seat::Model {
            blocked: true,
            ..crate::domain::fixtures::seat(1)
        };
        assert_eq!(seat_status_at(&blocked, 0), SeatStatus::Blocked);
        assert_eq!(
            seat_status_at(&crate::domain::fixtures::seat(1), 0),
            SeatStatus::Available
        );
    }

    #[test]
    fn an_active_hold_expires_by_the_clock_others_keep_their_status() {
        assert_eq!(
            hold_status_at(&hold(HoldStatus::Active, 10), 9),
            HoldStatus::Active
        );
        assert_eq!(
            hold_status_at(&hold(HoldStatus::Active, 10), 10),
            HoldStatus::Expired
        );
        assert_eq!(
            hold_status_at(&hold(HoldStatus::Confirmed, 10), 99),
            HoldStatus::Confirmed
        );
        assert_eq!(
            hold_status_at(&hold(HoldStatus::Released, 10), 99),
            HoldStatus::Released
        );
    }
}
