//! Waiting rooms and queued booking: joining an event's queue, following one's place in it,
//! and requesting seats through the event's request queue.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};

use super::errors::GqlResultExt;
use super::hold::{AreaQuantityInput, area_quantities};
use super::types::{Hold, datetime, int};
use super::{booking, caller, user, waiting_room};
use crate::domain::area::hold_seat_ids;
use crate::domain::input::{IdempotencyKey, parse_numeric_id};
use crate::waiting_room::{
    AdmissionToken, QueueStatusView, RoomSettings, RoomView, SeatRequestView, TicketView,
};

/// The admission the request came with (`x-admission-token`), if any.
pub(crate) fn admission<'a>(ctx: &Context<'a>) -> Option<&'a str> {
    ctx.data_opt::<AdmissionToken>()
        .and_then(|token| token.0.as_deref())
}

/// A place in an event's waiting room.
#[derive(SimpleObject)]
pub struct QueueTicket {
    /// Signed and bound to you and the event: pass it to `queueStatus`.
    pub id: ID,
    pub event_id: ID,
    /// 1 + the number of people ahead of you still waiting (it only goes down). Before the
    /// opening it is provisional, your arrival number in the lobby: at the opening everyone
    /// who came early gets a random place. 0 once you are admitted.
    pub position: i32,
    pub admitted: bool,
    /// Send it as the `x-admission-token` header with your holds, until `admissionExpiresAt`.
    pub admission_token: Option<String>,
    /// Your place in line, fixed once drawn (null while waiting for the opening).
    pub queue_number: Option<i32>,
    /// True until the opening, while `position` is provisional.
    pub waiting_for_opening: bool,
    pub opens_at: DateTime<Utc>,
    pub estimated_wait_secs: Option<i32>,
    /// When your admission runs out; after it your turn has passed.
    pub admission_expires_at: Option<DateTime<Utc>>,
}

impl From<TicketView> for QueueTicket {
    fn from(t: TicketView) -> Self {
        Self {
            id: ID(t.id),
            event_id: ID(t.event_id.to_string()),
            position: int(t.standing.position),
            admitted: t.standing.admitted,
            admission_token: t.admission_token,
            queue_number: t.standing.queue_number.map(int),
            waiting_for_opening: t.standing.waiting_for_opening,
            opens_at: datetime(t.opens_at_ms),
            estimated_wait_secs: t.standing.estimated_wait_secs.map(int),
            admission_expires_at: t.standing.admission_until_ms.map(datetime),
        }
    }
}

/// Where a queue ticket stands now.
#[derive(SimpleObject)]
pub struct QueueStatus {
    pub ticket_id: ID,
    /// As in `QueueTicket.position`.
    pub position: i32,
    pub estimated_wait_secs: Option<i32>,
    pub admitted: bool,
    /// Present once admitted, while the admission is valid.
    pub admission_token: Option<String>,
    pub waiting_for_opening: bool,
    pub admission_expires_at: Option<DateTime<Utc>>,
}

impl From<QueueStatusView> for QueueStatus {
    fn from(s: QueueStatusView) -> Self {
        Self {
            ticket_id: ID(s.ticket_id),
            position: int(s.standing.position),
            estimated_wait_secs: s.standing.estimated_wait_secs.map(int),
            admitted: s.standing.admitted,
            admission_token: s.admission_token,
            waiting_for_opening: s.standing.waiting_for_opening,
            admission_expires_at: s.standing.admission_until_ms.map(datetime),
        }
    }
}

/// A queued request for seats and, once a worker took it, its answer.
#[derive(SimpleObject)]
pub struct SeatRequest {
    pub id: ID,
    /// QUEUED, then DONE (`hold` is set) or FAILED (`errorCode` is set).
    pub status: String,
    /// The hold it made, as it is now.
    pub hold: Option<Hold>,
    /// The error code `holdSeats` gave, e.g. SEAT_UNAVAILABLE.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub event_id: ID,
    /// Arrival order among the event's requests (1-based): they are answered in this order.
    pub queue_number: i32,
    /// When the worker answered it (DONE or FAILED); null while QUEUED.
    pub answered_at: Option<DateTime<Utc>>,
}

impl From<SeatRequestView> for SeatRequest {
    fn from(r: SeatRequestView) -> Self {
        Self {
            id: ID(r.id),
            status: r.status.as_str().to_owned(),
            hold: r.hold.map(Into::into),
            error_code: r.error_code,
            error_message: r.error_message,
            event_id: ID(r.event_id.to_string()),
            queue_number: int(r.queue_number),
            answered_at: r.answered_at_ms.and_then(DateTime::from_timestamp_millis),
        }
    }
}

/// An event's waiting room.
#[derive(SimpleObject)]
pub struct WaitingRoom {
    pub event_id: ID,
    pub enabled: bool,
    pub opens_at: DateTime<Utc>,
    pub admit_per_second: i32,
    pub admission_ttl_secs: i32,
    /// Whether the lottery was drawn and admissions run (null when Redis cannot be reached).
    pub open: Option<bool>,
    /// Tickets handed out so far (null when Redis cannot be reached).
    pub joined: Option<i32>,
    /// People let in so far (null when Redis cannot be reached).
    pub admitted: Option<i32>,
}

