//! Pure rules of holding: which stored seats a hold may take, and whether a hold can still
//! be acted on. The transactions in `holds.rs` and `bookings.rs` apply them to locked rows.

use std::collections::HashMap;

use sea_orm::ColumnTrait;
use sea_orm::sea_query::Condition;

use crate::domain::status::{HoldStatus, SeatStatus, hold_status_at, seat_status_at};
use crate::error::AppError;
use entity::{hold, seat};

/// Seats a new hold may take at `now`, as a query condition: not blocked, and free or held
/// by a hold that has run out.
pub(crate) fn claimable(now: i64) -> Condition {
    Condition::all().add(seat::Column::Blocked.eq(false)).add(
        Condition::any()
            .add(seat::Column::Status.eq(SeatStatus::Available))
            .add(
                Condition::all()
                    .add(seat::Column::Status.eq(SeatStatus::Held))
                    .add(seat::Column::HoldExpiresAtMs.lte(now)),
            ),
    )
}

/// All requested seats exist, belong to the event and are claimable at `now`.
pub(crate) fn check_requested(
    seats: &[seat::Model],
    ids: &[i64],
    event_id: i64,
    now: i64,
) -> Result<(), AppError> {
    let by_id: HashMap<i64, &seat::Model> = seats.iter().map(|s| (s.id, s)).collect();
    if let Some(missing) = ids.iter().find(|id| !by_id.contains_key(id)) {
        return Err(AppError::NotFound(format!("seat {missing} does not exist")));
    }
    if let Some(other) = seats.iter().find(|s| s.event_id != event_id) {
        return Err(AppError::BadInput(format!(
            "seat {} belongs to another event",
            other.id
        )));
    }
    let taken: Vec<i64> = seats
        .iter()
        .filter(|s| seat_status_at(s, now) != SeatStatus::Available)
        .map(|s| s.id)
        .collect();
    if taken.is_empty() {
        Ok(())
    } else {
        Err(AppError::seat_unavailable(taken))
    }
}

/// The hold can still be acted on at `now`.
pub fn ensure_active(hold: &hold::Model, now: i64) -> Result<(), AppError> {
    match hold_status_at(hold, now) {
        HoldStatus::Active => Ok(()),
        HoldStatus::Expired => Err(AppError::HoldExpired),
        HoldStatus::Confirmed => Err(AppError::HoldNotActive("already confirmed")),
        HoldStatus::Released => Err(AppError::HoldNotActive("already released")),
    }
}

/// Whether every locked seat is still held by `hold_id` (else it was reclaimed after the
/// hold ran out).
pub(crate) fn still_held_by(locked: &[seat::Model], hold_id: &str) -> bool {
    !locked.is_empty()
        && locked
            .iter()
            .all(|s| s.status == SeatStatus::Held && s.hold_id.as_deref() == Some(hold_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{held_seat, hold, seat};

    #[test]
    fn free_and_run_out_seats_can_be_taken() {
        let seats = [seat(1), held_seat(2, 50)];
        assert!(check_requested(&seats, &[1, 2], 1, 50).is_ok());
    }

    #[test]
    fn taken_seats_are_listed() {
        let booked = seat::Model {
            status: SeatStatus::Booked,
            ..seat(1)
        };
        let seats = [booked, held_seat(2, 51), seat(3)];
        match check_requested(&seats, &[1, 2, 3], 1, 50) {
            Err(AppError::SeatUnavailable { seat_ids, .. }) => assert_eq!(seat_ids, vec![1, 2]),
            other => panic!("expected SEAT_UNAVAILABLE, got {other:?}"),
        }
    }

    #[test]
    fn blocked_seats_are_taken() {
        let blocked = seat::Model {
            blocked: true,
            ..seat(1)
        };
        match check_requested(&[blocked, seat(2)], &[1, 2], 1, 0) {
            Err(AppError::SeatUnavailable { seat_ids, .. }) => assert_eq!(seat_ids, vec![1]),
            other => panic!("expected SEAT_UNAVAILABLE, got {other:?}"),
        }
    }

    #[test]
    fn unknown_seats_and_other_events_seats_are_refused() {
        let seats = [seat(1)];
        assert!(matches!(
            check_requested(&seats, &[1, 9], 1, 0),
            Err(AppError::NotFound(_))
        ));
        assert!(matches!(
            check_requested(&seats, &[1], 8, 0),
            Err(AppError::BadInput(_))
        ));
    }

    #[test]
    fn only_an_unexpired_active_hold_can_be_acted_on() {
        assert!(ensure_active(&hold(HoldStatus::Active, 10), 9).is_ok());
        assert!(matches!(
            ensure_active(&hold(HoldStatus::Active, 10), 10),
            Err(AppError::HoldExpired)
        ));
        for done in [HoldStatus::Confirmed, HoldStatus::Released] {
            assert!(matches!(
                ensure_active(&hold(done, 10), 0),
                Err(AppError::HoldNotActive(_))
            ));
        }
    }

    #[test]
    fn reclaimed_seats_are_not_the_holds_any_more() {
        let mine = [held_seat(1, 9), held_seat(2, 9)];
        assert!(still_held_by(&mine, "h1"));
        assert!(!still_held_by(&mine, "h2"));
        assert!(!still_held_by(&[], "h1"));
        assert!(!still_held_by(&[held_seat(1, 9), seat(2)], "h1"));
    }
}
