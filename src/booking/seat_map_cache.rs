//! The seat-map cache: the hottest read of an on-sale (a 10,000-seat map, read by everyone)
//! served from memory. Each cached map is kept current from the change stream; a read checks
//! only the event's current `seq` (one primary-key row) and, if the map is behind, catches
//! up from the change log. So a map never shows less than what committed before the read
//! began: the contract's read-your-writes promise holds on every instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::broadcast::error::RecvError;

use crate::domain::status::{SeatStatus, live_seat_status, stored_seat_status};
use crate::domain::views::SeatView;
use crate::error::AppError;
use crate::realtime::{SeatChange, SeatChangeBus, log};
use entity::seat;

/// More changes than this behind: reload the whole map instead of replaying the log.
const MAX_CATCH_UP: i64 = 2_000;
/// Most events kept in memory at once.
const MAX_EVENTS: usize = 256;

/// What never changes about a seat.
struct SeatInfo {
    id: i64,
    section: String,
    row: String,
    number: i32,
    price_cents: i64,
    category_id: Option<i64>,
    accessible: bool,
}

/// One event's map at `seq`.
#[derive(Clone)]
struct CachedMap {
    seq: i64,
    info: Arc<Vec<SeatInfo>>,
    index: Arc<HashMap<i64, usize>>,
    /// Stored status and hold expiry per seat, in `info` order.
    state: Vec<(SeatStatus, Option<i64>)>,
}

impl CachedMap {
    fn apply(&mut self, change: &SeatChange) {
        if let Some(i) = self.index.get(&change.seat_id) {
            self.state[*i] = (change.status, change.hold_expires_at_ms);
        }
        self.seq = change.seq;
    }
}

/// Cached seat maps; cheap to clone.
#[derive(Clone, Default)]
pub struct SeatMapCache {
    maps: Arc<Mutex<HashMap<i64, CachedMap>>>,
}

impl SeatMapCache {
    /// A cache that follows `bus`.
    pub fn following(bus: &Arc<dyn SeatChangeBus>) -> Self {
        let cache = Self::default();
        let mut changes = bus.subscribe_all();
        let weak = Arc::downgrade(&cache.maps);
        tokio::spawn(async move {
            loop {
                let received = changes.recv().await;
                let Some(maps) = weak.upgrade() else { return };
                let mut maps = maps.lock().unwrap_or_else(PoisonError::into_inner);
                match received {
                    Ok(change) => {
                        // An older change is already in; a newer one after a gap is
                        // caught up from the log on the next read.
                        if let Some(map) = maps.get_mut(&change.event_id)
                            && change.seq == map.seq + 1
                        {
                            map.apply(&change);
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
        cache
    }

    /// All seats of `event_id` as of at least `seq`, in layout order, as shown at `now`.
    pub async fn seats<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        event_id: i64,
        seq: i64,
        now: i64,
    ) -> Result<Vec<SeatView>, AppError> {
        let cached = self.lock().get(&event_id).cloned();
        let map = match cached {
            Some(map) if map.seq >= seq => map,
            Some(mut map) if seq - map.seq <= MAX_CATCH_UP => {
                for change in &log::between(conn, event_id, map.seq, seq, None).await? {
                    map.apply(change);
                }
                if map.seq < seq {
                    // The log was pruned past what we need.
                    self.load(conn, event_id, seq).await?
                } else {
                    self.store(event_id, &map);
                    map
                }
            }
            _ => self.load(conn, event_id, seq).await?,
        };
        Ok(map
            .info
            .iter()
            .zip(&map.state)
            .map(|(info, (status, expires))| {
                let live = live_seat_status(*status, *expires, now);
                SeatView {
                    id: info.id,
                    section: info.section.clone(),
                    row: info.row.clone(),
                    number: info.number,
                    price_cents: info.price_cents,
                    status: live,
                    hold_expires_at_ms: (live == SeatStatus::Held).then_some(*expires).flatten(),
                    category_id: info.category_id,
                    accessible: info.accessible,
                    // Reasons change without a seq of their own; admins read them uncached.
                    blocked_reason: None,
                }
            })
            .collect())
    }

    /// Reads the whole map; the stored seats reflect at least `seq` (read after it).
    async fn load<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        event_id: i64,
        seq: i64,
    ) -> Result<CachedMap, AppError> {
        let rows = seat::Entity::find()
            .filter(seat::Column::EventId.eq(event_id))
            .order_by_asc(seat::Column::Position)
            .all(conn)
            .await?;
        let index = rows.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        let state = rows
            .iter()
            .map(|s| (stored_seat_status(s), s.hold_expires_at_ms))
            .collect();
        let info = rows
            .into_iter()
            .map(|s| SeatInfo {
                id: s.id,
                section: s.section,
                row: s.row_label,
                number: s.number,
                price_cents: s.price_cents,
                category_id: s.category_id,
                accessible: s.accessible,
            })
            .collect();
        // Rows read after `seq` may already include later changes; replaying those again on
        // top is harmless because every change carries the seat's absolute state.
        let map = CachedMap {
            seq,
            info: Arc::new(info),
            index: Arc::new(index),
            state,
        };
        self.store(event_id, &map);
        Ok(map)
    }

    fn store(&self, event_id: i64, map: &CachedMap) {
        let mut maps = self.lock();
        if maps.len() >= MAX_EVENTS && !maps.contains_key(&event_id) {
            maps.clear();
        }
        let newer = maps.get(&event_id).is_some_and(|m| m.seq > map.seq);
        if !newer {
            maps.insert(event_id, map.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, CachedMap>> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
