//! Events and seat maps: creating an event with its seats, listing events with live counts,
//! and the seat map with the change `seq` it reflects.

use std::collections::HashMap;

use sea_orm::ActiveValue::Unchanged;
use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use tracing::instrument;

use super::BookingService;
use super::areas::areas_of;
use super::event_input::{EventUpdate, NewEvent};
use super::views;
use crate::domain::clock::now_ms;
use crate::domain::limits::SEAT_INSERT_CHUNK;
use crate::domain::sale::status_change_allowed;
use crate::domain::status::{EventStatus, SeatStatus};
use crate::domain::views::{
    CategoryView, EventView, SeatCounts, SeatMapView, SeatView, changes_by_itself_at,
};
use crate::error::AppError;
use crate::webhooks::{self, WebhookEvent};
use entity::{area, category, event, seat};

/// What a seat map is built from, as far as a stored answer cares (see
/// [`BookingService::map_state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapState {
    pub event: event::Model,
    /// (area id, version), ascending.
    pub areas: Vec<(i64, i64)>,
}

/// Who is looking at events: DRAFT events are shown to admins only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer {
    Public,
    Admin,
}

impl Viewer {
    pub fn of(admin: bool) -> Self {
        if admin { Self::Admin } else { Self::Public }
    }
}

#[derive(Debug, FromQueryResult)]
struct StatusCount {
    event_id: i64,
    status: SeatStatus,
    n: i64,
}

#[derive(Debug, FromQueryResult)]
struct TotalCount {
    event_id: i64,
    n: i64,
}

