//! The sales report: an event's seat counts and money, per category and in total, read in
//! one snapshot so that it matches the seat map at its `seq`.

use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::Query;
use sea_orm::{
    AccessMode, ColumnTrait, DatabaseTransaction, EntityTrait, IsolationLevel, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use crate::auth::Caller;
use crate::booking::BookingService;
use crate::booking::areas::areas_of;
use crate::domain::clock::now_ms;
use crate::domain::status::{BookingStatus, SeatStatus, live_seat_status};
use crate::error::AppError;
use entity::{booking, booking_area, booking_seat, category, event, seat, ticket};

/// Counts and money of a set of seats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sales {
    pub booked: i64,
    pub held: i64,
    pub available: i64,
    pub blocked: i64,
    pub checked_in: i64,
    /// The totals of CONFIRMED and REFUNDED bookings (per category: their seats' prices).
    pub gross_cents: i64,
    /// The totals of REFUNDED bookings (per category: their seats' prices).
    pub refunded_cents: i64,
}

impl Sales {
    fn count(&mut self, status: SeatStatus) {
        match status {
            SeatStatus::Available => self.available += 1,
            SeatStatus::Held => self.held += 1,
            SeatStatus::Booked => self.booked += 1,
            SeatStatus::Blocked => self.blocked += 1,
        }
    }
}

/// One category's line (`category_id` `None`: seats without a category).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategorySalesView {
    pub category_id: Option<i64>,
    pub name: String,
    pub sales: Sales,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SalesReportView {
    pub event_id: i64,
    /// The event's seat-change `seq` the report is consistent with.
    pub seq: i64,
    pub total: Sales,
    pub by_category: Vec<CategorySalesView>,
}

/// What the report reads of a seat: id, category, claim status, hold expiry, blocked, price.
type SeatRow = (i64, Option<i64>, SeatStatus, Option<i64>, bool, i64);

/// The name of the line for seats without a category.
pub const NO_CATEGORY: &str = "(no category)";

impl BookingService {
    /// The sales report of an event, read in one snapshot (admin only).
    pub async fn sales_report(
        &self,
        caller: &Caller,
        event_id: i64,
    ) -> Result<SalesReportView, AppError> {
        self.admin_event(caller, event_id).await?;
        let conn = &self.db().conn;
        let txn = if self.db().is_postgres() {
            conn.begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?
        } else {
            // SQLite: a read transaction sees one snapshot from its first read on.
            conn.begin().await?
        };
        let report = read_report(&txn, event_id).await;
        txn.rollback().await?;
        report
    }
}

