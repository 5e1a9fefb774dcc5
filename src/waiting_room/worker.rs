//! The request workers. Each instance runs a dispatcher that looks for events with queued
//! requests and tries to take their lease; whoever holds an event's lease works its stream
//! alone, oldest first:
//! 1. entries pending with it (taken over from a worker that died, or its own unanswered);
//! 2. then new entries, in stream (arrival) order.
//!
//! It answers each exactly as running them one after another in queue order would, without
//! running them one at a time: requests that compete for nothing (no seat, no area, no buyer
//! in common) decide the same whichever goes first. So it keeps a window of up to [`WINDOW`]
//! taken requests and starts each as soon as no earlier unanswered request competes with it;
//! the running ones share the writer slots (and the event's batches, `crate::db::group`). A
//! request that competes with an earlier one waits until that one is answered.
//!
//! Each request runs `hold_seats` with the request id as its idempotency key, so running it
//! again after a crash returns the hold the first run made instead of making another. The
//! answers of the window's answered head are recorded, in queue order, and their entries
//! acknowledged in one script that checks the lease first (and takes the next requests): a
//! worker that lost its lease writes nothing, and the new holder answers instead.
//!
//! A lease can run out while its holder is paused (a long GC-like stall, a slow statement)
//! without the holder noticing. So each taking of the lease draws a fencing token that only
//! increases, the hold's transaction passes the event's fence in the database with it, and
//! the answer script checks it too: a holder whose token is older than the newest one seen
//! neither applies its request nor answers it (`crate::db::fence`).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
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
/// Most requests a worker has taken and not yet answered.
const WINDOW: usize = 64;
/// How often a worker waiting for its requests renews its lease (and looks for more).
const RENEW_EVERY: Duration = Duration::from_millis(500);

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

    /// Works one event's requests while this instance holds its lease, taken with `token`:
    /// keeps up to [`WINDOW`] of them taken, starts each as soon as no earlier unanswered
    /// request competes with it, and records the answers of the answered head of the window
    /// in queue order (the same call takes the next requests and renews the lease).
    #[tracing::instrument(skip_all, fields(event.id = room.event_id, token))]
    async fn work(&self, room: RoomConfig, token: i64, shutdown: watch::Receiver<bool>) {
        let keys = RoomKeys::new(&room.queue_key);
        let mut notices = self.inner.notices.subscribe();
        let work_notice = format!("work {}:{}", room.event_id, room.queue_key);
        let max_seats = self.inner.booking.settings().max_seats_per_hold;
        let pause = self.inner.worker_pause.get().copied().unwrap_or_default();
        let mut idle_since = Instant::now();
        let mut window: VecDeque<Slot> = VecDeque::new();
        let mut running = FuturesUnordered::new();
        // The newest entry taken: the next ones come after it.
        let mut taken_upto = String::from("0");
        let mut want_more = true;
        let run = |slot: usize, request: Arc<Queued>| {
            let (room, keys, shutdown) = (&room, &keys, &shutdown);
            async move {
                let outcome = self.hold_for(room, keys, token, &request, shutdown).await;
                (slot, outcome)
            }
        };
        let mut next_slot = 0usize;
        loop {
            let Ok(store) = self.store() else { return };
            let stopping = *shutdown.borrow();
            // 1. Record the answered head of the window; take more while there is room.
            let answered = window
                .iter()
                .take_while(|slot| matches!(slot.state, State::Done(_)))
                .count();
            let room_left = if stopping {
                0
            } else {
                WINDOW - (window.len() - answered)
            };
            if answered > 0 || (want_more && room_left > 0) {
                let answers: Vec<Answer<'_>> = window
                    .iter()
                    .take(answered)
                    .filter_map(|slot| match &slot.state {
                        State::Done(outcome) => Some(slot.request.answer(outcome)),
                        _ => None,
                    })
                    .collect();
                let next = store
                    .complete(
                        &keys,
                        (self.instance(), token),
                        LEASE_MS,
                        &answers,
                        (room_left, &taken_upto),
                    )
                    .await;
                let next = match next {
                    Ok(next) => next,
                    Err(err) => {
                        // Redis failed: the entries stay pending and are answered again.
                        tracing::debug!(error = %err, "cannot record answers; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                if matches!(next, Next::Lost) {
                    metrics::counter!("onsale_leases_lost_total", "lease" => "queue").increment(1);
                    tracing::warn!(
                        "lost the lease of the request queue; another instance takes over"
                    );
                    return;
                }
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
                drop(answers);
                window.drain(..answered);
                want_more = false;
                if let Next::Entries(entries) = next {
                    idle_since = Instant::now();
                    want_more = entries.len() == room_left;
                    if !pause.is_zero() {
                        // QUEUE_WORKER_PAUSE_MS (tests): a stall past the lease, between
                        // taking requests and applying them.
                        tracing::warn!(?pause, entry = %entries[0].id, "pausing before applying the requests");
                        tokio::time::sleep(pause).await;
                    }
                    for entry in &entries {
                        let (request, refused) = Queued::read(room.event_id, entry, max_seats);
                        window.push_back(Slot {
                            id: next_slot,
                            request: Arc::new(request),
                            state: refused.map_or(State::Waiting, |err| State::Done(Err(err))),
                        });
                        next_slot += 1;
                    }
                    if let Some(last) = entries.last() {
                        taken_upto.clone_from(&last.id);
                    }
                }
                tracing::debug!(
                    answered,
                    in_window = window.len(),
                    running = running.len(),
                    "request window moved"
                );
            }
            // 2. Start every request that competes with no earlier unanswered one.
            if !stopping {
                for slot in start_ready(&mut window) {
                    running.push(run(slot.0, slot.1));
                }
            }
            // 3. Nothing taken: stop, let go, or wait for work.
            if window.is_empty() {
                if stopping {
                    let _ = store.release(&keys, self.instance()).await;
                    tracing::info!("stopping: let the request queue go");
                    return;
                }
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
                want_more = true;
                continue;
            }
            if stopping && running.is_empty() {
                // What is left was not answered: pending for the next holder.
                let _ = store.release(&keys, self.instance()).await;
                tracing::info!("stopping: let the request queue go");
                return;
            }
            // 4. Wait for an answer, new work, or a moment (then the lease is renewed).
            tokio::select! {
                Some((id, outcome)) = running.next() => {
                    let Some(slot) = window.iter_mut().find(|slot| slot.id == id) else {
                        continue;
                    };
                    match outcome {
                        Some(Err(AppError::LeaseLost(_))) => {
                            metrics::counter!("onsale_leases_lost_total", "lease" => "queue")
                                .increment(1);
                            self.fenced_out(&room, &keys, token).await;
                            return;
                        }
                        Some(outcome) => slot.state = State::Done(outcome),
                        // Stopping, or the lease is gone (the next recording says which).
                        None => {
                            slot.state = State::Abandoned;
                            want_more = true;
                        }
                    }
                }
                notice = notices.recv() => {
                    if matches!(&notice, Ok(n) if **n == *work_notice) || notice.is_err() {
                        want_more = true;
                    }
                }
                () = tokio::time::sleep(RENEW_EVERY) => want_more = true,
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

/// A request the worker has taken, until its answer is recorded.
struct Slot {
    id: usize,
    request: Arc<Queued>,
    state: State,
}

enum State {
    Waiting,
    Running,
    Done(Result<HoldView, AppError>),
    /// Given up without an answer (stopping, or the lease is gone): left pending.
    Abandoned,
}

/// Marks running, and returns, every waiting request of the window (in queue order) that
/// competes for nothing an earlier unanswered one competes for. An answered request's
/// transaction has ended, so a later one that competes with it may run; run together, the
/// started ones answer as they would one after another.
fn start_ready(window: &mut VecDeque<Slot>) -> Vec<(usize, Arc<Queued>)> {
    let mut claimed: HashSet<Contested> = HashSet::new();
    let mut ready = Vec::new();
    for slot in window.iter_mut() {
        if matches!(slot.state, State::Done(_)) {
            continue;
        }
        let contested = slot.request.contested();
        if matches!(slot.state, State::Waiting) && contested.iter().all(|c| !claimed.contains(c)) {
            slot.state = State::Running;
            ready.push((slot.id, slot.request.clone()));
        }
        claimed.extend(contested);
    }
    ready
}
