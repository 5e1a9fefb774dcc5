//! The request workers. Each instance runs a dispatcher that looks for events with queued
//! requests and tries to take their lease; whoever holds an event's lease works its stream
//! alone, oldest first:
//! 1. entries pending with it (taken over from a worker that died, or its own unanswered);
//! 2. then new entries, in stream (arrival) order.
//!
//! It takes them a chunk at a time and answers each exactly as running them one after
//! another in queue order would, without running them one at a time: requests that compete
//! for nothing (no seat, no area, no buyer in common) decide the same whichever goes first,
//! so a chunk runs in waves. A wave is every request that competes with no earlier request
//! still waiting; its requests run together, so their writes share the event's batches and
//! commits (`crate::db::group`). A request that competes with an earlier one waits for a
//! later wave, after it.
//!
//! Each request runs `hold_seats` with the request id as its idempotency key, so running it
//! again after a crash returns the hold the first run made instead of making another. The
//! answers of a chunk are recorded, in queue order, and their entries acknowledged in one
//! script that checks the lease first: a worker that lost its lease writes nothing, and the
//! new holder answers instead.
//!
//! A lease can run out while its holder is paused (a long GC-like stall, a slow statement)
//! without the holder noticing. So each taking of the lease draws a fencing token that only
//! increases, the hold's transaction passes the event's fence in the database with it, and
//! the answer script checks it too: a holder whose token is older than the newest one seen
//! neither applies its request nor answers it (`crate::db::fence`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::watch;