async fn read_report(
    txn: &DatabaseTransaction,
    event_id: i64,
) -> Result<SalesReportView, AppError> {
    let seq = event::Entity::find_by_id(event_id)
        .one(txn)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("event {event_id} does not exist")))?
        .seq;
    let now = now_ms();
    let categories = category::Entity::find()
        .filter(category::Column::EventId.eq(event_id))
        .order_by_asc(category::Column::Id)
        .all(txn)
        .await?;
    let seats: Vec<SeatRow> = seat::Entity::find()
        .select_only()
        .column(seat::Column::Id)
        .column(seat::Column::CategoryId)
        .column(seat::Column::Status)
        .column(seat::Column::HoldExpiresAtMs)
        .column(seat::Column::Blocked)
        .column(seat::Column::PriceCents)
        .filter(seat::Column::EventId.eq(event_id))
        .into_tuple()
        .all(txn)
        .await?;
    let bookings: HashMap<String, (BookingStatus, i64)> = booking::Entity::find()
        .select_only()
        .column(booking::Column::Id)
        .column(booking::Column::Status)
        .column(booking::Column::TotalCents)
        .filter(booking::Column::EventId.eq(event_id))
        .filter(booking::Column::Status.is_in([BookingStatus::Confirmed, BookingStatus::Refunded]))
        .into_tuple::<(String, BookingStatus, i64)>()
        .all(txn)
        .await?
        .into_iter()
        .map(|(id, status, total)| (id, (status, total)))
        .collect();
    let links: Vec<(String, i64)> = booking_seat::Entity::find()
        .select_only()
        .column(booking_seat::Column::BookingId)
        .column(booking_seat::Column::SeatId)
        .filter(
            booking_seat::Column::BookingId.in_subquery(
                Query::select()
                    .column(booking::Column::Id)
                    .from(booking::Entity)
                    .and_where(booking::Column::EventId.eq(event_id))
                    .to_owned(),
            ),
        )
        .into_tuple()
        .all(txn)
        .await?;

    // Everyone let in, whatever happened to their booking afterwards.
    let checked_in: Vec<(Option<i64>, Option<i64>)> = ticket::Entity::find()
        .select_only()
        .column(ticket::Column::SeatId)
        .column(ticket::Column::AreaId)
        .filter(ticket::Column::EventId.eq(event_id))
        .filter(ticket::Column::CheckedInAtMs.is_not_null())
        .into_tuple()
        .all(txn)
        .await?;

    let mut lines: BTreeMap<Option<i64>, Sales> = categories
        .iter()
        .map(|c| (Some(c.id), Sales::default()))
        .collect();
    let mut total = Sales::default();
    let mut seat_line: HashMap<i64, (Option<i64>, i64)> = HashMap::with_capacity(seats.len());
    for (id, category_id, status, expires, blocked, price) in seats {
        let shown = if blocked {
            SeatStatus::Blocked
        } else {
            live_seat_status(status, expires, now)
        };
        lines.entry(category_id).or_default().count(shown);
        total.count(shown);
        seat_line.insert(id, (category_id, price));
    }
    for (status, total_cents) in bookings.values() {
        total.gross_cents += total_cents;
        if *status == BookingStatus::Refunded {
            total.refunded_cents += total_cents;
        }
    }
    for (booking_id, seat_id) in links {
        let (Some((status, _)), Some((category_id, price))) =
            (bookings.get(&booking_id), seat_line.get(&seat_id))
        else {
            continue;
        };
        let line = lines.entry(*category_id).or_default();
        line.gross_cents += price;
        if *status == BookingStatus::Refunded {
            line.refunded_cents += price;
        }
    }
    // General-admission places: the areas' counts as the seat map shows them, and the
    // booked lines' money, each in the area's category.
    let areas = areas_of(txn, &[event_id], now)
        .await?
        .remove(&event_id)
        .unwrap_or_default();
    let area_category: HashMap<i64, i64> = areas.iter().map(|a| (a.id, a.category_id)).collect();
    for a in &areas {
        for sales in [lines.entry(Some(a.category_id)).or_default(), &mut total] {
            sales.available += a.available();
            sales.held += a.held;
            sales.booked += a.booked;
            sales.blocked += a.blocked;
        }
    }
    let place_lines = booking_area::Entity::find()
        .filter(
            booking_area::Column::BookingId.in_subquery(
                Query::select()
                    .column(booking::Column::Id)
                    .from(booking::Entity)
                    .and_where(booking::Column::EventId.eq(event_id))
                    .to_owned(),
            ),
        )
        .all(txn)
        .await?;
    for l in place_lines {
        let Some((status, _)) = bookings.get(&l.booking_id) else {
            continue;
        };
        let line = lines
            .entry(area_category.get(&l.area_id).copied())
            .or_default();
        line.gross_cents += l.quantity * l.price_cents;
        if *status == BookingStatus::Refunded {
            line.refunded_cents += l.quantity * l.price_cents;
        }
    }
    for (seat_id, area_id) in checked_in {
        total.checked_in += 1;
        let category_id = match (seat_id, area_id) {
            (Some(id), _) => seat_line.get(&id).map(|(c, _)| *c),
            (None, Some(id)) => area_category.get(&id).map(|c| Some(*c)),
            (None, None) => None,
        };
        if let Some(category_id) = category_id {
            lines.entry(category_id).or_default().checked_in += 1;
        }
    }
    let names: HashMap<i64, String> = categories.into_iter().map(|c| (c.id, c.name)).collect();
    let by_category = lines
        .into_iter()
        .map(|(category_id, sales)| CategorySalesView {
            name: category_id
                .and_then(|id| names.get(&id).cloned())
                .unwrap_or_else(|| NO_CATEGORY.to_owned()),
            category_id,
            sales,
        })
        .collect();
    Ok(SalesReportView {
        event_id,
        seq,
        total,
        by_category,
    })
}
