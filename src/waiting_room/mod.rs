//! Per-event waiting rooms and queued booking.
//!
//! **Waiting room.** While an event's room is on, holds for it need an *admission*: a
//! short-lived token scoped to the user and the event. People get one by joining the queue
//! (`joinQueue`) and waiting their turn:
//! - Whoever joins before the opening time enters a *lobby* and draws a secret random
//!   number. At the opening the lobby is frozen and ordered by those numbers: the lottery.
//!   Refreshing early buys nothing, and joining twice returns the same ticket.
//! - After the opening, newcomers queue strictly by arrival.
//! - Admission is paced once for all instances: every instance runs a pacing step each tick,
//!   but the steps share one credit counter in Redis driven by Redis time, so the room lets in
//!   `admitPerSecond` people per second however many instances run.
//! - An admission lasts `admissionTtlSecs`. Whoever does not use it in time loses the turn;
//!   pacing goes on, so the next people are let in regardless.
//!
//! **Queued booking.** `requestSeats` puts a request on the event's Redis stream and answers
//! at once. One worker per event (whoever holds the event's lease, on any instance) takes the
//! requests strictly in arrival order and answers each with exactly what `holdSeats` gives.
//! A worker that dies leaves its request pending; the next lease holder takes it over and
//! runs it again with the same idempotency key, so it is never applied twice.
//!
//! All queue state lives in Redis and the settings in the database: a restarted instance
//! picks up where the room was. Without Redis a room cannot be switched on; if Redis is lost,
//! rooms fail closed: nobody new is let in and joins answer `RETRY_LATER`. If Redis comes back
//! without its data, each room starts a new *epoch* (see `lua/prelude.lua`): tickets and
//! admissions carry the one they were issued in, so nothing from before counts, and the
//! counters start again with the queue.

mod config;
mod notify;
mod pacer;
mod requests;
mod standing;
mod store;
mod tokens;
mod worker;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::redis_client::{RedisConn, RedisTarget};
use tokio::sync::{broadcast, watch};
use tracing::instrument;

use crate::auth::User;
use crate::booking::BookingService;
use crate::booking::admission::AdmissionPolicy;
use crate::domain::clock::now_ms;
use crate::error::AppError;
pub use config::{RoomConfig, RoomSettings};
pub use requests::{SeatRequestStatus, SeatRequestView};
pub use standing::Standing;
use store::{RoomKeys, RoomSnapshot, Store};
use tokens::{AdmissionRefusal, Tokens};

/// The HTTP header carrying an admission.
pub const ADMISSION_HEADER: &str = "x-admission-token";

/// The admission token a request came with (the `x-admission-token` header), attached to
/// each GraphQL request next to the caller.
#[derive(Clone, Debug, Default)]
pub struct AdmissionToken(pub Option<String>);

/// A room's settings and, when Redis answers, its live counters.
#[derive(Clone, Debug)]
pub struct RoomView {
    pub config: RoomConfig,
    pub live: Option<RoomLive>,
}

/// A room's live counters.
#[derive(Clone, Copy, Debug)]
pub struct RoomLive {
    /// The lottery has been drawn and admissions run.
    pub open: bool,
    /// Tickets handed out (lobby and queue).
    pub joined: i64,
    /// People let in so far.
    pub admitted: i64,
}

/// A ticket as `joinQueue` answers it.
#[derive(Clone, Debug)]
pub struct TicketView {
    pub id: String,
    pub event_id: i64,
    pub opens_at_ms: i64,
    pub standing: Standing,
    /// Present while the admission is valid.
    pub admission_token: Option<String>,
}

/// One `queueStatus` update.
#[derive(Clone, Debug)]
pub struct QueueStatusView {
    pub ticket_id: String,
    pub standing: Standing,
    pub admission_token: Option<String>,
}

/// The waiting-room service; cheap to clone.
#[derive(Clone)]
pub struct WaitingRoomService {
    inner: Arc<Inner>,
}

struct Inner {
    booking: BookingService,
    rooms: config::RoomCache,
    tokens: Tokens,
    store: Option<Arc<Store>>,
    redis: Option<RedisTarget>,
    /// Per event: the room as this instance's last pacing step saw it.
    snapshots: Mutex<HashMap<i64, watch::Sender<Option<RoomSnapshot>>>>,
    /// Notices from every instance (`work <event>:<key>`, `done <request id>`).
    notices: broadcast::Sender<Arc<str>>,
    /// This instance's name as a worker (lease owner and stream consumer).
    instance: OnceLock<String>,
    /// Events whose requests this instance is working.
    working: Mutex<HashSet<i64>>,
    /// How long a worker stalls between taking a request and applying it (tests only).
    worker_pause: OnceLock<Duration>,
}

impl WaitingRoomService {
    /// The service, with its own Redis connection when `redis` is set; without it, rooms
    /// cannot be switched on. `namespace` is the deployment's Redis namespace.
    pub async fn connect(
        booking: BookingService,
        redis: Option<RedisTarget>,
        namespace: &str,
        jwt_secret: &str,
    ) -> Result<Self, redis::RedisError> {
        let conn = match &redis {
            Some(target) => Some(store::connect(target).await?),
            None => None,
        };
        Ok(Self::new(booking, conn, redis, namespace, jwt_secret))
    }

