//! A waiting room's settings: stored in the database (the source of truth, which survives a
//! lost Redis), cached per process for a second so that holds do not pay a query each.
//!
//! A change must reach every instance before the mutation that made it returns (a room
//! switched on must refuse unadmitted holds everywhere at once). So every change also sets a
//! new *settings version* in Redis, and a look-up reads it (one `GET`) and trusts a cached
//! room only if it was read from the database under that same version. While Redis cannot
//! be asked, look-ups read the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};

use super::store::{Store, settings_key};
use crate::db::Db;
use crate::domain::clock::now_ms;
use crate::error::AppError;
use entity::{event, waiting_room};

/// How long a cached room setting is trusted at most, even under an unchanged version (a
/// change whose announcement failed is seen within this).
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// Defaults of a room that was never configured (a row is made for queued booking).
const DEFAULT_ADMIT_PER_SEC: i32 = 10;
const DEFAULT_ADMISSION_TTL_SECS: i32 = 300;

/// A room's settings as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomConfig {
    pub event_id: i64,
    /// Names the event's queue state in Redis.
    pub queue_key: String,
    pub enabled: bool,
    pub opens_at_ms: i64,
    pub admit_per_sec: u32,
    pub admission_ttl_secs: u32,
}

impl RoomConfig {
    fn of(model: waiting_room::Model) -> Self {
        Self {
            event_id: model.event_id,
            queue_key: model.queue_key,
            enabled: model.enabled,
            opens_at_ms: model.opens_at_ms,
            admit_per_sec: u32::try_from(model.admit_per_sec.max(1)).unwrap_or(1),
            admission_ttl_secs: u32::try_from(model.admission_ttl_secs.max(1)).unwrap_or(1),
        }
    }

    pub fn admission_ttl_ms(&self) -> i64 {
        i64::from(self.admission_ttl_secs) * 1000
    }
}

/// Settings an admin asks for, checked once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSettings {
    pub enabled: bool,
    /// `None`: open at once.
    pub opens_at_ms: Option<i64>,
    pub admit_per_sec: u32,
    pub admission_ttl_secs: u32,
}

impl RoomSettings {
    pub const MAX_ADMIT_PER_SEC: i32 = 100_000;
    pub const MAX_ADMISSION_TTL_SECS: i32 = 86_400;

    pub fn parse(
        enabled: bool,
        opens_at_ms: Option<i64>,
        admit_per_sec: i32,
        admission_ttl_secs: i32,
    ) -> Result<Self, AppError> {
        if !(1..=Self::MAX_ADMIT_PER_SEC).contains(&admit_per_sec) {
            return Err(AppError::BadInput(format!(
                "admitPerSecond must be between 1 and {}",
                Self::MAX_ADMIT_PER_SEC
            )));
        }
        if !(1..=Self::MAX_ADMISSION_TTL_SECS).contains(&admission_ttl_secs) {
            return Err(AppError::BadInput(format!(
                "admissionTtlSecs must be between 1 and {}",
                Self::MAX_ADMISSION_TTL_SECS
            )));
        }
        Ok(Self {
            enabled,
            opens_at_ms,
            admit_per_sec: admit_per_sec.unsigned_abs(),
            admission_ttl_secs: admission_ttl_secs.unsigned_abs(),
        })
    }
}

struct Cached {
    room: Option<RoomConfig>,
    /// When the database read began.
    at: Instant,
    /// The settings version read just before; `None` if Redis could not say (then it never
    /// matches one).
    version: Option<String>,
}

/// Where settings changes are announced: the waiting room's Redis and the key.
pub struct Announcer {
    store: Arc<Store>,
    key: String,
}

impl Announcer {
    pub fn new(store: Arc<Store>, namespace: &str) -> Self {
        Self {
            store,
            key: settings_key(namespace),
        }
    }

    /// The version now; `None` if Redis cannot say (it just failed, or fails now).
    async fn current(&self) -> Option<String> {
        if !self.store.healthy() {
            return None;
        }
        self.store.settings_version(&self.key).await.ok()
    }
}

