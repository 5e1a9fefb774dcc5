//! The GraphQL operations of onsale's public API, written once for the integration tests
//! (`tests/api`) and the load bench (`bench/`): the operation texts, typed builders of their
//! variables ([`vars`]), and typed readers of their answers.
//!
//! The texts name their variables with one letter: `$e` an event id, `$s` seat ids, `$h` a
//! hold id, `$b` a booking id, `$k` an idempotency key, `$a` an `afterSeq`, `$i` an input
//! object, `$id` any other id. Where the bench needs less of an answer than the tests read, the
//! smaller selection is kept apart as `*_LEAN`, so that the bench sends exactly what it always
//! has and its figures stay comparable.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

// ---- events and seat maps ----

/// Every event's id.
pub const EVENT_IDS: &str = "{ events { id } }";

/// `createEvent`; answers `{ id seatCount }`.
pub const CREATE_EVENT: &str =
    "mutation($input: CreateEventInput!) { createEvent(input: $input) { id seatCount } }";
/// `createEvent`, answering the event as it was stored.
pub const CREATE_EVENT_DETAILS: &str = "mutation($input: CreateEventInput!) { createEvent(input: $input) { id name venue startsAt seatCount available } }";
/// What a live seat-map client asks for.
pub const SEAT_MAP: &str = "query($e: ID!) { seatMap(eventId: $e) { seq event { id available held booked } seats { id section row number priceCents status holdExpiresAt } } }";
/// Every seat's id and status, in seat-map order.
pub const SEAT_STATUSES: &str = "query($e: ID!) { seatMap(eventId: $e) { seats { id status } } }";
/// Only the seat map's `seq`: where the event's change log is.
pub const SEAT_SEQ: &str = "query($e: ID!) { seatMap(eventId: $e) { seq } }";
/// `seatChanges` after `$a` (or from now when `$a` is null or not given).
pub const SEAT_CHANGES: &str = "subscription($e: ID!, $a: Int) { seatChanges(eventId: $e, afterSeq: $a) { eventId seatId status holdExpiresAt seq } }";

// ---- holds and bookings ----

/// `holdSeats`, optionally with an idempotency key, answering all a client may read back.
pub const HOLD_SEATS: &str = "mutation($e: ID!, $s: [ID!]!, $k: String) { holdSeats(eventId: $e, seatIds: $s, idempotencyKey: $k) { id eventId status expiresAt totalCents seats { id status holdExpiresAt } } }";
/// `holdSeats` answering only what the bench reads (a [`HoldInfo`]).
pub const HOLD_SEATS_LEAN: &str = "mutation($e: ID!, $s: [ID!]!) { holdSeats(eventId: $e, seatIds: $s) { id status seats { id } } }";
/// `holdBestAvailable` of `$c` seats, in section `$s` if given, optionally with a key.
pub const HOLD_BEST_AVAILABLE: &str = "mutation($e: ID!, $c: Int!, $s: String, $k: String) { holdBestAvailable(eventId: $e, count: $c, section: $s, idempotencyKey: $k) { id eventId status expiresAt totalCents seats { id row number status holdExpiresAt } } }";
/// `confirmHold`, optionally with an idempotency key.
pub const CONFIRM_HOLD: &str = "mutation($h: ID!, $k: String) { confirmHold(holdId: $h, idempotencyKey: $k) { id holdId eventId status totalCents paymentIntentId createdAt seats { id status } } }";
/// `confirmHold` answering only what the bench reads.
pub const CONFIRM_HOLD_LEAN: &str =
    "mutation($h: ID!) { confirmHold(holdId: $h) { id holdId status seats { id } } }";
/// `releaseHold` with the freed seats' statuses.
pub const RELEASE_HOLD: &str =
    "mutation($h: ID!) { releaseHold(holdId: $h) { id status seats { id status } } }";