use super::WaitingRoomService;
use super::config::RoomConfig;
use super::requests::SeatRequestId;
use super::store::{Answer, Entry, Next, QUEUES_KEY, RoomKeys};
use crate::auth::User;
use crate::booking::admission::Admission;
use crate::db::fence;
use crate::domain::area::{AreaQuantities, decode_wanted, hold_seat_ids};
use crate::domain::input::{IdempotencyKey, SeatIds};
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
/// Most requests taken, run and answered together.
const CHUNK: usize = 64;

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
                None => {
                    store
                        .next_requests(&keys, self.instance(), LEASE_MS, CHUNK)
                        .await
                }
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
                Ok(Next::Entries(entries)) => {
                    idle_since = Instant::now();
                    match self.answer(&room, &keys, token, &entries, &shutdown).await {
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

    /// Answers a chunk of stream entries (in queue order) and returns the next ones;
    /// [`Next::Lost`] if the lease was lost (or taken over: the fence refused `token`) before
    /// the answers were recorded.
    async fn answer(
        &self,
        room: &RoomConfig,
        keys: &RoomKeys,
        token: i64,
        entries: &[Entry],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Next, AppError> {
        let store = self.store()?;
        let max_seats = self.inner.booking.settings().max_seats_per_hold;
        // A request that cannot be held at all (bad input) has its answer already.
        let (requests, mut outcomes): (Vec<Queued>, Vec<Option<Result<HoldView, AppError>>>) =
            entries
                .iter()
                .map(|entry| {
                    let (request, refused) = Queued::read(room.event_id, entry, max_seats);
                    (request, refused.map(Err))
                })
                .unzip();
        let pause = self.inner.worker_pause.get().copied().unwrap_or_default();
        if !pause.is_zero() {
            // QUEUE_WORKER_PAUSE_MS (tests): a stall past the lease, between taking requests
            // and applying them.
            tracing::warn!(?pause, entry = %entries[0].id, "pausing before applying the requests");
            tokio::time::sleep(pause).await;
        }
        let mut waiting: Vec<usize> = (0..requests.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        let mut first = true;
        let (started, mut waves) = (Instant::now(), 0);
        while !waiting.is_empty() {
            // Taking the chunk renewed the lease; each later wave renews it again.
            if !first && !matches!(store.renew(keys, self.instance(), LEASE_MS).await, Ok(true)) {
                break;
            }
            first = false;
            let wave = next_wave(&requests, &waiting);
            waves += 1;
            let ran = join_all(
                wave.iter()
                    .map(|&i| self.hold_for(room, keys, token, &requests[i], shutdown)),
            )
            .await;
            let mut stopped = false;
            for (&i, outcome) in wave.iter().zip(ran) {
                match outcome {
                    Some(Err(AppError::LeaseLost(_))) => {
                        self.fenced_out(room, keys, token).await;
                        return Ok(Next::Lost);
                    }
                    Some(outcome) => outcomes[i] = Some(outcome),
                    // Stopping, or the lease is gone.
                    None => stopped = true,
                }
            }
            if stopped {
                break;
            }
            waiting.retain(|i| !wave.contains(i));
        }
        // Answers are recorded in queue order: up to the first request without one, which
        // stays pending (with those after it) for the next holder, or the next round.
        let answers: Vec<Answer<'_>> = requests
            .iter()
            .zip(&outcomes)
            .map_while(|(request, outcome)| Some(request.answer(outcome.as_ref()?)))
            .collect();
        if answers.is_empty() {
            return Ok(Next::Empty);
        }
        let ran_for = started.elapsed();
        let next = store
            .complete(keys, (self.instance(), token), LEASE_MS, &answers, CHUNK)
            .await?;
        tracing::debug!(
            requests = requests.len(),
            answered = answers.len(),
            waves,
            run_ms = ran_for.as_millis(),
            answer_ms = (started.elapsed() - ran_for).as_millis(),
            "chunk of requests worked"
        );
        if matches!(next, Next::Lost) {
            tracing::warn!(
                entries = answers.len(),
                "lost the lease while answering; the next holder answers them"
            );
        } else {
            for answer in &answers {
                metrics::counter!("onsale_seat_requests_total", "status" => answer.status)
                    .increment(1);
                tracing::info!(
                    request.id = %answer.request_id,
                    status = answer.status,
                    code = answer.error.as_ref().map_or("", |e| e.0),
                    "seat request answered"
                );
            }
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
    async fn hold_for(
        &self,
        room: &RoomConfig,
        keys: &RoomKeys,
        token: i64,
        request: &Queued,
        shutdown: &watch::Receiver<bool>,
    ) -> Option<Result<HoldView, AppError>> {
        let booking = &self.inner.booking;
        // Only requests that can be held are run.
        let (seat_ids, areas) = request.wanted.as_ref()?;
        let key = IdempotencyKey::internal(format!("seat-request:{}", request.uuid));
        let started = Instant::now();
        let mut backoff = Duration::from_millis(20);
        loop {
            let outcome = booking
                .hold_seats(
                    &request.user,
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

/// One queued request, as read from its stream entry.
struct Queued {
    entry_id: String,
    uuid: String,
    request_id: String,
    user: User,
    /// Its seats and places; `None` if they cannot be held.
    wanted: Option<(SeatIds, AreaQuantities)>,
}

/// What requests can compete for: a seat, an area's places, a buyer's per-event limit.
#[derive(PartialEq, Eq, Hash)]
enum Contested<'a> {
    Seat(i64),
    Area(i64),
    Buyer(&'a str),
}

impl Queued {
    /// The request, and why it cannot be held if it cannot.
    fn read(event_id: i64, entry: &Entry, max_seats: usize) -> (Self, Option<AppError>) {
        let field = |name: &str| entry.fields.get(name).cloned().unwrap_or_default();
        let uuid = field("request");
        let user = User {
            id: field("user"),
            admin: entry.fields.get("admin").is_some_and(|a| a == "1"),
        };
        let wanted = if uuid.is_empty() || user.id.is_empty() {
            Err(AppError::Internal(format!(
                "malformed queue entry {}",
                entry.id
            )))
        } else {
            let (seats, places) = entry
                .fields
                .get("seats")
                .map(|s| decode_wanted(s))
                .unwrap_or_default();
            AreaQuantities::parse(&places).and_then(|areas| {
                let ids = hold_seat_ids(&seats, max_seats, &areas)?;
                Ok((ids, areas))
            })
        };
        let request_id = SeatRequestId {
            event_id,
            uuid: uuid.clone(),
        }
        .id();
        let (wanted, refused) = match wanted {
            Ok(wanted) => (Some(wanted), None),
            Err(err) => (None, Some(err)),
        };
        let request = Self {
            entry_id: entry.id.clone(),
            uuid,
            request_id,
            user,
            wanted,
        };
        (request, refused)
    }

    /// What this request competes for with others; nothing if it cannot be held at all.
    fn contested(&self) -> Vec<Contested<'_>> {
        let Some((seats, areas)) = &self.wanted else {
            return Vec::new();
        };
        let seats = seats.as_slice().iter().map(|id| Contested::Seat(*id));
        let areas = areas.as_slice().iter().map(|(id, _)| Contested::Area(*id));
        seats
            .chain(areas)
            .chain([Contested::Buyer(&self.user.id)])
            .collect()
    }

    fn answer(&self, outcome: &Result<HoldView, AppError>) -> Answer<'_> {
        let (status, hold_id, error) = match outcome {
            Ok(hold) => ("DONE", hold.id.clone(), None),
            Err(err) => {
                if let AppError::Internal(cause) = err {
                    tracing::error!(%cause, request.id = %self.request_id, "a queued seat request failed");
                }
                ("FAILED", String::new(), Some((err.code(), err.to_string())))
            }
        };
        Answer {
            entry_id: &self.entry_id,
            request_uuid: &self.uuid,
            request_id: self.request_id.clone(),
            status,
            hold_id,
            error,
        }
    }
}

/// The next wave of a chunk: of the `waiting` requests (in queue order), each that competes
/// for nothing an earlier waiting one competes for. Run together, they answer as they would
/// one after another; the first waiting request is always in it.
fn next_wave(requests: &[Queued], waiting: &[usize]) -> Vec<usize> {
    let mut claimed: HashSet<Contested<'_>> = HashSet::new();
    let mut wave = Vec::new();
    for &i in waiting {
        let contested = requests[i].contested();
        if contested.iter().all(|c| !claimed.contains(c)) {
            wave.push(i);
        }
        claimed.extend(contested);
    }
    wave
}
