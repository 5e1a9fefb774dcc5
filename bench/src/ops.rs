//! The GraphQL operations the bench sends (shared with the tests in the `onsale-ops` crate),
//! and the setup and verification reads it makes through them.

use anyhow::{Context as _, anyhow, bail};

/// What a live seat-map client asks for.
pub use onsale_ops::SEAT_MAP;
pub use onsale_ops::{
    BookingInfo, CONFIGURE_WAITING_ROOM, CREATE_EVENT, EventInput, HoldInfo, MY_ACTIVE_HOLDS,
    MY_BOOKINGS, SEAT_CHANGES, SEAT_REQUEST_UPDATES, SEAT_SEQ, SEAT_STATUSES, SeatStatuses,
    WAITING_ROOM, WaitingRoomInput, vars,
};
/// The bench's smaller selections: it sends what it always has, so figures stay comparable.
pub use onsale_ops::{
    CONFIRM_HOLD_LEAN as CONFIRM_HOLD, HOLD_SEATS_LEAN as HOLD_SEATS,
    JOIN_QUEUE_LEAN as JOIN_QUEUE, RELEASE_HOLD_LEAN as RELEASE_HOLD, REQUEST_SEATS,
};

use crate::client::Api;

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
    let rows = (0..seats.div_ceil(SEATS_PER_ROW)).map(|i| {
        let in_row = SEATS_PER_ROW.min(seats - i * SEATS_PER_ROW);
        (in_row, 9000 - (i % 80) as i64 * 100)
    });
    let starts_at = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let input = EventInput::rows(name, "Bench Arena", &starts_at, "Floor", rows);
    let data = api
        .expect(Some(admin_token), CREATE_EVENT, vars::create_event(&input))
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
pub async fn seat_statuses(api: &Api, event_id: &str) -> anyhow::Result<SeatStatuses> {
    let data = api
        .expect(None, SEAT_STATUSES, vars::event(event_id))
        .await?;
    SeatStatuses::from_json(&data["seatMap"])
        .with_context(|| format!("seatMap answered without seats: {data}"))
}

/// The caller's ACTIVE holds on `event_id`.
pub async fn active_holds(api: &Api, token: &str, event_id: &str) -> anyhow::Result<Vec<HoldInfo>> {
    let data = api
        .expect(Some(token), MY_ACTIVE_HOLDS, vars::none())
        .await?;
    of_event(&data["myHolds"], event_id, "myHolds", HoldInfo::from_json)
}

/// The caller's bookings on `event_id`.
pub async fn bookings(api: &Api, token: &str, event_id: &str) -> anyhow::Result<Vec<BookingInfo>> {
    let data = api.expect(Some(token), MY_BOOKINGS, vars::none()).await?;
    of_event(
        &data["myBookings"],
        event_id,
        "myBookings",
        BookingInfo::from_json,
    )
}

/// The items of a list answer that belong to `event_id`, each read by `read`.
fn of_event<T>(
    list: &serde_json::Value,
    event_id: &str,
    field: &str,
    read: fn(&serde_json::Value) -> Result<T, serde_json::Error>,
) -> anyhow::Result<Vec<T>> {
    list.as_array()
        .ok_or_else(|| anyhow!("{field} answered without a list"))?
        .iter()
        .filter(|item| item["eventId"].as_str() == Some(event_id))
        .map(|item| read(item).with_context(|| format!("unreadable {field} item: {item}")))
        .collect()
}
