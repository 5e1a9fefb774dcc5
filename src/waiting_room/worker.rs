//! The request workers. Each instance runs a dispatcher that looks for events with queued
//! requests and tries to take their lease; whoever holds an event's lease works its stream
//! alone, one request at a time, oldest first:
//! 1. entries pending with it (taken over from a worker that died, or its own unanswered);
//! 2. then new entries, in stream (arrival) order.
//!
//! Each request runs `hold_seats` with the request id as its idempotency key, so running it
//! again after a crash returns the hold the first run made instead of making another. The
//! answer is recorded and the entry acknowledged in one script that checks the lease first:
//! a worker that lost its lease writes nothing, and the new holder answers instead.
//!
//! A lease can run out while its holder is paused (a long GC-like stall, a slow statement)
//! without the holder noticing. So each taking of the lease draws a fencing token that only
//! increases, the hold's transaction passes the event's fence in the database with it, and
//! the answer script checks it too: a holder whose token is older than the newest one seen
//! neither applies its request nor answers it (`crate::db::fence`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::WaitingRoomService;
use super::config::RoomConfig;
use super::requests::SeatRequestId;
use super::store::{Next, QUEUES_KEY, RoomKeys};
use crate::auth::User;
use crate::booking::admission::Admission;
use crate::db::fence;
use crate::domain::area::{AreaQuantities, decode_wanted, hold_seat_ids};
use crate::domain::input::IdempotencyKey;
use crate::domain::views::HoldView;
use crate::error::AppError;

/// How long a worker lease lasts unless renewed (it is renewed before every request).
const LEASE_MS: i64 = 3_000;
/// How often the dispatcher looks for work when no notice arrives.
const DISPATCH_EVERY: Duration = Duration::from_millis(250);
/// How long an idle worker keeps its lease before letting the event go.
const IDLE_FOR: Duration = Duration::from_secs(2);
/// How long a request may keep getting "try again" answers before that is its answer.
const RETRY_FOR: Duration = Duration::from_secs(10);

impl WaitingRoomService {
    pub(super) async fn run_dispatcher(self, mut shutdown: watch::Receiver<bool>) {
        let mut notices = self.inner.notices.subscribe();
        loop {
            tokio::select! {
                () = tokio::time::sleep(DISPATCH_EVERY) => {}
                notice = notices.recv() => {
                    if matches!(&notice, Ok(n) if !n.starts_with("work ")) {
                        continue;
                    }
                }
                changed = shutdown.changed() => if changed.is_err() { break },
            }
            if *shutdown.borrow() {
                break;
            }
            if let Err(err) = self.dispatch(&shutdown).await {
                tracing::debug!(error = %err, "request dispatcher cannot reach Redis");
            }
        }
        tracing::debug!("request dispatcher stopped");
    }

