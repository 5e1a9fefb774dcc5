//! The seat gate in front of the database. It only saves work; it never decides alone: the
//! row locks and unique indexes in the database stay the last word.
//!
//! Two checks run before a hold touches the database:
//! 1. *Known taken*: seats the change stream has shown HELD (and not yet run out) or BOOKED
//!    are refused at once, without any round trip. The knowledge may be stale by a moment;
//!    entries are trusted for [`KNOWN_TTL_MS`] at most, so a stale "taken" is rare and brief.
//! 2. *Claim*: the requested seats are claimed all-or-nothing for a few seconds — in Redis
//!    (`SET NX PX` semantics in one Lua script, released by its owner only with a
//!    compare-and-delete script) when `REDIS_URL` is set, or in-process otherwise — so that of
//!    a thousand simultaneous requests for one seat only the first reaches the database.
//!
//! 3. *Sold out*: general-admission areas the area-change stream (or the database's last
//!    refusal) showed with no place left are refused at once ([`sold_out`]).
//!
//! A circuit breaker bypasses the Redis claim while Redis errors or is slow, and tries again
//! after a cool-down: a dead Redis never fails a booking.

mod sold_out;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::domain::clock::now_ms;
use crate::domain::status::{SeatStatus, live_seat_status};
use crate::error::AppError;
use crate::realtime::{SeatChange, SeatChangeBus};
use crate::redis_client::RedisConn;
use sold_out::SoldOut;

/// How long a claim lives if its owner never releases it (a crashed instance).
pub const CLAIM_TTL_MS: i64 = 5_000;
/// How long knowledge from the change stream is trusted.
pub const KNOWN_TTL_MS: i64 = 30_000;
/// Longest a Redis gate call may take before the breaker opens.
/// Generous enough for a burst of a thousand claims on a saturated machine, which is not a
/// failing Redis; a dead Redis costs this once before the breaker opens.
const REDIS_TIMEOUT: Duration = Duration::from_millis(300);
/// How long the breaker stays open before Redis is tried again.
const COOL_DOWN_MS: i64 = 5_000;

/// Claims seat keys all-or-nothing for a token, with a TTL.
const ACQUIRE_LUA: &str = include_str!("acquire.lua");
/// Releases the seat keys a token still owns (compare-and-delete).
const RELEASE_LUA: &str = include_str!("release.lua");

/// A claim on some seats. It is let go when dropped — once the database has decided, or when
/// the request is cut short (a timeout, a client gone) — so it never outlives its request.
#[must_use = "keep the claim until the database has decided"]
pub struct Claim {
    event_id: i64,
    seat_ids: Vec<i64>,
    token: String,
    /// `None` when the gate was bypassed (off, or the breaker open): nothing to release.
    gate: Option<Arc<GateInner>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(inner) = self.gate.take() {
            inner.release(
                self.event_id,
                std::mem::take(&mut self.seat_ids),
                std::mem::take(&mut self.token),
            );
        }
    }
}

#[derive(Clone, Copy)]
struct Known {
    status: SeatStatus,
    hold_expires_at_ms: Option<i64>,
    seen_at_ms: i64,
}

/// In-process claims: (event, seat) → (owner token, claimed until, ms).
type LocalClaims = Mutex<HashMap<(i64, i64), (String, i64)>>;

enum ClaimStore {
    /// A connection and the deployment's key namespace.
    Redis(RedisConn, String),
    Local(LocalClaims),
}

/// The gate; cheap to clone.
#[derive(Clone)]
pub struct SeatGate {
    inner: Option<Arc<GateInner>>,
}

struct GateInner {
    store: ClaimStore,
    known: Mutex<HashMap<(i64, i64), Known>>,
    sold_out: SoldOut,
    breaker_open_until: AtomicI64,
    breaker_logged: AtomicBool,
}

