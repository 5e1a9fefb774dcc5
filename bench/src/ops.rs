//! The GraphQL operations the bench sends, and typed readers of their answers for setup and
//! verification.

use std::collections::HashMap;

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

use crate::client::Api;

pub const CREATE_EVENT: &str =
    "mutation($input: CreateEventInput!) { createEvent(input: $input) { id seatCount } }";
pub const HOLD_SEATS: &str = "mutation($e: ID!, $s: [ID!]!) { holdSeats(eventId: $e, seatIds: $s) { id status seats { id } } }";
pub const CONFIRM_HOLD: &str =
    "mutation($h: ID!) { confirmHold(holdId: $h) { id holdId status seats { id } } }";
pub const RELEASE_HOLD: &str = "mutation($h: ID!) { releaseHold(holdId: $h) { id status } }";
/// What a live seat-map client asks for.
pub const SEAT_MAP: &str = "query($e: ID!) { seatMap(eventId: $e) { seq event { id available held booked } seats { id section row number priceCents status holdExpiresAt } } }";
const SEAT_STATUSES: &str = "query($e: ID!) { seatMap(eventId: $e) { seats { id status } } }";
const MY_ACTIVE_HOLDS: &str =
    "query { myHolds(status: ACTIVE) { id eventId status seats { id } } }";
const MY_BOOKINGS: &str = "query { myBookings { id holdId eventId status seats { id } } }";
pub const CONFIGURE_WAITING_ROOM: &str = "mutation($e: ID!, $i: WaitingRoomInput!) { configureWaitingRoom(eventId: $e, input: $i) { eventId enabled opensAt admitPerSecond admissionTtlSecs } }";
pub const WAITING_ROOM: &str =
    "query($e: ID!) { waitingRoom(eventId: $e) { enabled open joined admitted } }";
pub const JOIN_QUEUE: &str = "mutation($e: ID!) { joinQueue(eventId: $e) { id position admitted admissionToken waitingForOpening estimatedWaitSecs admissionExpiresAt } }";
pub const REQUEST_SEATS: &str = "mutation($e: ID!, $s: [ID!]!, $k: String) { requestSeats(eventId: $e, seatIds: $s, idempotencyKey: $k) { id status queueNumber } }";
pub const SEAT_REQUEST: &str = "query($id: ID!) { seatRequest(id: $id) { id status errorCode errorMessage hold { id status seats { id } } } }";
pub const SEAT_CHANGES: &str = "subscription($e: ID!) { seatChanges(eventId: $e) { eventId seatId status holdExpiresAt seq } }";

/// Most seats per row of a generated event.
const SEATS_PER_ROW: usize = 100;

/// An event the bench created, with its seat ids in seat-map order.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub seat_ids: Vec<String>,
}

/// Creates an event of `seats` seats in rows of up to 100, one section.
pub async fn create_event(
    api: &Api,
    admin_token: &str,
    name: &str,
    seats: usize,
) -> anyhow::Result<Event> {
    if seats == 0 {
        bail!("an event needs at least one seat");
    }
    let rows: Vec<Value> = (0..seats.div_ceil(SEATS_PER_ROW))
        .map(|i| {
            let in_row = SEATS_PER_ROW.min(seats - i * SEATS_PER_ROW);
            json!({"label": format!("R{}", i + 1), "seats": in_row, "priceCents": 9000 - (i % 80) * 100})
        })
        .collect();
    let starts_at = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let data = api
        .expect(
            Some(admin_token),
            CREATE_EVENT,
            json!({"input": {
                "name": name,
                "venue": "Bench Arena",
                "startsAt": starts_at,
                "sections": [{"name": "Floor", "rows": rows}],
            }}),
        )
        .await?;
    let id = data["createEvent"]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("createEvent answered without an id: {data}"))?
        .to_owned();
    let map = seat_statuses(api, &id).await?;
    if map.order.len() != seats {
        bail!(
            "event {id} has {} seats, {seats} were asked for",
            map.order.len()
        );
    }
    Ok(Event {
        id,
        seat_ids: map.order,
    })
}

/// Every seat's status on the seat map.
#[derive(Debug, Clone)]
pub struct SeatStatuses {
    pub status: HashMap<String, String>,
    pub order: Vec<String>,
}

impl SeatStatuses {
    /// Seats with the given status.
    pub fn with_status<'a>(&'a self, status: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.order
            .iter()
            .filter(move |id| self.status.get(*id).map(String::as_str) == Some(status))
    }
}

pub async fn seat_statuses(api: &Api, event_id: &str) -> anyhow::Result<SeatStatuses> {
    let data = api
        .expect(None, SEAT_STATUSES, json!({"e": event_id}))
        .await?;
    let map = &data["seatMap"];
    let seats = map["seats"]
        .as_array()
        .ok_or_else(|| anyhow!("seatMap answered without seats"))?;
    let mut order = Vec::with_capacity(seats.len());
    let mut status = HashMap::with_capacity(seats.len());
    for seat in seats {
        let id = str_field(seat, "id")?;
        status.insert(id.clone(), str_field(seat, "status")?);
        order.push(id);
    }
    Ok(SeatStatuses { status, order })
}

/// A hold as the API describes it.
#[derive(Debug, Clone)]
pub struct HoldInfo {
    pub id: String,
    pub seats: Vec<String>,
}

impl HoldInfo {
    /// Reads `{ id seats { id } }`.
    pub fn from_json(value: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            id: str_field(value, "id")?,
            seats: seat_ids(value)?,
        })
    }
}

/// A booking as the API describes it.
#[derive(Debug, Clone)]
pub struct BookingInfo {
    pub id: String,
    pub hold_id: String,
    pub status: String,
    pub seats: Vec<String>,
}

/// The caller's ACTIVE holds on `event_id`.
pub async fn active_holds(api: &Api, token: &str, event_id: &str) -> anyhow::Result<Vec<HoldInfo>> {
    let data = api.expect(Some(token), MY_ACTIVE_HOLDS, json!({})).await?;
    data["myHolds"]
        .as_array()
        .ok_or_else(|| anyhow!("myHolds answered without a list"))?
        .iter()
        .filter(|h| h["eventId"].as_str() == Some(event_id))
        .map(HoldInfo::from_json)
        .collect()
}

/// The caller's bookings on `event_id`.
pub async fn bookings(api: &Api, token: &str, event_id: &str) -> anyhow::Result<Vec<BookingInfo>> {
    let data = api.expect(Some(token), MY_BOOKINGS, json!({})).await?;
    data["myBookings"]
        .as_array()
        .ok_or_else(|| anyhow!("myBookings answered without a list"))?
        .iter()
        .filter(|b| b["eventId"].as_str() == Some(event_id))
        .map(|b| {
            Ok(BookingInfo {
                id: str_field(b, "id")?,
                hold_id: str_field(b, "holdId")?,
                status: str_field(b, "status")?,
                seats: seat_ids(b)?,
            })
        })
        .collect()
}

fn str_field(value: &Value, field: &str) -> anyhow::Result<String> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("answer without {field}: {value}"))
}

fn seat_ids(value: &Value) -> anyhow::Result<Vec<String>> {
    value["seats"]
        .as_array()
        .with_context(|| format!("answer without seats: {value}"))?
        .iter()
        .map(|s| str_field(s, "id"))
        .collect()
}