/// Room settings by event, read through a short per-process cache.
pub struct RoomCache {
    db: Db,
    /// `None` without Redis: no room can be switched on, and the cache's age is its only
    /// bound, as before rooms were switched on anywhere.
    announcer: Option<Announcer>,
    rooms: Mutex<HashMap<i64, Cached>>,
    enabled: Mutex<Option<(Vec<RoomConfig>, Instant)>>,
    /// One database read per stale entry, however many requests find it stale at once.
    refresh: tokio::sync::Mutex<()>,
}

impl RoomCache {
    pub fn new(db: Db, announcer: Option<Announcer>) -> Self {
        Self {
            db,
            announcer,
            rooms: Mutex::default(),
            enabled: Mutex::default(),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// The cached room if it is recent and, with `version`, read under that version.
    fn cached(&self, event_id: i64, version: Option<&str>) -> Option<Option<RoomConfig>> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms
            .get(&event_id)
            .filter(|c| c.at.elapsed() < CACHE_TTL)
            .filter(|c| version.is_none_or(|v| c.version.as_deref() == Some(v)))
            .map(|c| c.room.clone())
    }

    /// The cached room if it was read from the database after `since`.
    fn read_since(&self, event_id: i64, since: Instant) -> Option<Option<RoomConfig>> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms
            .get(&event_id)
            .filter(|c| c.at >= since)
            .map(|c| c.room.clone())
    }

    /// The settings version now: empty without Redis, `None` if Redis cannot say.
    async fn version(&self) -> Option<String> {
        match &self.announcer {
            Some(announcer) => announcer.current().await,
            None => Some(String::new()),
        }
    }