impl SeatGate {
    /// No gate: every request goes to the database (`SEAT_GATE=off`).
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// A gate claiming in Redis (if given) or in-process, learning from `bus`.
    pub fn new(redis: Option<(RedisConn, String)>, bus: &Arc<dyn SeatChangeBus>) -> Self {
        let store = match redis {
            Some((conn, namespace)) => ClaimStore::Redis(conn, namespace),
            None => ClaimStore::Local(Mutex::default()),
        };
        let inner = Arc::new(GateInner {
            store,
            known: Mutex::default(),
            sold_out: SoldOut::default(),
            breaker_open_until: AtomicI64::new(0),
            breaker_logged: AtomicBool::new(false),
        });
        let mut changes = bus.subscribe_all();
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(change) => match weak.upgrade() {
                        Some(inner) => inner.learn(&change),
                        None => return,
                    },
                    // Missed some: forget everything rather than trust a gap.
                    Err(RecvError::Lagged(_)) => match weak.upgrade() {
                        Some(inner) => inner.lock_known().clear(),
                        None => return,
                    },
                    Err(RecvError::Closed) => return,
                }
            }
        });
        let mut areas = bus.subscribe_all_areas();
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                match areas.recv().await {
                    Ok(c) => match weak.upgrade() {
                        Some(inner) => {
                            inner
                                .sold_out
                                .learn(c.area_id, c.version, c.available, now_ms());
                        }
                        None => return,
                    },
                    Err(RecvError::Lagged(_)) => match weak.upgrade() {
                        Some(inner) => inner.sold_out.clear(),
                        None => return,
                    },
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Self { inner: Some(inner) }
    }

    /// Refuses, without a database round trip, a hold asking for places of an area known to
    /// have none left (`SEAT_UNAVAILABLE` naming those areas).
    pub fn refuse_sold_out(&self, area_ids: impl IntoIterator<Item = i64>) -> Result<(), AppError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let refused = inner.sold_out.refused(area_ids, now_ms());
        if refused.is_empty() {
            return Ok(());
        }
        metrics::counter!("onsale_seat_gate_rejections_total", "why" => "sold_out").increment(1);
        Err(AppError::area_unavailable(refused))
    }

    /// The database found no place left in an area at `version` (under its lock).
    pub fn saw_sold_out(&self, area_id: i64, version: i64) {
        if let Some(inner) = &self.inner {
            inner.sold_out.learn(area_id, version, 0, now_ms());
        }
    }

    /// Refuses seats known taken, then claims the rest all-or-nothing. `twin` identifies a
    /// retryable request (user, operation and idempotency key): a twin of a request still in
    /// flight is let through unclaimed, so the database serialises the two and the retry gets
    /// the first one's result instead of a "taken".
    pub async fn admit(
        &self,
        event_id: i64,
        seat_ids: &[i64],
        twin: Option<&str>,
    ) -> Result<Claim, AppError> {
        let bypass = Claim {
            event_id,
            seat_ids: Vec::new(),
            token: String::new(),
            gate: None,
        };
        let Some(inner) = &self.inner else {
            return Ok(bypass);
        };
        let now = now_ms();
        let taken = inner.known_taken(event_id, seat_ids, now);
        if !taken.is_empty() {
            metrics::counter!("onsale_seat_gate_rejections_total", "why" => "known").increment(1);
            return Err(AppError::seat_unavailable(taken));
        }
        let token = format!("{}|{}", twin.unwrap_or("-"), uuid::Uuid::new_v4());
        let claimed = match &inner.store {
            ClaimStore::Local(claims) => Ok(local_acquire(claims, event_id, seat_ids, &token, now)),
            ClaimStore::Redis(conn, namespace) => {
                if inner.breaker_open_until.load(Ordering::Relaxed) > now {
                    return Ok(bypass);
                }
                redis_acquire(
                    conn.clone(),
                    &keys(namespace, event_id, seat_ids),
                    seat_ids,
                    &token,
                )
                .await
            }
        };
        match claimed {
            Ok(None) => {
                inner.close_breaker();
                Ok(Claim {
                    event_id,
                    seat_ids: seat_ids.to_vec(),
                    token,
                    gate: Some(inner.clone()),
                })
            }
            Ok(Some((_, owner)))
                if twin.is_some_and(|t| owner.rsplit_once('|').map(|(f, _)| f) == Some(t)) =>
            {
                Ok(bypass)
            }
            Ok(Some((busy_seat, _))) => {
                metrics::counter!("onsale_seat_gate_rejections_total", "why" => "claimed")
                    .increment(1);
                Err(AppError::SeatUnavailable {
                    seat_ids: vec![busy_seat],
                    message: format!("seat {busy_seat} is being taken by someone else right now"),
                })
            }
            Err(err) => {
                inner.open_breaker(&err);
                Ok(bypass)
            }
        }
    }

    /// Whether the Redis claim is currently bypassed.
    pub fn breaker_open(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.breaker_open_until.load(Ordering::Relaxed) > now_ms())
    }
}