    /// Takes the lease of every event with queued requests that nobody works.
    async fn dispatch(&self, shutdown: &watch::Receiver<bool>) -> Result<(), AppError> {
        let store = self.store()?;
        let members: Vec<String> = store
            .query(redis::cmd("SMEMBERS").arg(QUEUES_KEY).to_owned())
            .await?;
        for member in members {
            let Some((event, queue_key)) = member.split_once(':') else {
                continue;
            };
            let Ok(event_id) = event.parse::<i64>() else {
                continue;
            };
            if self.is_working(event_id) {
                continue;
            }
            // The set is shared by every database using this Redis: only our own queues.
            let Ok(Some(room)) = self.inner.rooms.get(event_id).await else {
                continue;
            };
            if room.queue_key != queue_key {
                continue;
            }
            let keys = RoomKeys::new(&room.queue_key);
            if let Some(token) = store.acquire(&keys, self.instance(), LEASE_MS).await? {
                self.set_working(event_id, true);
                tracing::info!(
                    event.id = event_id,
                    worker = self.instance(),
                    token,
                    "took the request queue of the event"
                );
                let this = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    this.work(room, token, shutdown).await;
                    this.set_working(event_id, false);
                });
            }
        }
        Ok(())
    }

    fn is_working(&self, event_id: i64) -> bool {
        self.inner
            .working
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&event_id)
    }

    fn set_working(&self, event_id: i64, on: bool) {
        let mut working = self
            .inner
            .working
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if on {
            working.insert(event_id);
        } else {
            working.remove(&event_id);
        }
    }

    /// Works one event's requests while this instance holds its lease, taken with `token`.
    #[tracing::instrument(skip_all, fields(event.id = room.event_id, token))]
    async fn work(&self, room: RoomConfig, token: i64, shutdown: watch::Receiver<bool>) {
        let keys = RoomKeys::new(&room.queue_key);
        let mut notices = self.inner.notices.subscribe();
        let work_notice = format!("work {}:{}", room.event_id, room.queue_key);
        let mut idle_since = Instant::now();
        // What recording the last answer handed back: the next request, saving a round trip.
        let mut handed: Option<Next> = None;
        loop {
            let Ok(store) = self.store() else { return };
            if *shutdown.borrow() {
                let _ = store.release(&keys, self.instance()).await;
                tracing::info!("stopping: let the request queue go");
                return;
            }
            let next = match handed.take() {
                Some(next) => Ok(next),
                None => store.next_request(&keys, self.instance(), LEASE_MS).await,
            };
            match next {
                Ok(Next::Lost) => {
                    metrics::counter!("onsale_leases_lost_total", "lease" => "queue").increment(1);
                    tracing::warn!(
                        "lost the lease of the request queue; another instance takes over"
                    );
                    return;
                }
                Ok(Next::Empty) => {
                    if idle_since.elapsed() >= IDLE_FOR {
                        self.let_go(&room, &keys).await;
                        return;
                    }
                    // Until new work is announced (or a little while passes).
                    let _ = tokio::time::timeout(Duration::from_millis(100), async {
                        loop {
                            match notices.recv().await {
                                Ok(n) if *n == *work_notice => return,
                                Ok(_) => {}
                                Err(_) => return,
                            }
                        }
                    })
                    .await;
                }
                Ok(Next::Entry { id, fields }) => {
                    idle_since = Instant::now();
                    match self
                        .answer(&room, &keys, token, &id, &fields, &shutdown)
                        .await
                    {
                        Ok(next) => handed = Some(next),
                        Err(err) => {
                            // Redis failed: the entry stays pending and is answered again.
                            tracing::debug!(error = %err, "cannot record an answer; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Lets an idle event go: off the set of queues (back on if entries remain), lease freed.
    async fn let_go(&self, room: &RoomConfig, keys: &RoomKeys) {
        let Ok(store) = self.store() else { return };
        let member = format!("{}:{}", room.event_id, room.queue_key);
        let _ = store
            .query::<i64>(redis::cmd("SREM").arg(QUEUES_KEY).arg(&member).to_owned())
            .await;
        let left: Result<i64, _> = store
            .query(redis::cmd("XLEN").arg(keys.requests()).to_owned())
            .await;
        if !matches!(left, Ok(0)) {
            let _ = store
                .query::<i64>(redis::cmd("SADD").arg(QUEUES_KEY).arg(&member).to_owned())
                .await;
        }
        let _ = store.release(keys, self.instance()).await;
        tracing::debug!("request queue idle; lease released");
    }

    /// Answers one stream entry and returns the next; [`Next::Lost`] if the lease was lost
    /// (or taken over: the fence refused `token`) before the answer was recorded.
    async fn answer(
        &self,
        room: &RoomConfig,
        keys: &RoomKeys,
        token: i64,
        entry_id: &str,
        fields: &HashMap<String, String>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Next, AppError> {
        let store = self.store()?;
        let uuid = fields.get("request").cloned().unwrap_or_default();
        let request_id = SeatRequestId {
            event_id: room.event_id,
            uuid: uuid.clone(),
        }
        .id();
        let user = User {
            id: fields.get("user").cloned().unwrap_or_default(),
            admin: fields.get("admin").is_some_and(|a| a == "1"),
        };
        let (seats, places) = fields
            .get("seats")
            .map(|s| decode_wanted(s))
            .unwrap_or_default();
        let pause = self.inner.worker_pause.get().copied().unwrap_or_default();
        if !pause.is_zero() {
            // QUEUE_WORKER_PAUSE_MS (tests): a stall past the lease, between taking a request
            // and applying it.
            tracing::warn!(?pause, entry = %entry_id, "pausing before applying the request");
            tokio::time::sleep(pause).await;
        }
        let outcome = if uuid.is_empty() || user.id.is_empty() {
            Err(AppError::Internal(format!(
                "malformed queue entry {entry_id}"
            )))
        } else {
            match self
                .hold_for(room, keys, token, &user, &uuid, (&seats, &places), shutdown)
                .await
            {
                Some(Err(AppError::LeaseLost(_))) => {
                    self.fenced_out(room, keys, token).await;
                    return Ok(Next::Lost);
                }
                Some(outcome) => outcome,
                // Stopping, or the lease is gone: the entry stays pending for the next holder.
                None => return Ok(Next::Empty),
            }
        };
        let (status, hold_id, error) = match &outcome {
            Ok(hold) => ("DONE", hold.id.clone(), None),
            Err(err) => {
                if let AppError::Internal(cause) = err {
                    tracing::error!(%cause, request.id = %request_id, "a queued seat request failed");
                }
                ("FAILED", String::new(), Some((err.code(), err.to_string())))
            }
        };
        let next = store
            .complete(
                keys,
                self.instance(),
                token,
                LEASE_MS,
                entry_id,
                &uuid,
                &request_id,
                status,
                &hold_id,
                error.as_ref().map(|(c, m)| (*c, m.as_str())),
            )
            .await?;
        if matches!(next, Next::Lost) {
            tracing::warn!(entry = %entry_id, "lost the lease while answering; the next holder answers it");
        } else {
            metrics::counter!("onsale_seat_requests_total", "status" => status).increment(1);
            tracing::info!(request.id = %request_id, status, code = error.as_ref().map_or("", |e| e.0), "seat request answered");
        }
        Ok(next)
    }

    /// The fence refused `token`: a newer holder has applied requests of this event, so this
    /// worker stops without answering. Should Redis have lost the fencing counter (a flush, a
    /// failover), it is raised past what the database has seen and the lease let go, so that
    /// the next holder draws a token the fence accepts.
    async fn fenced_out(&self, room: &RoomConfig, keys: &RoomKeys, token: i64) {
        tracing::warn!(
            token,
            "the queue's fence refused this worker's token: a newer lease holder works the queue"
        );
        let Ok(store) = self.store() else { return };
        let seen = fence::queue_fence(&self.inner.booking.db().conn, room.event_id).await;
        if let Ok(Some(seen)) = seen {
            let _ = store.raise_fence(keys, seen).await;
        }
        let _ = store.release(keys, self.instance()).await;
    }

    /// What `holdSeats` answers for this request, made as if it came from the requester.
    /// "Try again" answers are retried for a while rather than passed on, and so is a seat
    /// refused only because another request was still deciding about it (a gate claim).
    /// `None`: gave up without an answer (stopping, or the lease was lost), to be run again by
    /// the next lease holder.
    #[expect(
        clippy::too_many_arguments,
        reason = "the request and the lease it runs under"
    )]
    async fn hold_for(
        &self,
        room: &RoomConfig,
        keys: &RoomKeys,
        token: i64,
        user: &User,
        uuid: &str,
        (seats, places): (&[String], &[(String, i32)]),
        shutdown: &watch::Receiver<bool>,
    ) -> Option<Result<HoldView, AppError>> {
        let booking = &self.inner.booking;
        let areas = match AreaQuantities::parse(places) {
            Ok(areas) => areas,
            Err(err) => return Some(Err(err)),
        };
        let seat_ids = match hold_seat_ids(seats, booking.settings().max_seats_per_hold, &areas) {
            Ok(ids) => ids,
            Err(err) => return Some(Err(err)),
        };
        let key = IdempotencyKey::internal(format!("seat-request:{uuid}"));
        let started = Instant::now();
        let mut backoff = Duration::from_millis(20);
        loop {
            let outcome = booking
                .hold_seats(
                    user,
                    room.event_id,
                    seat_ids.clone(),
                    areas.clone(),
                    Some(key.clone()),
                    Admission::Queued { fence: token },
                )
                .await;
            let again = match &outcome {
                Err(err) if err.is_transient() => true,
                Err(AppError::SeatUnavailable {
                    seat_ids: taken, ..
                }) if !taken.is_empty() => !booking.any_taken(taken).await.unwrap_or(true),
                _ => false,
            };
            if !again || started.elapsed() >= RETRY_FOR {
                return Some(outcome);
            }
            if *shutdown.borrow() {
                return None;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
            let store = self.store().ok()?;
            if !matches!(store.renew(keys, self.instance(), LEASE_MS).await, Ok(true)) {
                return None;
            }
        }
    }
}