    fn store(&self, event_id: i64, room: Option<RoomConfig>, at: Instant, version: Option<String>) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if rooms.len() > 100_000 {
            rooms.retain(|_, c| c.at.elapsed() < CACHE_TTL);
        }
        rooms.insert(event_id, Cached { room, at, version });
    }

    /// The event's room, if one was ever configured: as the database has it since the last
    /// change any instance announced (one Redis `GET`; the database itself while Redis
    /// cannot be asked).
    pub async fn get(&self, event_id: i64) -> Result<Option<RoomConfig>, AppError> {
        let arrived = Instant::now();
        let Some(version) = self.version().await else {
            // Only a database read begun after this request came will do; one at a time, so
            // a burst shares them.
            let _one = self.refresh.lock().await;
            if let Some(room) = self.read_since(event_id, arrived) {
                return Ok(room);
            }
            return self.fresh_under(event_id, None).await;
        };
        if let Some(room) = self.cached(event_id, Some(&version)) {
            return Ok(room);
        }
        let _one = self.refresh.lock().await;
        if let Some(room) = self.cached(event_id, Some(&version)) {
            return Ok(room);
        }
        self.fresh_under(event_id, Some(version)).await
    }

    /// [`Self::get`] without asking Redis: up to [`CACHE_TTL`] behind a change. For what only
    /// shows a room (a follower's estimates), never for what it lets in.
    pub async fn recent(&self, event_id: i64) -> Result<Option<RoomConfig>, AppError> {
        match self.cached(event_id, None) {
            Some(room) => Ok(room),
            None => self.get(event_id).await,
        }
    }

    /// The event's room row, made (switched off) if there is none yet; `NOT_FOUND` if the
    /// event does not exist.
    pub async fn ensure(&self, event_id: i64) -> Result<RoomConfig, AppError> {
        if let Some(room) = self.get(event_id).await? {
            return Ok(room);
        }
        self.require_event(event_id).await?;
        let now = now_ms();
        waiting_room::Entity::insert(waiting_room::ActiveModel {
            event_id: Set(event_id),
            queue_key: Set(uuid::Uuid::new_v4().simple().to_string()),
            enabled: Set(false),
            opens_at_ms: Set(0),
            admit_per_sec: Set(DEFAULT_ADMIT_PER_SEC),
            admission_ttl_secs: Set(DEFAULT_ADMISSION_TTL_SECS),
            created_at_ms: Set(now),
            updated_at_ms: Set(now),
        })
        .on_conflict_do_nothing_on([waiting_room::Column::EventId])
        .exec(&self.db.conn)
        .await?;
        self.fresh(event_id).await?.ok_or_else(|| {
            AppError::Internal(format!("the waiting room of event {event_id} vanished"))
        })
    }

    /// Stores new settings and returns the room as it now is.
    pub async fn configure(
        &self,
        event_id: i64,
        settings: &RoomSettings,
    ) -> Result<RoomConfig, AppError> {
        let existing = self.ensure(event_id).await?;
        let now = now_ms();
        waiting_room::Entity::update_many()
            .col_expr(
                waiting_room::Column::Enabled,
                sea_orm::sea_query::Expr::value(settings.enabled),
            )
            .col_expr(
                waiting_room::Column::OpensAtMs,
                sea_orm::sea_query::Expr::value(settings.opens_at_ms.unwrap_or(now)),
            )
            .col_expr(
                waiting_room::Column::AdmitPerSec,
                sea_orm::sea_query::Expr::value(
                    i32::try_from(settings.admit_per_sec).unwrap_or(i32::MAX),
                ),
            )
            .col_expr(
                waiting_room::Column::AdmissionTtlSecs,
                sea_orm::sea_query::Expr::value(
                    i32::try_from(settings.admission_ttl_secs).unwrap_or(i32::MAX),
                ),
            )
            .col_expr(
                waiting_room::Column::UpdatedAtMs,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(waiting_room::Column::EventId.eq(existing.event_id))
            .exec(&self.db.conn)
            .await?;
        *self.enabled.lock().unwrap_or_else(PoisonError::into_inner) = None;
        if let Some(announcer) = &self.announcer
            && let Err(err) = announcer.store.announce_settings(&announcer.key).await
        {
            // Switched off, the others keep asking for admissions a second longer at most
            // (or read the database, if Redis fails them too): that lets nobody in.
            if settings.enabled {
                return Err(AppError::retry_later(
                    1_000,
                    "the waiting room's settings are saved, but the other instances cannot be \
                     told at once (Redis cannot be reached): configure the room again once \
                     Redis answers",
                ));
            }
            tracing::warn!(event.id = event_id, error = %err, "a switched-off waiting room could not be announced");
        }
        self.fresh(event_id).await?.ok_or_else(|| {
            AppError::Internal(format!("the waiting room of event {event_id} vanished"))
        })
    }

    /// Rooms that are switched on (refreshed at most every [`CACHE_TTL`]).
    pub async fn enabled_rooms(&self) -> Result<Vec<RoomConfig>, AppError> {
        if let Some((rooms, at)) = &*self.enabled.lock().unwrap_or_else(PoisonError::into_inner)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(rooms.clone());
        }
        let rooms: Vec<RoomConfig> = waiting_room::Entity::find()
            .filter(waiting_room::Column::Enabled.eq(true))
            .all(&self.db.conn)
            .await?
            .into_iter()
            .map(RoomConfig::of)
            .collect();
        *self.enabled.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((rooms.clone(), Instant::now()));
        Ok(rooms)
    }

    /// The room as the database has it now, cached under the version read just before.
    async fn fresh(&self, event_id: i64) -> Result<Option<RoomConfig>, AppError> {
        let version = self.version().await;
        self.fresh_under(event_id, version).await
    }

    async fn fresh_under(
        &self,
        event_id: i64,
        version: Option<String>,
    ) -> Result<Option<RoomConfig>, AppError> {
        let at = Instant::now();
        let room = waiting_room::Entity::find_by_id(event_id)
            .one(&self.db.conn)
            .await?
            .map(RoomConfig::of);
        self.store(event_id, room.clone(), at, version);
        Ok(room)
    }

    pub async fn require_event(&self, event_id: i64) -> Result<(), AppError> {
        event::Entity::find_by_id(event_id)
            .one(&self.db.conn)
            .await?
            .map(|_| ())
            .ok_or_else(|| AppError::NotFound(format!("event {event_id} does not exist")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(RoomSettings::parse(true, None, 0, 60).is_err());
        assert!(RoomSettings::parse(true, None, 10, 0).is_err());
        assert!(RoomSettings::parse(true, None, 10, 86_401).is_err());
        let ok = RoomSettings::parse(true, Some(5), 10, 60).expect("valid");
        assert_eq!((ok.admit_per_sec, ok.admission_ttl_secs), (10, 60));
    }
}