impl GateInner {
    /// Lets a claim's seats go (only its own keys). Never waits on Redis: the claim's TTL
    /// covers a release that fails.
    fn release(&self, event_id: i64, seat_ids: Vec<i64>, token: String) {
        match &self.store {
            ClaimStore::Local(claims) => {
                let mut claims = claims.lock().unwrap_or_else(PoisonError::into_inner);
                for seat in &seat_ids {
                    if claims
                        .get(&(event_id, *seat))
                        .is_some_and(|(owner, _)| *owner == token)
                    {
                        claims.remove(&(event_id, *seat));
                    }
                }
            }
            ClaimStore::Redis(conn, namespace) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                let mut conn = conn.clone();
                let keys = keys(namespace, event_id, &seat_ids);
                runtime.spawn(async move {
                    let script = redis::Script::new(RELEASE_LUA);
                    let mut call = script.prepare_invoke();
                    for key in &keys {
                        call.key(key);
                    }
                    call.arg(&token);
                    let _ =
                        tokio::time::timeout(REDIS_TIMEOUT, call.invoke_async::<i64>(&mut conn))
                            .await;
                });
            }
        }
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, HashMap<(i64, i64), Known>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn learn(&self, change: &SeatChange) {
        let mut known = self.lock_known();
        if known.len() > 1_000_000 {
            known.clear();
        }
        known.insert(
            (change.event_id, change.seat_id),
            Known {
                status: change.status,
                hold_expires_at_ms: change.hold_expires_at_ms,
                seen_at_ms: now_ms(),
            },
        );
    }

    fn known_taken(&self, event_id: i64, seat_ids: &[i64], now: i64) -> Vec<i64> {
        let known = self.lock_known();
        seat_ids
            .iter()
            .copied()
            .filter(|seat| {
                known.get(&(event_id, *seat)).is_some_and(|k| {
                    now - k.seen_at_ms < KNOWN_TTL_MS
                        && live_seat_status(k.status, k.hold_expires_at_ms, now)
                            != SeatStatus::Available
                })
            })
            .collect()
    }

    fn open_breaker(&self, err: &str) {
        self.breaker_open_until
            .store(now_ms() + COOL_DOWN_MS, Ordering::Relaxed);
        metrics::gauge!("onsale_seat_gate_breaker_open").set(1.0);
        if !self.breaker_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %err, "seat gate: Redis failed; bypassing the gate (the database still decides) and retrying after a cool-down");
        }
    }

    fn close_breaker(&self) {
        if self.breaker_logged.swap(false, Ordering::Relaxed) {
            metrics::gauge!("onsale_seat_gate_breaker_open").set(0.0);
            tracing::info!("seat gate: Redis is back; gate on again");
        }
    }
}

/// The claim keys of seats: `onsale:<namespace>:gate:{e<event>}:s<seat>`. Keys of one event
/// share a hash tag, so a multi-seat claim works on Redis Cluster too.
pub fn keys(namespace: &str, event_id: i64, seat_ids: &[i64]) -> Vec<String> {
    seat_ids
        .iter()
        .map(|seat| format!("onsale:{namespace}:gate:{{e{event_id}}}:s{seat}"))
        .collect()
}

/// `Ok(None)`: claimed; `Ok(Some((seat, owner)))`: that seat is claimed by `owner`'s token.
async fn redis_acquire(
    mut conn: RedisConn,
    keys: &[String],
    seat_ids: &[i64],
    token: &str,
) -> Result<Option<(i64, String)>, String> {
    let script = redis::Script::new(ACQUIRE_LUA);
    let mut call = script.prepare_invoke();
    for key in keys {
        call.key(key);
    }
    call.arg(token).arg(CLAIM_TTL_MS);
    match tokio::time::timeout(REDIS_TIMEOUT, call.invoke_async::<(i64, String)>(&mut conn)).await {
        Ok(Ok((0, _))) => Ok(None),
        Ok(Ok((index, owner))) => Ok(usize::try_from(index - 1)
            .ok()
            .and_then(|i| seat_ids.get(i))
            .or(seat_ids.first())
            .map(|seat| (*seat, owner))),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

fn local_acquire(
    claims: &LocalClaims,
    event_id: i64,
    seat_ids: &[i64],
    token: &str,
    now: i64,
) -> Option<(i64, String)> {
    let mut claims = claims.lock().unwrap_or_else(PoisonError::into_inner);
    if claims.len() > 100_000 {
        claims.retain(|_, (_, until)| *until > now);
    }
    let busy = seat_ids.iter().find_map(|seat| {
        claims
            .get(&(event_id, *seat))
            .filter(|(_, until)| *until > now)
            .map(|(owner, _)| (*seat, owner.clone()))
    });
    if busy.is_some() {
        return busy;
    }
    for seat in seat_ids {
        claims.insert((event_id, *seat), (token.to_owned(), now + CLAIM_TTL_MS));
    }
    None
}
