//! Queued booking: `requestSeats` queues a request and answers at once; a worker answers it
//! later (see `worker.rs`). Requests are read back by id, by their requester only.

use std::collections::HashMap;
use std::time::Duration;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tracing::instrument;

use super::store::RoomKeys;
use super::{Store, WaitingRoomService};
use crate::auth::User;
use crate::domain::area::{AreaQuantities, encode_wanted};
use crate::domain::clock::now_ms;
use crate::domain::input::{IdempotencyKey, SeatIds};
use crate::domain::views::HoldView;
use crate::error::AppError;

/// How often a follower rereads a request when no notice arrives (a lost notice).
const RECHECK: Duration = Duration::from_secs(1);

/// Where a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeatRequestStatus {
    Queued,
    Done,
    Failed,
}

impl SeatRequestStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Done => "DONE",
            Self::Failed => "FAILED",
        }
    }

    fn parse(raw: &str) -> Self {
        match raw {
            "DONE" => Self::Done,
            "FAILED" => Self::Failed,
            _ => Self::Queued,
        }
    }
}

/// A queued seat request as its requester sees it.
#[derive(Clone, Debug)]
pub struct SeatRequestView {
    pub id: String,
    pub event_id: i64,
    pub status: SeatRequestStatus,
    /// Arrival order among the event's requests (1-based); requests are answered in it.
    pub queue_number: i64,
    /// The hold it produced (DONE), as it is now.
    pub hold: Option<HoldView>,
    /// The contract error code `holdSeats` gave (FAILED).
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// When the worker recorded the answer (ms since the epoch, the worker's clock); `None` while
    /// QUEUED.
    pub answered_at_ms: Option<i64>,
}

/// A request id: `<event id>-<uuid>`, so the event (and its queue) can be found from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SeatRequestId {
    pub event_id: i64,
    pub uuid: String,
}

impl SeatRequestId {
    pub fn new(event_id: i64) -> Self {
        Self {
            event_id,
            uuid: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// A malformed id names nothing: `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        let (event, uuid) = raw.trim().split_once('-')?;
        let event_id = event.parse::<i64>().ok().filter(|id| *id > 0)?;
        let uuid = uuid::Uuid::try_parse(uuid).ok()?.simple().to_string();
        Some(Self { event_id, uuid })
    }

    pub fn id(&self) -> String {
        format!("{}-{}", self.event_id, self.uuid)
    }
}

impl WaitingRoomService {
    /// Queues a request for exactly these seats and places and answers at once with status QUEUED.
    /// While the event's room is on, the caller needs an admission, as for `holdSeats`. The
    /// same key from the same user for the same event returns the first request.
    #[instrument(skip_all, fields(event.id = event_id, user.id = %user.id), err(level = "debug"))]
    pub async fn request_seats(
        &self,
        user: &User,
        event_id: i64,
        seat_ids: SeatIds,
        areas: AreaQuantities,
        key: Option<IdempotencyKey>,
        admission: Option<&str>,
    ) -> Result<SeatRequestView, AppError> {
        let store = self.inner.store.as_ref().ok_or_else(|| {
            AppError::BadInput(
                "queued booking needs Redis and this server runs without REDIS_URL: \
                 use holdSeats"
                    .into(),
            )
        })?;
        // A request the worker would refuse is refused now, before it waits in the queue.
        self.inner.booking.open_event(user, event_id).await?;
        self.require_admission(user, event_id, admission).await?;
        let room = self.inner.rooms.ensure(event_id).await?;
        let keys = RoomKeys::new(&room.queue_key);
        let request = SeatRequestId::new(event_id);
        let wanted = encode_wanted(&seat_ids, &areas);
        let (new, uuid) = store
            .enqueue(
                &keys,
                event_id,
                &room.queue_key,
                &request.uuid,
                user,
                &wanted,
                key.as_ref().map(IdempotencyKey::as_str),
                now_ms(),
            )
            .await?;
        // After the entry exists, so a worker that finds the stream empty and drops the
        // event from the set can never miss it (it re-adds it if entries remain).
        let member = format!("{event_id}:{}", room.queue_key);
        store
            .query::<i64>(
                redis::cmd("SADD")
                    .arg(super::store::QUEUES_KEY)
                    .arg(&member)
                    .to_owned(),
            )
            .await?;
        if new {
            metrics::counter!("onsale_seat_requests_total", "status" => "QUEUED").increment(1);
            tracing::info!(request.id = %request.id(), "seat request queued");
        }
        let id = SeatRequestId { event_id, uuid };
        self.load_request(user, &keys, &id)
            .await?
            .ok_or_else(|| AppError::Internal("a queued seat request vanished".into()))
    }

