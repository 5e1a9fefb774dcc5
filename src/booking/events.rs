//! Events and seat maps: creating an event with its seats, listing events with live counts,
//! and the seat map with the change `seq` it reflects.

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use tracing::instrument;

use super::BookingService;
use crate::booking::model::{EventView, SeatMapView, SeatStatus, SeatView, now_ms, parse_label};
use crate::error::AppError;
use entity::{event, seat};

/// Most seats one event may have.
pub const MAX_SEATS_PER_EVENT: usize = 50_000;
const MAX_SEATS_PER_ROW: i32 = 1_000;
const MAX_PRICE_CENTS: i32 = 100_000_000;

/// A new event as an admin describes it.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub name: String,
    pub venue: String,
    pub starts_at_ms: i64,
    pub sections: Vec<NewSection>,
}

#[derive(Clone, Debug)]
pub struct NewSection {
    pub name: String,
    pub rows: Vec<NewRow>,
}

#[derive(Clone, Debug)]
pub struct NewRow {
    pub label: String,
    pub seats: i32,
    pub price_cents: i32,
}

/// A new event whose every field has been checked.
struct ValidEvent {
    name: String,
    venue: String,
    starts_at_ms: i64,
    /// (section, row, number, price)
    seats: Vec<(String, String, i32, i64)>,
}

fn validate(input: NewEvent) -> Result<ValidEvent, AppError> {
    // RFC 3339 has four-digit years; keep to what every client can read back.
    const LATEST_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    if !(0..=LATEST_MS).contains(&input.starts_at_ms) {
        return Err(AppError::BadInput(
            "startsAt must be between 1970 and 9999".into(),
        ));
    }
    let name = parse_label(&input.name, "name", 200)?;
    let venue = parse_label(&input.venue, "venue", 200)?;
    if input.sections.is_empty() {
        return Err(AppError::BadInput(
            "an event needs at least one section".into(),
        ));
    }
    let mut seats = Vec::new();
    let mut section_names = HashSet::new();
    for section in input.sections {
        let section_name = parse_label(&section.name, "section name", 100)?;
        if !section_names.insert(section_name.clone()) {
            return Err(AppError::BadInput(format!(
                "section {section_name:?} appears twice"
            )));
        }
        if section.rows.is_empty() {
            return Err(AppError::BadInput(format!(
                "section {section_name:?} needs at least one row"
            )));
        }
        let mut labels = HashSet::new();
        for row in section.rows {
            let label = parse_label(&row.label, "row label", 50)?;
            if !labels.insert(label.clone()) {
                return Err(AppError::BadInput(format!(
                    "row {label:?} appears twice in section {section_name:?}"
                )));
            }
            if !(1..=MAX_SEATS_PER_ROW).contains(&row.seats) {
                return Err(AppError::BadInput(format!(
                    "a row has 1 to {MAX_SEATS_PER_ROW} seats"
                )));
            }
            if !(0..=MAX_PRICE_CENTS).contains(&row.price_cents) {
                return Err(AppError::BadInput(format!(
                    "priceCents must be between 0 and {MAX_PRICE_CENTS}"
                )));
            }
            for number in 1..=row.seats {
                seats.push((
                    section_name.clone(),
                    label.clone(),
                    number,
                    i64::from(row.price_cents),
                ));
            }
            if seats.len() > MAX_SEATS_PER_EVENT {
                return Err(AppError::BadInput(format!(
                    "an event has at most {MAX_SEATS_PER_EVENT} seats"
                )));
            }
        }
    }
    Ok(ValidEvent {
        name,
        venue,
        starts_at_ms: input.starts_at_ms,
        seats,
    })
}

#[derive(Debug, FromQueryResult)]
struct StatusCount {
    event_id: i64,
    status: String,
    n: i64,
}

impl BookingService {
    /// Creates an event and all its seats in one transaction.
    #[instrument(skip_all, fields(event.name = %input.name), err)]
    pub async fn create_event(&self, input: NewEvent) -> Result<EventView, AppError> {
        let valid = validate(input)?;
        let tx = self.db.begin_write().await?;
        let now = now_ms();
        let created = event::Entity::insert(event::ActiveModel {
            name: Set(valid.name),
            venue: Set(valid.venue),
            starts_at_ms: Set(valid.starts_at_ms),
            seq: Set(0),
            created_at_ms: Set(now),
            ..Default::default()
        })
        .exec_with_returning(&tx.txn)
        .await?;
        let rows: Vec<seat::ActiveModel> = valid
            .seats
            .into_iter()
            .zip(0..)
            .map(
                |((section, row, number, price), position)| seat::ActiveModel {
                    event_id: Set(created.id),
                    section: Set(section),
                    row_label: Set(row),
                    number: Set(number),
                    price_cents: Set(price),
                    position: Set(position),
                    status: Set("AVAILABLE".into()),
                    hold_id: Set(None),
                    hold_expires_at_ms: Set(None),
                    booking_id: Set(None),
                    version: Set(0),
                    ..Default::default()
                },
            )
            .collect();
        for chunk in rows.chunks(1000) {
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
                    .add(seat::Column::Status.ne("HELD"))
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
            .column_as(Expr::val("ALL"), "status")
            .column_as(Expr::col(seat::Column::Id).count(), "n")
            .filter(seat::Column::EventId.is_in(events.iter().map(|e| e.id)))
            .group_by(seat::Column::EventId)
            .into_model::<StatusCount>()
            .all(&self.db.conn)
            .await?;
        let mut counts: HashMap<(i64, String), i64> = HashMap::new();
        for row in rows.into_iter().chain(totals) {
            counts.insert((row.event_id, row.status), row.n);
        }
        let get =
            |id: i64, status: &str| counts.get(&(id, status.to_owned())).copied().unwrap_or(0);
        Ok(events
            .into_iter()
            .map(|e| {
                let total = get(e.id, "ALL");
                let held = get(e.id, "HELD");
                let booked = get(e.id, "BOOKED");
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
        let event = event::Entity::find_by_id(event_id)
            .one(&self.db.conn)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("event {event_id} does not exist")))?;
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