/// `releaseHold` answering only what the bench reads.
pub const RELEASE_HOLD_LEAN: &str = "mutation($h: ID!) { releaseHold(holdId: $h) { id status } }";
/// `cancelBooking`; answers `{ id status }`.
pub const CANCEL_BOOKING: &str = "mutation($b: ID!) { cancelBooking(bookingId: $b) { id status } }";
/// One hold's status, by `$id` (its owner only).
pub const HOLD_STATUS: &str = "query($id: ID!) { hold(id: $id) { status } }";
/// The ids of all the caller's holds.
pub const MY_HOLD_IDS: &str = "{ myHolds { id } }";
/// The ids of all the caller's bookings.
pub const MY_BOOKING_IDS: &str = "{ myBookings { id } }";
/// The caller's ACTIVE holds, with their seats.
pub const MY_ACTIVE_HOLDS: &str =
    "query { myHolds(status: ACTIVE) { id eventId status seats { id } } }";
/// The caller's bookings, with their seats.
pub const MY_BOOKINGS: &str = "query { myBookings { id holdId eventId status seats { id } } }";

// ---- the waiting room and queued booking ----

/// `configureWaitingRoom` of `$e` with `$i` (a [`WaitingRoomInput`]), admin only.
pub const CONFIGURE_WAITING_ROOM: &str = "mutation($e: ID!, $i: WaitingRoomInput!) { configureWaitingRoom(eventId: $e, input: $i) { eventId enabled opensAt admitPerSecond admissionTtlSecs } }";
/// The room's settings and live counters, admin only.
pub const WAITING_ROOM: &str =
    "query($e: ID!) { waitingRoom(eventId: $e) { enabled open joined admitted } }";
/// `joinQueue`, answering every field of the ticket.
pub const JOIN_QUEUE: &str = "mutation($e: ID!) { joinQueue(eventId: $e) { id eventId position admitted admissionToken queueNumber waitingForOpening opensAt estimatedWaitSecs admissionExpiresAt } }";
/// `joinQueue` answering only what the bench reads.
pub const JOIN_QUEUE_LEAN: &str = "mutation($e: ID!) { joinQueue(eventId: $e) { id position admitted admissionToken waitingForOpening estimatedWaitSecs admissionExpiresAt } }";
/// `queueStatus` of ticket `$t`: the live place in the queue.
pub const QUEUE_STATUS: &str = "subscription($t: ID!) { queueStatus(ticketId: $t) { ticketId position estimatedWaitSecs admitted admissionToken waitingForOpening admissionExpiresAt } }";
/// `requestSeats`: a queued `holdSeats`, optionally with an idempotency key.
pub const REQUEST_SEATS: &str = "mutation($e: ID!, $s: [ID!]!, $k: String) { requestSeats(eventId: $e, seatIds: $s, idempotencyKey: $k) { id status queueNumber } }";
/// One queued request and its outcome, by `$id`.
pub const SEAT_REQUEST: &str = "query($id: ID!) { seatRequest(id: $id) { id status queueNumber errorCode errorMessage hold { id status seats { id } } } }";
/// The `seatRequest` subscription: a queued request's updates, by `$id`.
pub const SEAT_REQUEST_UPDATES: &str = "subscription($id: ID!) { seatRequest(id: $id) { id status errorCode answeredAt hold { id status seats { id } } } }";

/// Builders of the operations' variables, named as the texts above name them.
pub mod vars {
    use serde::Serialize;
    use serde_json::{Value, json};

    use super::{EventInput, WaitingRoomInput};

    /// `{}`: an operation without variables.
    pub fn none() -> Value {
        json!({})
    }

    /// `{e}`: an event.
    pub fn event(event_id: &str) -> Value {
        json!({"e": event_id})
    }

    /// `{e, s}`: seats of an event.
    pub fn seats<S: Serialize>(event_id: &str, seat_ids: &[S]) -> Value {
        json!({"e": event_id, "s": seat_ids})
    }

