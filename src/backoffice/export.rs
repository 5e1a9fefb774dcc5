//! The CSV export of an event's bookings: one row per ticket, RFC 4180, CRLF line ends,
//! streamed in batches of bookings (never the whole event in memory), with cells that a
//! spreadsheet would run as a formula neutralised by a leading `'`.

use std::collections::HashMap;

use futures::Stream;
use sea_orm::sea_query::Condition;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::auth::Caller;
use crate::booking::BookingService;
use crate::domain::status::BookingStatus;
use crate::error::AppError;
use entity::{area, booking, booking_area, category, seat, ticket};

/// The header row, as the contract fixes it.
pub const HEADER: &str = "booking_id,status,user_id,event_id,ticket_code,section,row,number,area,category,price_cents,checked_in_at,created_at\r\n";

/// Bookings read per batch.
const BATCH: u64 = 500;

/// One CSV cell: a leading `=`, `+`, `-`, `@`, tab or CR gets a `'` in front; a cell with a
/// comma, quote, CR or LF is quoted with inner quotes doubled; anything else is exact.
pub fn cell(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if guarded.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// One CSV record of `cells`, CRLF-terminated.
pub fn record<'a>(cells: impl IntoIterator<Item = &'a str>) -> String {
    let mut line = cells.into_iter().map(cell).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn status_name(status: BookingStatus) -> &'static str {
    match status {
        BookingStatus::Confirmed => "CONFIRMED",
        BookingStatus::Cancelled => "CANCELLED",
        BookingStatus::Refunded => "REFUNDED",
    }
}

impl BookingService {
    /// The CSV of an event's bookings, oldest first, as a stream of chunks (the header row
    /// first). Admin only; the caller and the event are checked before the stream starts.
    pub async fn export_bookings_csv(
        &self,
        caller: &Caller,
        event_id: i64,
    ) -> Result<impl Stream<Item = Result<String, AppError>> + Send + 'static, AppError> {
        self.admin_event(caller, event_id).await?;
        let conn = self.db().conn.clone();
        let categories: HashMap<i64, String> = category::Entity::find()
            .filter(category::Column::EventId.eq(event_id))
            .all(&conn)
            .await?
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect();
        let areas: HashMap<i64, area::Model> = area::Entity::find()
            .filter(area::Column::EventId.eq(event_id))
            .all(&conn)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        Ok(async_stream::try_stream! {
            yield HEADER.to_owned();
            let mut last: Option<(i64, String)> = None;
            loop {
                let mut select = booking::Entity::find()
                    .filter(booking::Column::EventId.eq(event_id));
                if let Some((at, id)) = &last {
                    select = select.filter(
                        Condition::any()
                            .add(booking::Column::CreatedAtMs.gt(*at))
                            .add(
                                Condition::all()
                                    .add(booking::Column::CreatedAtMs.eq(*at))
                                    .add(booking::Column::Id.gt(id.as_str())),
                            ),
                    );
                }
                let bookings = select
                    .order_by_asc(booking::Column::CreatedAtMs)
                    .order_by_asc(booking::Column::Id)
                    .limit(BATCH)
                    .all(&conn)
                    .await?;
                let Some(tail) = bookings.last() else { break };
                last = Some((tail.created_at_ms, tail.id.clone()));
                let tickets = ticket::Entity::find()
                    .filter(ticket::Column::BookingId.is_in(bookings.iter().map(|b| b.id.clone())))
                    .order_by_asc(ticket::Column::SeatId)
                    .order_by_asc(ticket::Column::Id)
                    .all(&conn)
                    .await?;
                let seats: HashMap<i64, seat::Model> = seat::Entity::find()
                    .filter(seat::Column::Id.is_in(tickets.iter().filter_map(|t| t.seat_id)))
                    .all(&conn)
                    .await?
                    .into_iter()
                    .map(|s| (s.id, s))
                    .collect();
                // One place's price, per (booking, area).
                let place_prices: HashMap<(String, i64), i64> = booking_area::Entity::find()
                    .filter(booking_area::Column::BookingId.is_in(bookings.iter().map(|b| b.id.clone())))
                    .all(&conn)
                    .await?
                    .into_iter()
                    .map(|l| ((l.booking_id, l.area_id), l.price_cents))
                    .collect();
                let mut per_booking: HashMap<&str, Vec<&ticket::Model>> = HashMap::new();
                for t in &tickets {
                    per_booking.entry(t.booking_id.as_str()).or_default().push(t);
                }
                let mut chunk = String::new();
                for b in &bookings {
                    let event = b.event_id.to_string();
                    let created = rfc3339(b.created_at_ms);
                    for t in per_booking.get(b.id.as_str()).into_iter().flatten() {
                        let checked_in = t.checked_in_at_ms.map(rfc3339).unwrap_or_default();
                        // A ticket without a seat is a general-admission place: its seat
                        // cells stay empty, its area's are filled.
                        let seat = t.seat_id.and_then(|id| seats.get(&id));
                        let place = t.area_id.and_then(|id| areas.get(&id));
                        let number = seat.map(|s| s.number.to_string()).unwrap_or_default();
                        let price = match (seat, place) {
                            (Some(s), _) => s.price_cents.to_string(),
                            (None, Some(a)) => place_prices
                                .get(&(b.id.clone(), a.id))
                                .map(i64::to_string)
                                .unwrap_or_default(),
                            (None, None) => String::new(),
                        };
                        let category = seat
                            .and_then(|s| s.category_id)
                            .or(place.map(|a| a.category_id))
                            .and_then(|id| categories.get(&id))
                            .map_or("", String::as_str);
                        chunk.push_str(&record([
                            b.id.as_str(),
                            status_name(b.status),
                            b.user_id.as_str(),
                            event.as_str(),
                            t.code.as_str(),
                            seat.map_or("", |s| s.section.as_str()),
                            seat.map_or("", |s| s.row_label.as_str()),
                            number.as_str(),
                            place.map_or("", |a| a.name.as_str()),
                            category,
                            price.as_str(),
                            checked_in.as_str(),
                            created.as_str(),
                        ]));
                    }
                }
                yield chunk;
                if (bookings.len() as u64) < BATCH {
                    break;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell(""), "");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("@me"), "'@me");
        assert_eq!(cell("\tx"), "'\tx");
        assert_eq!(cell("=a,\"b\""), "\"'=a,\"\"b\"\"\"");
        assert_eq!(record(["a", "b,c"]), "a,\"b,c\"\r\n");
    }
}