    /// One of the caller's requests; `None` if there is no such request, `FORBIDDEN` if it
    /// is someone else's.
    #[instrument(skip_all, fields(user.id = %user.id), err(level = "debug"))]
    pub async fn seat_request(
        &self,
        user: &User,
        id: &str,
    ) -> Result<Option<SeatRequestView>, AppError> {
        let Some(id) = SeatRequestId::parse(id) else {
            return Ok(None);
        };
        let Some(room) = self.inner.rooms.get(id.event_id).await? else {
            return Ok(None);
        };
        self.store()?;
        self.load_request(user, &RoomKeys::new(&room.queue_key), &id)
            .await
    }

    async fn load_request(
        &self,
        user: &User,
        keys: &RoomKeys,
        id: &SeatRequestId,
    ) -> Result<Option<SeatRequestView>, AppError> {
        let store = self.store()?;
        let fields: HashMap<String, String> = store
            .query(redis::cmd("HGETALL").arg(keys.request(&id.uuid)).to_owned())
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
        if field("user").as_deref() != Some(user.id.as_str()) {
            return Err(AppError::Forbidden(
                "this seat request belongs to someone else".into(),
            ));
        }
        let hold = match field("hold_id") {
            Some(hold_id) => self.inner.booking.hold(user, &hold_id).await?,
            None => None,
        };
        Ok(Some(SeatRequestView {
            id: id.id(),
            event_id: id.event_id,
            status: SeatRequestStatus::parse(field("status").as_deref().unwrap_or("")),
            queue_number: field("number").and_then(|n| n.parse().ok()).unwrap_or(0),
            hold,
            error_code: field("error_code"),
            error_message: field("error_message"),
            answered_at_ms: field("answered_ms").and_then(|ms| ms.parse().ok()),
        }))
    }

    /// Follows a request: its state now and, if it is still queued, its answer, where the
    /// stream ends. Only the requester may.
    #[instrument(skip_all, fields(user.id = %user.id), err(level = "debug"))]
    pub async fn follow_request(
        &self,
        user: &User,
        id: &str,
    ) -> Result<impl Stream<Item = Result<SeatRequestView, AppError>> + Send + use<>, AppError>
    {
        let not_found = || AppError::NotFound(format!("seat request {id:?} does not exist"));
        let parsed = SeatRequestId::parse(id).ok_or_else(not_found)?;
        let room = self
            .inner
            .rooms
            .get(parsed.event_id)
            .await?
            .ok_or_else(not_found)?;
        let keys = RoomKeys::new(&room.queue_key);
        // Subscribe before the first read, so an answer in between is not missed.
        let mut notices = self.inner.notices.subscribe();
        let first = self
            .load_request(user, &keys, &parsed)
            .await?
            .ok_or_else(not_found)?;
        let this = self.clone();
        let user = user.clone();
        let done_notice = format!("done {}", parsed.id());
        Ok(async_stream::stream! {
            let finished = first.status != SeatRequestStatus::Queued;
            yield Ok(first);
            if finished {
                return;
            }
            let mut reported_down = false;
            loop {
                let deadline = tokio::time::sleep(RECHECK);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = &mut deadline => break,
                        notice = notices.recv() => match notice {
                            Ok(n) if *n == *done_notice => break,
                            Ok(_) => continue,
                            Err(RecvError::Lagged(_)) => break,
                            Err(RecvError::Closed) => {
                                deadline.as_mut().await;
                                break;
                            }
                        },
                    }
                }
                match this.load_request(&user, &keys, &parsed).await {
                    Ok(Some(view)) if view.status != SeatRequestStatus::Queued => {
                        yield Ok(view);
                        return;
                    }
                    Ok(_) => reported_down = false,
                    Err(err) => {
                        if !reported_down && err.code() == Store::unavailable().code() {
                            reported_down = true;
                            yield Err(err);
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_round_trip() {
        let id = SeatRequestId::new(42);
        assert_eq!(SeatRequestId::parse(&id.id()), Some(id.clone()));
        assert_eq!(SeatRequestId::parse("42"), None);
        assert_eq!(
            SeatRequestId::parse("0-00000000000000000000000000000000"),
            None
        );
        assert_eq!(SeatRequestId::parse("x-y"), None);
    }
}