    /// `{e, s, k}`: seats of an event, with an idempotency key.
    pub fn seats_keyed<S: Serialize>(event_id: &str, seat_ids: &[S], key: &str) -> Value {
        json!({"e": event_id, "s": seat_ids, "k": key})
    }

    /// `{e, c, s}`: the best `count` seats of an event, in `section` if given.
    pub fn best_available(event_id: &str, count: i64, section: Option<&str>) -> Value {
        json!({"e": event_id, "c": count, "s": section})
    }

    /// `{e, c, k}`: the best `count` seats of an event, with an idempotency key.
    pub fn best_available_keyed(event_id: &str, count: i64, key: &str) -> Value {
        json!({"e": event_id, "c": count, "k": key})
    }

    /// `{h}`: a hold.
    pub fn hold(hold_id: &str) -> Value {
        json!({"h": hold_id})
    }

    /// `{h, k}`: a hold, with an idempotency key.
    pub fn hold_keyed(hold_id: &str, key: &str) -> Value {
        json!({"h": hold_id, "k": key})
    }

    /// `{b}`: a booking.
    pub fn booking(booking_id: &str) -> Value {
        json!({"b": booking_id})
    }

    /// `{id}`: anything else looked up by id (a hold, a seat request).
    pub fn id(id: &str) -> Value {
        json!({"id": id})
    }

    /// `{e, a}`: an event's changes after `after_seq` (from now if `None`).
    pub fn seat_changes(event_id: &str, after_seq: Option<i64>) -> Value {
        json!({"e": event_id, "a": after_seq})
    }

    /// `{input}` of `createEvent`.
    pub fn create_event(input: &EventInput) -> Value {
        json!({"input": input})
    }

    /// `{e, i}` of `configureWaitingRoom`.
    pub fn configure_waiting_room(event_id: &str, input: &WaitingRoomInput) -> Value {
        json!({"e": event_id, "i": input})
    }
}

// ---- inputs ----

/// `CreateEventInput`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventInput {
    pub name: String,
    pub venue: String,
    /// RFC 3339.
    pub starts_at: String,
    pub sections: Vec<SectionInput>,
}

/// `SectionInput`.
#[derive(Clone, Debug, Serialize)]
pub struct SectionInput {
    pub name: String,
    pub rows: Vec<RowInput>,
}

/// `RowInput`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowInput {
    pub label: String,
    pub seats: usize,
    pub price_cents: i64,
}

impl EventInput {
    /// An event of one section whose rows are labelled `R1`, `R2`, …, each with its seat
    /// count and price.
    pub fn rows(
        name: &str,
        venue: &str,
        starts_at: &str,
        section: &str,
        rows: impl IntoIterator<Item = (usize, i64)>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            venue: venue.to_owned(),
            starts_at: starts_at.to_owned(),
            sections: vec![SectionInput {
                name: section.to_owned(),
                rows: rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, (seats, price_cents))| RowInput {
                        label: format!("R{}", i + 1),
                        seats,
                        price_cents,
                    })
                    .collect(),
            }],
        }
    }
}

/// `WaitingRoomInput`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitingRoomInput {
    pub enabled: bool,
    /// RFC 3339; `None` opens the room at once.
    pub opens_at: Option<String>,
    pub admit_per_second: i64,
    pub admission_ttl_secs: i64,
}

// ---- answers ----

/// A hold as the API describes it: `{ id seats { id } }` (other fields are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct HoldInfo {
    pub id: String,
    #[serde(deserialize_with = "seat_ids")]
    pub seats: Vec<String>,
}

impl HoldInfo {
    /// Reads `{ id seats { id } }`.
    pub fn from_json(value: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value)
    }
}

/// A booking as the API describes it: `{ id holdId status seats { id } }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingInfo {
    pub id: String,
    pub hold_id: String,
    pub status: String,
    #[serde(deserialize_with = "seat_ids")]
    pub seats: Vec<String>,
}