fn ids_of(events: &[event::Model]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

/// The categories of each of these events, in creation order.
async fn categories_of<C: ConnectionTrait>(
    conn: &C,
    event_ids: &[i64],
) -> Result<HashMap<i64, Vec<CategoryView>>, AppError> {
    let mut by_event: HashMap<i64, Vec<CategoryView>> = HashMap::new();
    for c in category::Entity::find()
        .filter(category::Column::EventId.is_in(event_ids.to_vec()))
        .order_by_asc(category::Column::Id)
        .all(conn)
        .await?
    {
        by_event.entry(c.event_id).or_default().push(CategoryView {
            id: c.id,
            name: c.name,
            price_cents: c.price_cents,
            color: c.color,
        });
    }
    Ok(by_event)
}

impl BookingService {
    /// Creates an event and all its seats in one transaction.
    #[instrument(skip_all, fields(event.name = %input.name), err)]
    pub async fn create_event(&self, input: NewEvent) -> Result<EventView, AppError> {
        let valid = input.validate()?;
        // Not retried: a retry after an unknown outcome could create the event twice.
        let tx = self.db.begin_write().await?;
        let created = event::Entity::insert(event::ActiveModel {
            name: Set(valid.name),
            venue: Set(valid.venue),
            starts_at_ms: Set(valid.starts_at_ms),
            seq: Set(0),
            created_at_ms: Set(now_ms()),
            status: Set(valid.sale.status),
            sales_start_at_ms: Set(valid.sale.sales_start_at_ms),
            sales_end_at_ms: Set(valid.sale.sales_end_at_ms),
            max_seats_per_order: Set(valid.limits.per_order),
            max_seats_per_buyer: Set(valid.limits.per_buyer),
            max_hold_extensions: Set(valid.sale.max_hold_extensions),
            ..Default::default()
        })
        .exec_with_returning(&tx.txn)
        .await?;
        let mut category_ids = Vec::with_capacity(valid.categories.len());
        for c in valid.categories {
            let inserted = category::Entity::insert(category::ActiveModel {
                event_id: Set(created.id),
                name: Set(c.name),
                price_cents: Set(i64::from(c.price_cents)),
                color: Set(c.color),
                ..Default::default()
            })
            .exec(&tx.txn)
            .await?;
            category_ids.push(inserted.last_insert_id);
        }
        let rows: Vec<seat::ActiveModel> = valid
            .seats
            .into_iter()
            .zip(0..)
            .map(|(s, position)| seat::ActiveModel {
                event_id: Set(created.id),
                section: Set(s.section),
                row_label: Set(s.row),
                number: Set(s.number),
                price_cents: Set(s.price_cents),
                position: Set(position),
                status: Set(SeatStatus::Available),
                hold_id: Set(None),
                hold_expires_at_ms: Set(None),
                booking_id: Set(None),
                version: Set(0),
                category_id: Set(s.category.and_then(|i| category_ids.get(i).copied())),
                accessible: Set(s.accessible),
                ..Default::default()
            })
            .collect();
        for chunk in rows.chunks(SEAT_INSERT_CHUNK) {
            seat::Entity::insert_many(chunk.to_vec())
                .exec(&tx.txn)
                .await?;
        }
        for a in valid.areas {
            let category_id = category_ids.get(a.category).copied().ok_or_else(|| {
                AppError::Internal(format!("area {:?} lost its category", a.name))
            })?;
            area::Entity::insert(area::ActiveModel {
                event_id: Set(created.id),
                name: Set(a.name),
                category_id: Set(category_id),
                capacity: Set(a.capacity),
                held: Set(0),
                booked: Set(0),
                blocked: Set(0),
                version: Set(0),
                ..Default::default()
            })
            .exec_without_returning(&tx.txn)
            .await?;
        }
        tx.commit().await?;
        tracing::info!(event.id = created.id, "event created");
        self.event_view(created.id).await
    }

    /// All events `viewer` may see, soonest first, with live counts.
    pub async fn events(&self, viewer: Viewer) -> Result<Vec<EventView>, AppError> {
        let mut query = event::Entity::find();
        if viewer == Viewer::Public {
            query = query.filter(event::Column::Status.ne(EventStatus::Draft));
        }
        let events = query
            .order_by_asc(event::Column::StartsAtMs)
            .order_by_asc(event::Column::Id)
            .all(&self.db.conn)
            .await?;
        self.with_counts(events).await
    }

    /// One event, or `None` if there is no such event (or `viewer` may not see it).
    pub async fn event(&self, id: i64, viewer: Viewer) -> Result<Option<EventView>, AppError> {
        match self.visible_event(id, viewer).await {
            Ok(model) => Ok(self.with_counts(vec![model]).await?.pop()),
            Err(AppError::NotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The stored event if `viewer` may see it: to the public a DRAFT is like an unknown id.
    pub async fn visible_event(&self, id: i64, viewer: Viewer) -> Result<event::Model, AppError> {
        let found = event::Entity::find_by_id(id).one(&self.db.conn).await?;
        views::existing(
            found.filter(|e| viewer == Viewer::Admin || e.status != EventStatus::Draft),
            "event",
            &id.to_string(),
        )
    }

    /// The event as stored now — its row (`seq` and every setting an answer shows) and its
    /// areas' versions — which a stored seat-map answer is checked against before it is
    /// served. `None`: no such event.
    pub async fn map_state(&self, id: i64) -> Result<Option<MapState>, AppError> {
        let Some(event) = event::Entity::find_by_id(id).one(&self.db.conn).await? else {
            return Ok(None);
        };
        let areas = super::areas::area_versions(&self.db.conn, id).await?;
        Ok(Some(MapState { event, areas }))
    }

    /// The event as an admin sees it now.
    async fn event_view(&self, id: i64) -> Result<EventView, AppError> {
        self.event(id, Viewer::Admin)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("event {id} does not exist")))
    }

    /// Changes an event's details or sale settings; the window must stay well-ordered.
    #[instrument(skip_all, fields(event.id = id), err(level = "debug"))]
    pub async fn update_event(&self, id: i64, change: EventUpdate) -> Result<EventView, AppError> {
        let change = &change;
        self.db
            .write(|txn| async move {
                let txn = &*txn;
                let current =
                    views::existing(self.db.lock_event(txn, id).await?, "event", &id.to_string())?;
                let updated = change.apply(current)?;
                event::ActiveModel {
                    id: Unchanged(id),
                    name: Set(updated.name),
                    venue: Set(updated.venue),
                    starts_at_ms: Set(updated.starts_at_ms),
                    sales_start_at_ms: Set(updated.sales_start_at_ms),
                    sales_end_at_ms: Set(updated.sales_end_at_ms),
                    max_seats_per_order: Set(updated.max_seats_per_order),
                    max_seats_per_buyer: Set(updated.max_seats_per_buyer),
                    max_hold_extensions: Set(updated.max_hold_extensions),
                    ..Default::default()
                }
                .update(txn)
                .await?;
                Ok(())
            })
            .await?;
        tracing::info!(event.id = id, "event updated");
        self.event_view(id).await
    }

    /// Moves an event to `to` if the contract's table allows it (setting the current status
    /// changes nothing). Returns the status it had. Cancelling an event's holds and bookings is
    /// the caller's next step (`CheckoutService::set_event_status`), because paid bookings are
    /// refunded through the payment outbox.
    #[instrument(skip_all, fields(event.id = id, to = ?to), err(level = "debug"))]
    pub async fn set_event_status(
        &self,
        id: i64,
        to: EventStatus,
    ) -> Result<EventStatus, AppError> {
        let from = self
            .db
            .write(|txn| async move {
                let txn = &*txn;
                let current =
                    views::existing(self.db.lock_event(txn, id).await?, "event", &id.to_string())?;
                if !status_change_allowed(current.status, to) {
                    return Err(AppError::BadInput(format!(
                        "an event cannot go from {} to {}",
                        current.status.to_value(),
                        to.to_value()
                    )));
                }
                if current.status != to {
                    event::Entity::update_many()
                        .col_expr(event::Column::Status, Expr::value(to))
                        .filter(event::Column::Id.eq(id))
                        .exec(txn)
                        .await?;
                    webhooks::record(
                        txn,
                        WebhookEvent::event_status_changed(id, current.status, to),
                    )
                    .await?;
                }
                Ok(current.status)
            })
            .await?;
        if from != to {
            tracing::info!(event.id = id, from = ?from, to = ?to, "event status changed");
        }
        Ok(from)
    }

    async fn with_counts(&self, events: Vec<event::Model>) -> Result<Vec<EventView>, AppError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        // Counts by stored status, where a HELD seat counts only while its hold is live.
        let rows = seat::Entity::find()
            .select_only()
            .column(seat::Column::EventId)
            .column(seat::Column::Status)
            .column_as(Expr::col(seat::Column::Id).count(), "n")
            .filter(seat::Column::EventId.is_in(ids))
            .filter(
                Condition::any()
                    .add(seat::Column::Status.ne(SeatStatus::Held))
                    .add(seat::Column::HoldExpiresAtMs.gt(now)),
            )
            .group_by(seat::Column::EventId)
            .group_by(seat::Column::Status)
            .into_model::<StatusCount>()
            .all(&self.db.conn)
            .await?;
        let totals = seat::Entity::find()
            .select_only()
            .column(seat::Column::EventId)
            .column_as(Expr::col(seat::Column::Id).count(), "n")
            .filter(seat::Column::EventId.is_in(events.iter().map(|e| e.id)))
            .group_by(seat::Column::EventId)
            .into_model::<TotalCount>()
            .all(&self.db.conn)
            .await?;
        // Blocked seats keep their stored claim (AVAILABLE): counted apart.
        let blocked = seat::Entity::find()
            .select_only()
            .column(seat::Column::EventId)
            .column_as(Expr::col(seat::Column::Id).count(), "n")
            .filter(seat::Column::EventId.is_in(events.iter().map(|e| e.id)))
            .filter(seat::Column::Blocked.eq(true))
            .group_by(seat::Column::EventId)
            .into_model::<TotalCount>()
            .all(&self.db.conn)
            .await?;
        let mut counts: HashMap<(i64, Option<SeatStatus>), i64> = HashMap::new();
        for row in blocked {
            counts.insert((row.event_id, Some(SeatStatus::Blocked)), row.n);
        }
        for row in rows {
            counts.insert((row.event_id, Some(row.status)), row.n);
        }
        for row in totals {
            counts.insert((row.event_id, None), row.n);
        }
        let get =
            |id: i64, status: Option<SeatStatus>| counts.get(&(id, status)).copied().unwrap_or(0);
        let mut categories = categories_of(&self.db.conn, &ids_of(&events)).await?;
        let mut areas = areas_of(&self.db.conn, &ids_of(&events), now).await?;
        Ok(events
            .into_iter()
            .map(|e| {
                let counts = SeatCounts {
                    total: get(e.id, None),
                    held: get(e.id, Some(SeatStatus::Held)),
                    booked: get(e.id, Some(SeatStatus::Booked)),
                    blocked: get(e.id, Some(SeatStatus::Blocked)),
                };
                let of_event = categories.remove(&e.id).unwrap_or_default();
                let its_areas = areas.remove(&e.id).unwrap_or_default();
                EventView::of(e, counts, of_event, its_areas, now)
            })
            .collect())
    }

    /// The seat map of an event (optionally one section) and the `seq` it reflects: every
    /// change up to `seq` is included (later ones may be too; applying them again is harmless).
    /// Counts are over the whole event.
    #[instrument(skip_all, fields(event.id = event_id), err(level = "debug"))]
    pub async fn seat_map(
        &self,
        event_id: i64,
        section: Option<&str>,
        viewer: Viewer,
    ) -> Result<SeatMapView, AppError> {
        let event = self.visible_event(event_id, viewer).await?;
        let now = now_ms();
        let seq = event.seq;
        // Admins read the database: they see why seats are blocked, which the cache omits.
        let seats = match (&self.seat_maps, viewer) {
            (Some(cache), Viewer::Public) => cache.seats(&self.db.conn, event_id, seq, now).await?,
            _ => seat::Entity::find()
                .filter(seat::Column::EventId.eq(event_id))
                .order_by_asc(seat::Column::Position)
                .all(&self.db.conn)
                .await?
                .iter()
                .map(|s| {
                    let mut view = SeatView::of(s, now);
                    if viewer == Viewer::Public {
                        view.blocked_reason = None;
                    }
                    view
                })
                .collect(),
        };
        let count = |status: SeatStatus| {
            i64::try_from(seats.iter().filter(|s| s.status == status).count()).unwrap_or(i64::MAX)
        };
        let counts = SeatCounts {
            total: i64::try_from(seats.len()).unwrap_or(i64::MAX),
            held: count(SeatStatus::Held),
            booked: count(SeatStatus::Booked),
            blocked: count(SeatStatus::Blocked),
        };
        let of_event = categories_of(&self.db.conn, &[event_id])
            .await?
            .remove(&event_id)
            .unwrap_or_default();
        let its_areas = areas_of(&self.db.conn, &[event_id], now)
            .await?
            .remove(&event_id)
            .unwrap_or_default();
        let event = EventView::of(event, counts, of_event, its_areas, now);
        let mut changes_by_itself_at = changes_by_itself_at(&event, &seats, now);
        if !event.areas.is_empty() {
            let ids = event.areas.iter().map(|a| a.id).collect();
            if let Some(at) = super::areas::next_place_expiry(&self.db.conn, ids, now).await? {
                changes_by_itself_at = Some(changes_by_itself_at.map_or(at, |t| Ord::min(t, at)));
            }
        }
        let seats = match section {
            Some(name) => seats.into_iter().filter(|s| s.section == name).collect(),
            None => seats,
        };
        Ok(SeatMapView {
            event,
            seats,
            seq,
            changes_by_itself_at,
        })
    }

    /// Whether there is any event at all (the demo seed runs only on an empty database).
    pub async fn has_events<C: ConnectionTrait>(&self, conn: &C) -> Result<bool, AppError> {
        Ok(event::Entity::find().one(conn).await?.is_some())
    }
}