    /// The service on a given connection; `conn` (and its target) absent means rooms cannot
    /// be switched on.
    pub fn new(
        booking: BookingService,
        conn: Option<RedisConn>,
        redis: Option<RedisTarget>,
        namespace: &str,
        jwt_secret: &str,
    ) -> Self {
        let store = conn.map(|conn| Arc::new(Store::new(conn)));
        let announcer = store
            .clone()
            .map(|store| config::Announcer::new(store, namespace));
        let rooms = config::RoomCache::new(booking.db().clone(), announcer);
        let (notices, _) = broadcast::channel(4_096);
        Self {
            inner: Arc::new(Inner {
                booking,
                rooms,
                tokens: Tokens::new(jwt_secret),
                store,
                redis,
                snapshots: Mutex::default(),
                notices,
                instance: OnceLock::new(),
                working: Mutex::default(),
                worker_pause: OnceLock::new(),
            }),
        }
    }

    /// Starts the background work (pacing, the request workers and the notice listener)
    /// until `shutdown` turns true. Does nothing without Redis. `worker_pause`
    /// (`QUEUE_WORKER_PAUSE_MS`, tests only): how long a request worker stalls between taking
    /// a request and applying it.
    pub fn start(&self, addr: SocketAddr, worker_pause: Duration, shutdown: watch::Receiver<bool>) {
        let name = format!("{addr}/{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let _ = self.inner.instance.set(name);
        let _ = self.inner.worker_pause.set(worker_pause);
        if self.inner.store.is_none() {
            return;
        }
        if let Some(target) = self.inner.redis.clone() {
            tokio::spawn(notify::listen(
                target,
                self.inner.notices.clone(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(self.clone().run_pacer(shutdown.clone()));
        tokio::spawn(self.clone().run_dispatcher(shutdown));
    }

    fn store(&self) -> Result<&Store, AppError> {
        self.inner.store.as_deref().ok_or_else(Store::unavailable)
    }

    fn instance(&self) -> &str {
        self.inner
            .instance
            .get()
            .map_or("not-started", String::as_str)
    }

    /// Switches an event's room on or off and sets its pace (admin only).
    #[instrument(skip_all, fields(event.id = event_id, user.id = %admin.id), err(level = "debug"))]
    pub async fn configure(
        &self,
        admin: &User,
        event_id: i64,
        settings: RoomSettings,
    ) -> Result<RoomView, AppError> {
        if !admin.admin {
            return Err(AppError::Forbidden(
                "configuring a waiting room needs an admin token".into(),
            ));
        }
        if settings.enabled && self.inner.store.is_none() {
            return Err(AppError::BadInput(
                "a waiting room needs Redis, which keeps the queue for all instances: \
                 this server runs without REDIS_URL"
                    .into(),
            ));
        }
        let config = self.inner.rooms.configure(event_id, &settings).await?;
        tracing::info!(
            event.id = event_id,
            enabled = config.enabled,
            opens_at_ms = config.opens_at_ms,
            admit_per_sec = config.admit_per_sec,
            admission_ttl_secs = config.admission_ttl_secs,
            "waiting room configured"
        );
        Ok(self.room_view(config).await)
    }

    /// An event's room (admin only); `None` if it was never configured.
    #[instrument(skip_all, fields(event.id = event_id), err(level = "debug"))]
    pub async fn room(&self, admin: &User, event_id: i64) -> Result<Option<RoomView>, AppError> {
        if !admin.admin {
            return Err(AppError::Forbidden(
                "reading a waiting room needs an admin token".into(),
            ));
        }
        match self.inner.rooms.get(event_id).await? {
            Some(config) => Ok(Some(self.room_view(config).await)),
            None => Ok(None),
        }
    }

    async fn room_view(&self, config: RoomConfig) -> RoomView {
        let live = match &self.inner.store {
            Some(store) => store
                .snapshot(&RoomKeys::new(&config.queue_key))
                .await
                .ok()
                .map(|s| RoomLive {
                    open: s.opened,
                    joined: if s.opened { s.tail } else { s.lobby_joined },
                    admitted: s.admitted_upto,
                }),
            None => None,
        };
        RoomView { config, live }
    }

    /// The event's room if it is switched on; `BAD_USER_INPUT` otherwise.
    async fn open_room(&self, event_id: i64) -> Result<RoomConfig, AppError> {
        match self.inner.rooms.get(event_id).await? {
            Some(room) if room.enabled => Ok(room),
            Some(_) => Err(AppError::BadInput(format!(
                "event {event_id} has no waiting room switched on: hold seats directly"
            ))),
            None => {
                self.inner.rooms.require_event(event_id).await?;
                Err(AppError::BadInput(format!(
                    "event {event_id} has no waiting room: hold seats directly"
                )))
            }
        }
    }

    /// Joins the event's queue, or returns the ticket the caller already has. A ticket whose
    /// admission ran out unused is replaced by a new one at the back.
    #[instrument(skip_all, fields(event.id = event_id, user.id = %user.id), err(level = "debug"))]
    pub async fn join(&self, user: &User, event_id: i64) -> Result<TicketView, AppError> {
        let room = self.open_room(event_id).await?;
        let store = self.store()?;
        let keys = RoomKeys::new(&room.queue_key);
        let state = store
            .join(&keys, &user.id, room.opens_at_ms, room.admission_ttl_ms())
            .await?;
        metrics::counter!("onsale_waiting_room_joins_total").increment(1);
        let standing = standing::standing(&state, &room);
        let admission_token =
            self.admission_token(&room, &user.id, &state.tk, state.epoch, &standing)?;
        Ok(TicketView {
            id: self
                .inner
                .tokens
                .ticket(event_id, &user.id, &state.tk, state.epoch)?,
            event_id,
            opens_at_ms: room.opens_at_ms,
            standing,
            admission_token,
        })
    }

    fn admission_token(
        &self,
        room: &RoomConfig,
        user_id: &str,
        tk: &str,
        epoch: i64,
        standing: &Standing,
    ) -> Result<Option<String>, AppError> {
        match standing.admission_until_ms {
            Some(until) if standing.admitted && !standing.lapsed => self
                .inner
                .tokens
                .admission(room.event_id, user_id, tk, epoch, until)
                .map(Some),
            _ => Ok(None),
        }
    }

    /// The rule in front of every hold (and queued request): while the event's room is on,
    /// the caller must bring a valid admission for this event, issued in the room's current
    /// epoch. `FORBIDDEN` otherwise, saying why; `RETRY_LATER` if Redis cannot tell the epoch.
    #[instrument(skip_all, fields(event.id = event_id, user.id = %user.id), err(level = "debug"))]
    pub async fn require_admission(
        &self,
        user: &User,
        event_id: i64,
        token: Option<&str>,
    ) -> Result<(), AppError> {
        let Some(room) = self.inner.rooms.get(event_id).await? else {
            return Ok(());
        };
        if !room.enabled {
            return Ok(());
        }
        let down = if self.inner.store.as_ref().is_none_or(|s| !s.healthy()) {
            " The waiting room is unavailable right now, so nobody new is let in; try again later."
        } else {
            ""
        };
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            metrics::counter!("onsale_waiting_room_refusals_total", "why" => "missing")
                .increment(1);
            return Err(AppError::Forbidden(format!(
                "event {event_id} has a waiting room: join the queue with joinQueue and, once \
                 admitted, send your admission token in the {ADMISSION_HEADER} header.{down}"
            )));
        };
        match self
            .inner
            .tokens
            .verify_admission(token, event_id, &user.id, now_ms())
        {
            Ok(admission) => self.require_current_epoch(&room, admission.epoch).await,
            Err(refusal) => {
                let (why, message) = match refusal {
                    AdmissionRefusal::Invalid => (
                        "invalid",
                        format!(
                            "the admission token is not valid: join the queue for event {event_id} with joinQueue.{down}"
                        ),
                    ),
                    AdmissionRefusal::OtherEventOrUser => (
                        "other",
                        format!(
                            "this admission token was issued for another event or user, not for you at event {event_id}.{down}"
                        ),
                    ),
                    AdmissionRefusal::Expired { until_ms } => (
                        "expired",
                        format!(
                            "your admission to event {event_id} expired at {}: your turn has passed; join the queue again.{down}",
                            chrono::DateTime::from_timestamp_millis(until_ms)
                                .map_or_else(|| until_ms.to_string(), |t| t.to_rfc3339())
                        ),
                    ),
                };
                metrics::counter!("onsale_waiting_room_refusals_total", "why" => why).increment(1);
                Err(AppError::Forbidden(message))
            }
        }
    }

    /// An admission counts only in the epoch it was issued in: once Redis has lost the room's
    /// state, admissions from before are refused, so the room's `admitted` counter (which
    /// starts again with the new epoch) is exactly the admissions that work. Without Redis
    /// nobody can tell, so nobody is let in.
    async fn require_current_epoch(
        &self,
        room: &RoomConfig,
        epoch: Option<i64>,
    ) -> Result<(), AppError> {
        let current = self.store()?.epoch(&RoomKeys::new(&room.queue_key)).await?;
        if current.is_some() && current == epoch {
            return Ok(());
        }
        metrics::counter!("onsale_waiting_room_refusals_total", "why" => "epoch").increment(1);
        Err(AppError::Forbidden(format!(
            "your admission to event {} was issued before the waiting room lost its queue and \
             started again, so it no longer counts: join the queue again with joinQueue.",
            room.event_id
        )))
    }

    /// The snapshot channel of an event's room (made on first use).
    fn watch_room(&self, event_id: i64) -> watch::Receiver<Option<RoomSnapshot>> {
        let mut snapshots = self
            .inner
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        snapshots
            .entry(event_id)
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }
}

/// The booking rules ask the waiting room before every hold.
#[async_trait::async_trait]
impl AdmissionPolicy for WaitingRoomService {
    async fn admit(&self, user: &User, event_id: i64, token: Option<&str>) -> Result<(), AppError> {
        self.require_admission(user, event_id, token).await
    }
}
