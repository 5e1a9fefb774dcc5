//! Where a ticket stands, computed from the room's Redis state: a pure function, so the
//! rules (positions, admission windows, estimates) are in one place and unit-tested.

use super::config::RoomConfig;
use super::store::TicketState;

/// A ticket's standing at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    /// 1 + the number of people ahead still waiting; before the opening, the provisional
    /// arrival number in the lobby; 0 once admitted.
    pub position: i64,
    /// The place in line, fixed once the lottery is drawn (or on arrival after the opening).
    pub queue_number: Option<i64>,
    pub admitted: bool,
    /// End of the admission window (admitted tickets only).
    pub admission_until_ms: Option<i64>,
    /// Admitted, but the window has passed: the turn is lost.
    pub lapsed: bool,
    /// The lottery is not drawn yet: `position` is provisional.
    pub waiting_for_opening: bool,
    pub estimated_wait_secs: Option<i64>,
}

pub fn standing(state: &TicketState, room: &RoomConfig) -> Standing {
    let rate = i64::from(room.admit_per_sec.max(1));
    if state.queue_number == 0 {
        let arrival = state.tk.get(1..).and_then(|n| n.parse().ok()).unwrap_or(1);
        let until_opening = (room.opens_at_ms - state.now_ms).max(0);
        // Everyone in the lobby is equally likely to draw any place: on average, the middle.
        let average_place = (state.lobby_joined.max(arrival) + 1) / 2;
        return Standing {
            position: arrival,
            queue_number: None,
            admitted: false,
            admission_until_ms: None,
            lapsed: false,
            waiting_for_opening: true,
            estimated_wait_secs: Some(
                ceil_div(until_opening, 1000) + ceil_div(average_place, rate),
            ),
        };
    }
    let q = state.queue_number;
    if q > state.admitted_upto {
        let position = q - state.admitted_upto;
        return Standing {
            position,
            queue_number: Some(q),
            admitted: false,
            admission_until_ms: None,
            lapsed: false,
            waiting_for_opening: false,
            estimated_wait_secs: Some(ceil_div(position, rate)),
        };
    }
    let until = state.admitted_at_ms + room.admission_ttl_ms();
    Standing {
        position: 0,
        queue_number: Some(q),
        admitted: true,
        admission_until_ms: Some(until),
        lapsed: state.now_ms >= until,
        waiting_for_opening: false,
        estimated_wait_secs: Some(0),
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if b <= 0 { 0 } else { (a + b - 1).div_euclid(b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomConfig {
        RoomConfig {
            event_id: 1,
            queue_key: "k".into(),
            enabled: true,
            opens_at_ms: 10_000,
            admit_per_sec: 10,
            admission_ttl_secs: 60,
        }
    }

    fn state(tk: &str, q: i64, upto: i64, at: i64, now: i64) -> TicketState {
        TicketState {
            tk: tk.into(),
            queue_number: q,
            admitted_upto: upto,
            admitted_at_ms: at,
            lobby_joined: 100,
            opened: q > 0,
            now_ms: now,
            tail: 100,
            epoch: 1,
        }
    }

    #[test]
    fn lobby_positions_are_provisional() {
        let s = standing(&state("L7", 0, 0, 0, 4_000), &room());
        assert_eq!(
            (s.position, s.waiting_for_opening, s.admitted),
            (7, true, false)
        );
        // 6 s to the opening, then on average place 50 at 10 per second.
        assert_eq!(s.estimated_wait_secs, Some(6 + 5));
    }

    #[test]
    fn positions_count_who_is_still_ahead() {
        let s = standing(&state("L7", 42, 30, 0, 20_000), &room());
        assert_eq!(
            (s.position, s.queue_number, s.admitted),
            (12, Some(42), false)
        );
        assert_eq!(s.estimated_wait_secs, Some(2));
    }

    #[test]
    fn admissions_run_out() {
        let s = standing(&state("Q5", 5, 9, 20_000, 79_999), &room());
        assert!(s.admitted && !s.lapsed);
        assert_eq!(s.admission_until_ms, Some(80_000));
        let s = standing(&state("Q5", 5, 9, 20_000, 80_000), &room());
        assert!(s.admitted && s.lapsed);
    }
}
