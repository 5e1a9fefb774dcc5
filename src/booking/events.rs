//! Events and seat maps: creating an event with its seats, listing events with live counts,
//! and the seat map with the change `seq` it reflects.

use std::collections::HashMap;

use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use tracing::instrument;

use super::BookingService;
use super::event_input::NewEvent;
use super::views;
use crate::domain::clock::now_ms;
use crate::domain::limits::SEAT_INSERT_CHUNK;
use crate::domain::status::SeatStatus;
use crate::domain::views::{EventView, SeatMapView, SeatView};
use crate::error::AppError;
use entity::{event, seat};

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
            ..Default::default()
        })
        .exec_with_returning(&tx.txn)
        .await?;
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
                ..Default::default()
            })
            .collect();
        for chunk in rows.chunks(SEAT_INSERT_CHUNK) {
            seat::Entity::insert_many(chunk.to_vec())
                .exec(&tx.txn)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(event.id = created.id, "event created");
        self.event(created.id)
            .await?
            .ok_or_else(|| AppError::Internal("created event vanished".into()))
    }

    /// All events, soonest first, with live counts.
    pub async fn events(&self) -> Result<Vec<EventView>, AppError> {
        let events = event::Entity::find()
            .order_by_asc(event::Column::StartsAtMs)
            .order_by_asc(event::Column::Id)
            .all(&self.db.conn)
            .await?;
        self.with_counts(events).await
    }

    /// One event, or `None` if there is no such event.
    pub async fn event(&self, id: i64) -> Result<Option<EventView>, AppError> {
        let Some(model) = event::Entity::find_by_id(id).one(&self.db.conn).await? else {
            return Ok(None);
        };
        Ok(self.with_counts(vec![model]).await?.pop())
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
        let mut counts: HashMap<(i64, Option<SeatStatus>), i64> = HashMap::new();
        for row in rows {
            counts.insert((row.event_id, Some(row.status)), row.n);
        }
        for row in totals {
            counts.insert((row.event_id, None), row.n);
        }
        let get =
            |id: i64, status: Option<SeatStatus>| counts.get(&(id, status)).copied().unwrap_or(0);
        Ok(events
            .into_iter()
            .map(|e| {
                let total = get(e.id, None);
                let held = get(e.id, Some(SeatStatus::Held));
                let booked = get(e.id, Some(SeatStatus::Booked));
                EventView {
                    id: e.id,
                    name: e.name,
                    venue: e.venue,
                    starts_at_ms: e.starts_at_ms,
                    seat_count: total,
                    available: total - held - booked,
                    held,
                    booked,
                }
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
    ) -> Result<SeatMapView, AppError> {
        let event = views::existing(
            event::Entity::find_by_id(event_id)
                .one(&self.db.conn)
                .await?,
            "event",
            &event_id.to_string(),
        )?;
        let now = now_ms();
        let seq = event.seq;
        let seats = match &self.seat_maps {
            Some(cache) => cache.seats(&self.db.conn, event_id, seq, now).await?,
            None => seat::Entity::find()
                .filter(seat::Column::EventId.eq(event_id))
                .order_by_asc(seat::Column::Position)
                .all(&self.db.conn)
                .await?
                .iter()
                .map(|s| SeatView::of(s, now))
                .collect(),
        };
        let count = |status: SeatStatus| {
            i64::try_from(seats.iter().filter(|s| s.status == status).count()).unwrap_or(i64::MAX)
        };
        let event = EventView {
            id: event.id,
            name: event.name,
            venue: event.venue,
            starts_at_ms: event.starts_at_ms,
            seat_count: i64::try_from(seats.len()).unwrap_or(i64::MAX),
            available: count(SeatStatus::Available),
            held: count(SeatStatus::Held),
            booked: count(SeatStatus::Booked),
        };
        let seats = match section {
            Some(name) => seats.into_iter().filter(|s| s.section == name).collect(),
            None => seats,
        };
        Ok(SeatMapView { event, seats, seq })
    }

    /// Whether there is any event at all (the demo seed runs only on an empty database).
    pub async fn has_events<C: ConnectionTrait>(&self, conn: &C) -> Result<bool, AppError> {
        Ok(event::Entity::find().one(conn).await?.is_some())
    }
}
