//! Cancelling an event: every active hold released, every booking cancelled, and every paid
//! one refunded through the same outbox as `cancelBooking`. Each hold and booking is ended in
//! its own short transaction and published; the event's CANCELLED status is committed first,
//! so no new hold can start (the hold transaction re-reads it under the event's lock) and the
//! checkout worker resumes whatever a crash left undone.

use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tracing::instrument;

use super::CheckoutService;
use crate::booking::events::Viewer;
use crate::domain::status::{BookingStatus, EventStatus, HoldStatus};
use crate::domain::views::EventView;
use crate::error::AppError;
use entity::{booking, event, hold};

/// Holds or bookings ended per query while cancelling an event.
const CANCEL_BATCH: u64 = 100;

impl CheckoutService {
    /// Moves the event to `to` (see `BookingService::set_event_status`); cancelling it also
    /// ends its holds and bookings. Setting CANCELLED again finishes what is left.
    #[instrument(skip_all, fields(event.id = event_id, to = ?to), err(level = "debug"))]
    pub async fn set_event_status(
        &self,
        event_id: i64,
        to: EventStatus,
    ) -> Result<EventView, AppError> {
        self.booking.set_event_status(event_id, to).await?;
        if to == EventStatus::Cancelled {
            self.finish_cancellation(event_id).await?;
        }
        self.booking
            .event(event_id, Viewer::Admin)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("event {event_id} does not exist")))
    }

    /// Ends every active hold and every confirmed booking of a cancelled event.
    async fn finish_cancellation(&self, event_id: i64) -> Result<(), AppError> {
        let db = self.booking.db();
        let (mut holds, mut bookings) = (0_usize, 0_usize);
        let mut last_batch: Vec<String> = Vec::new();
        loop {
            let ids: Vec<String> = hold::Entity::find()
                .select_only()
                .column(hold::Column::Id)
                .filter(hold::Column::EventId.eq(event_id))
                .filter(hold::Column::Status.eq(HoldStatus::Active))
                .order_by_asc(hold::Column::Id)
                .limit(CANCEL_BATCH)
                .into_tuple()
                .all(&db.conn)
                .await?;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                let id = &id;
                let published = db
                    .write(|txn| async move { self.booking.release_in(&*txn, id).await })
                    .await?;
                self.booking.bus().publish_all(published).await;
                holds += 1;
            }
        }
        loop {
            let batch = booking::Entity::find()
                .filter(booking::Column::EventId.eq(event_id))
                .filter(booking::Column::Status.eq(BookingStatus::Confirmed))
                .order_by_asc(booking::Column::Id)
                .limit(CANCEL_BATCH)
                .all(&db.conn)
                .await?;
            if batch.is_empty() {
                break;
            }
            let ids: Vec<&str> = batch.iter().map(|b| b.id.as_str()).collect();
            if ids == last_batch {
                // None of these could be cancelled (a paid booking without its checkout):
                // stop rather than spin; the worker tries again on its next pass.
                tracing::error!(
                    event.id = event_id,
                    "confirmed bookings of a cancelled event could not be cancelled"
                );
                break;
            }
            for stored in &batch {
                self.cancel_stored_booking(stored).await?;
                bookings += 1;
            }
            last_batch = ids.into_iter().map(str::to_owned).collect();
        }
        if holds + bookings > 0 {
            tracing::info!(
                event.id = event_id,
                holds,
                bookings,
                "cancelled event wound up"
            );
        }
        Ok(())
    }

    /// Finishes the cancellation of every cancelled event that still has an active hold or a
    /// confirmed booking (after a crash in the middle of one). Run by the checkout worker.
    pub(super) async fn finish_cancellations(&self) -> Result<(), AppError> {
        let conn = &self.booking.db().conn;
        let cancelled = || {
            Query::select()
                .column(event::Column::Id)
                .from(event::Entity)
                .and_where(event::Column::Status.eq(EventStatus::Cancelled))
                .to_owned()
        };
        let mut events: Vec<i64> = hold::Entity::find()
            .select_only()
            .column(hold::Column::EventId)
            .distinct()
            .filter(hold::Column::Status.eq(HoldStatus::Active))
            .filter(hold::Column::EventId.in_subquery(cancelled()))
            .into_tuple()
            .all(conn)
            .await?;
        let with_bookings: Vec<i64> = booking::Entity::find()
            .select_only()
            .column(booking::Column::EventId)
            .distinct()
            .filter(booking::Column::Status.eq(BookingStatus::Confirmed))
            .filter(booking::Column::EventId.in_subquery(cancelled()))
            .into_tuple()
            .all(conn)
            .await?;
        events.extend(with_bookings);
        events.sort_unstable();
        events.dedup();
        for event_id in events {
            self.finish_cancellation(event_id).await?;
        }
        Ok(())
    }
}