impl BookingInfo {
    /// Reads `{ id holdId status seats { id } }`.
    pub fn from_json(value: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value)
    }
}

/// Every seat's status on a seat map.
#[derive(Clone, Debug)]
pub struct SeatStatuses {
    /// Status by seat id.
    pub status: HashMap<String, String>,
    /// Seat ids in seat-map order.
    pub order: Vec<String>,
}

impl SeatStatuses {
    /// Reads a `seatMap { seats { id status } }`.
    pub fn from_json(seat_map: &Value) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Seat {
            id: String,
            status: String,
        }
        #[derive(Deserialize)]
        struct Map {
            seats: Vec<Seat>,
        }
        let map = Map::deserialize(seat_map)?;
        let order = map.seats.iter().map(|s| s.id.clone()).collect();
        let status = map.seats.into_iter().map(|s| (s.id, s.status)).collect();
        Ok(Self { status, order })
    }

    /// Seats with the given status, in seat-map order.
    pub fn with_status<'a>(&'a self, status: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.order
            .iter()
            .filter(move |id| self.status.get(*id).map(String::as_str) == Some(status))
    }
}

/// The ids of `[{ id }]`.
fn seat_ids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    struct Seat {
        id: String,
    }
    Ok(Vec::<Seat>::deserialize(deserializer)?
        .into_iter()
        .map(|s| s.id)
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_holds_bookings_and_seat_maps() {
        let hold = HoldInfo::from_json(
            &json!({"id": "h1", "status": "ACTIVE", "seats": [{"id": "1"}, {"id": "2"}]}),
        )
        .expect("a hold");
        assert_eq!(
            (hold.id.as_str(), hold.seats),
            ("h1", vec!["1".to_owned(), "2".to_owned()])
        );
        assert!(HoldInfo::from_json(&Value::Null).is_err());
        assert!(HoldInfo::from_json(&json!({"id": "h1"})).is_err());
        let booking = BookingInfo::from_json(
            &json!({"id": "b1", "holdId": "h1", "status": "CONFIRMED", "seats": [{"id": "3"}]}),
        )
        .expect("a booking");
        assert_eq!(booking.hold_id, "h1");
        assert_eq!(booking.seats, vec!["3".to_owned()]);
        let map = SeatStatuses::from_json(&json!({"seats": [
            {"id": "2", "status": "HELD"}, {"id": "1", "status": "AVAILABLE"}, {"id": "3", "status": "HELD"}
        ]}))
        .expect("a seat map");
        assert_eq!(map.order, ["2", "1", "3"]);
        assert_eq!(map.with_status("HELD").collect::<Vec<_>>(), ["2", "3"]);
        assert_eq!(map.status["1"], "AVAILABLE");
    }

    #[test]
    fn builds_variables_as_the_texts_name_them() {
        assert_eq!(
            vars::seats("7", &["1", "2"]),
            json!({"e": "7", "s": ["1", "2"]})
        );
        assert_eq!(vars::seat_changes("7", None), json!({"e": "7", "a": null}));
        let input = EventInput::rows(
            "N",
            "V",
            "2030-01-01T20:00:00Z",
            "Main",
            [(2, 1000), (3, 1100)],
        );
        assert_eq!(
            vars::create_event(&input),
            json!({"input": {"name": "N", "venue": "V", "startsAt": "2030-01-01T20:00:00Z",
                "sections": [{"name": "Main", "rows": [
                    {"label": "R1", "seats": 2, "priceCents": 1000},
                    {"label": "R2", "seats": 3, "priceCents": 1100}]}]}})
        );
        let room = WaitingRoomInput {
            enabled: true,
            opens_at: None,
            admit_per_second: 5,
            admission_ttl_secs: 60,
        };
        assert_eq!(
            vars::configure_waiting_room("7", &room),
            json!({"e": "7", "i": {"enabled": true, "opensAt": null, "admitPerSecond": 5, "admissionTtlSecs": 60}})
        );
    }
}