impl From<RoomView> for WaitingRoom {
    fn from(r: RoomView) -> Self {
        Self {
            event_id: ID(r.config.event_id.to_string()),
            enabled: r.config.enabled,
            opens_at: datetime(r.config.opens_at_ms),
            admit_per_second: i32::try_from(r.config.admit_per_sec).unwrap_or(i32::MAX),
            admission_ttl_secs: i32::try_from(r.config.admission_ttl_secs).unwrap_or(i32::MAX),
            open: r.live.map(|l| l.open),
            joined: r.live.map(|l| int(l.joined)),
            admitted: r.live.map(|l| int(l.admitted)),
        }
    }
}

/// Settings of an event's waiting room.
#[derive(InputObject)]
pub struct WaitingRoomInput {
    /// While on, holds for the event need an admission from the queue.
    pub enabled: bool,
    /// Whoever joins before this is ordered at random at this moment; null: open now.
    pub opens_at: Option<DateTime<Utc>>,
    /// How many people are let in per second, across all instances.
    pub admit_per_second: i32,
    /// How long an admission stays valid.
    pub admission_ttl_secs: i32,
}

#[derive(Default)]
pub struct QueueQuery;

#[Object]
impl QueueQuery {
    /// An event's waiting room with its live counters (admin only; null if never configured).
    async fn waiting_room(&self, ctx: &Context<'_>, event_id: ID) -> Result<Option<WaitingRoom>> {
        let admin = caller(ctx).admin().gql()?;
        let Ok(event_id) = parse_numeric_id(&event_id, "event") else {
            return Ok(None);
        };
        Ok(waiting_room(ctx)
            .room(admin, event_id)
            .await
            .gql()?
            .map(Into::into))
    }

    /// One of your queued seat requests (null if there is none; FORBIDDEN if it is someone else's).
    async fn seat_request(&self, ctx: &Context<'_>, id: ID) -> Result<Option<SeatRequest>> {
        let user = user(ctx).gql()?;
        Ok(waiting_room(ctx)
            .seat_request(user, &id)
            .await
            .gql()?
            .map(Into::into))
    }
}

#[derive(Default)]
pub struct QueueMutation;

#[Object]
impl QueueMutation {
    /// Switches an event's waiting room on or off and sets its opening and pace (admin only;
    /// needs Redis).
    async fn configure_waiting_room(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        input: WaitingRoomInput,
    ) -> Result<WaitingRoom> {
        let admin = caller(ctx).admin().gql()?;
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        let settings = RoomSettings::parse(
            input.enabled,
            input.opens_at.map(|t| t.timestamp_millis()),
            input.admit_per_second,
            input.admission_ttl_secs,
        )
        .gql()?;
        Ok(waiting_room(ctx)
            .configure(admin, event_id, settings)
            .await
            .gql()?
            .into())
    }

    /// Joins the event's waiting room, or returns the ticket you already have (a new one at
    /// the back if your admission ran out unused). Watch it with `queueStatus`; once
    /// admitted, send the admission token with your holds.
    async fn join_queue(&self, ctx: &Context<'_>, event_id: ID) -> Result<QueueTicket> {
        let user = user(ctx).gql()?;
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        Ok(waiting_room(ctx).join(user, event_id).await.gql()?.into())
    }

    /// Queues a request for exactly these seats and answers at once (status QUEUED). Requests
    /// are answered strictly in arrival order with what `holdSeats` would give; follow it
    /// with the `seatRequest` subscription or query. Needs an admission while the event's
    /// waiting room is on.
    async fn request_seats(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        #[graphql(desc = "may be [] when areas are given")] seat_ids: Vec<ID>,
        idempotency_key: Option<String>,
        #[graphql(desc = "general-admission places, in the same all-or-nothing hold")]
        areas: Option<Vec<AreaQuantityInput>>,
    ) -> Result<SeatRequest> {
        let user = user(ctx).gql()?;
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        let areas = area_quantities(areas).gql()?;
        let raw: Vec<String> = seat_ids.into_iter().map(|id| id.0).collect();
        let max = booking(ctx).settings().max_seats_per_hold;
        let seat_ids = hold_seat_ids(&raw, max, &areas).gql()?;
        let key = IdempotencyKey::parse(idempotency_key).gql()?;
        Ok(waiting_room(ctx)
            .request_seats(user, event_id, seat_ids, areas, key, admission(ctx))
            .await
            .gql()?
            .into())
    }
}

#[derive(Default)]
pub struct QueueSubscription;

#[Subscription]
impl QueueSubscription {
    /// Your place in the queue: now, at every move, and finally your admission with its
    /// token, where the stream ends. Only the ticket's owner may follow it.
    async fn queue_status(
        &self,
        ctx: &Context<'_>,
        ticket_id: ID,
    ) -> Result<impl Stream<Item = Result<QueueStatus>> + use<>> {
        let user = user(ctx).gql()?;
        let stream = waiting_room(ctx).follow(user, &ticket_id).await.gql()?;
        Ok(stream.map(|item| item.map(QueueStatus::from).gql()))
    }

    /// Your seat request: now and, once answered, its answer, where the stream ends.
    async fn seat_request(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<impl Stream<Item = Result<SeatRequest>> + use<>> {
        let user = user(ctx).gql()?;
        let stream = waiting_room(ctx).follow_request(user, &id).await.gql()?;
        Ok(stream.map(|item| item.map(SeatRequest::from).gql()))
    }
}
