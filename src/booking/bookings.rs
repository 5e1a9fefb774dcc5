//! Bookings: confirming a hold into a booking, cancelling a booking, reading one's bookings.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use tracing::instrument;

use super::BookingService;
use super::idempotency::{self, Operation};
use super::rules::{ensure_active, still_held_by};
use super::seats::{Claim, set_claim};
use super::tickets;
use super::views;
use crate::auth::User;
use crate::db::RowLock;
use crate::domain::area::HoldAreaView;
use crate::domain::clock::now_ms;
use crate::domain::input::IdempotencyKey;
use crate::domain::limits::MY_LIST_LIMIT;
use crate::domain::seat_change::PendingChange;
use crate::domain::status::{BookingStatus, HoldStatus};
use crate::domain::views::BookingView;
use crate::error::AppError;
use crate::realtime::{Published, log};
use crate::webhooks::{self, BookingData, WebhookEvent};
use entity::{booking, booking_seat, hold, hold_seat, seat};

impl BookingService {
    /// Turns the caller's active hold into a confirmed booking (payments off, or a free hold).
    #[instrument(skip_all, fields(hold.id = %hold_id, user.id = %user.id), err(level = "debug"))]
    pub async fn confirm_hold(
        &self,
        user: &User,
        hold_id: &str,
        key: Option<IdempotencyKey>,
    ) -> Result<BookingView, AppError> {
        let op = Operation::ConfirmHold;
        if let Some(view) = self.replay_booking(user, op, key.as_ref()).await? {
            return Ok(view);
        }
        let outcome = async {
            let _slot = self.admit_mutation()?;
            let stored = views::owned_hold(&self.db.conn, user, hold_id).await?;
            if self.settings.payments_enabled && stored.total_cents > 0 {
                return Err(AppError::BadInput(
                    "payments are on: pay for this hold with startCheckout".into(),
                ));
            }
            ensure_active(&stored, now_ms())?;
            let key = key.as_ref();
            self.db
                .write_event(stored.event_id, |txn| async move {
                    let txn = &*txn;
                    let (booking_id, published) = self.book_hold(txn, hold_id, None).await?;
                    idempotency::record_if(txn, &user.id, op, key, &booking_id).await?;
                    Ok((booking_id, published))
                })
                .await
        }
        .await;
        match outcome {
            Ok((booking_id, published)) => {
                metrics::counter!("onsale_bookings_confirmed_total").increment(1);
                self.bus.publish_all(published).await;
                tracing::info!(booking.id = %booking_id, "hold confirmed");
                views::booking(&self.db.conn, &booking_id).await
            }
            Err(err) => match self.replay_booking(user, op, key.as_ref()).await {
                Ok(Some(view)) => Ok(view),
                _ => Err(err),
            },
        }
    }

    /// Books the seats and places of an active, unexpired hold inside `txn`, with one ticket
    /// per seat and per place and the `booking.confirmed` webhook (written in the same
    /// transaction). Returns the booking id and the changes to publish after commit. Used by
    /// `confirmHold` and by the payment saga.
    pub async fn book_hold<C: ConnectionTrait>(
        &self,
        txn: &C,
        hold_id: &str,
        payment_intent_id: Option<&str>,
    ) -> Result<(String, Published), AppError> {
        let (current, locked) = self.lock_hold(txn, hold_id).await?;
        let seat_ids: Vec<i64> = locked.iter().map(|s| s.id).collect();
        let now = now_ms();
        ensure_active(&current, now)?;
        if !locked.is_empty() && !still_held_by(&locked, hold_id) {
            // Its seats were reclaimed after it ran out (its places are checked as they are
            // booked; a hold of places only has no seats).
            return Err(AppError::HoldExpired);
        }
        let updated = hold::Entity::update_many()
            .col_expr(hold::Column::Status, Expr::value(HoldStatus::Confirmed))
            .col_expr(hold::Column::UpdatedAtMs, Expr::value(now))
            .filter(hold::Column::Id.eq(hold_id))
            .filter(hold::Column::Status.eq(HoldStatus::Active))
            .exec(txn)
            .await?;
        if updated.rows_affected != 1 {
            return Err(AppError::HoldNotActive("no longer active"));
        }
        let booked = booking::Model {
            id: uuid::Uuid::new_v4().to_string(),
            event_id: current.event_id,
            hold_id: hold_id.to_owned(),
            user_id: current.user_id.clone(),
            status: BookingStatus::Confirmed,
            total_cents: current.total_cents,
            payment_intent_id: payment_intent_id.map(str::to_owned),
            created_at_ms: now,
            updated_at_ms: now,
        };
        let booking_id = booked.id.clone();
        booking::Entity::insert(booked.clone().into_active_model())
            .exec_without_returning(txn)
            .await?;
        hold_seat::Entity::update_many()
            .col_expr(hold_seat::Column::Active, Expr::value(false))
            .filter(hold_seat::Column::HoldId.eq(hold_id))
            .exec(txn)
            .await?;
        if !seat_ids.is_empty() {
            booking_seat::Entity::insert_many(seat_ids.iter().map(|id| {
                booking_seat::ActiveModel {
                    booking_id: Set(booking_id.clone()),
                    seat_id: Set(*id),
                    active: Set(true),
                }
            }))
            .exec_without_returning(txn)
            .await?;
            set_claim(Claim::Booked {
                booking_id: &booking_id,
            })
            .filter(seat::Column::Id.is_in(seat_ids.clone()))
            .filter(seat::Column::HoldId.eq(hold_id))
            .exec(txn)
            .await?;
        }
        let (areas, lines) = self.book_places(txn, hold_id, &booking_id).await?;
        tickets::issue_for_seats(txn, &booking_id, current.event_id, &seat_ids, now).await?;
        tickets::issue_for_places(txn, &booking_id, current.event_id, &lines, now).await?;
        webhooks::record(
            txn,
            WebhookEvent::booking(
                BookingData::of(&booked, &seat_ids, &lines),
                booked.status,
                booked.event_id,
            ),
        )
        .await?;
        let pending = seat_ids.into_iter().map(PendingChange::booked).collect();
        let published = log::append(txn, current.event_id, pending).await?;
        Ok((booking_id, published.with_areas(areas)))
    }

    /// Publishes what cancelling a booking changed.
    pub async fn finish_cancel(&self, booking_id: &str, published: Published) {
        metrics::counter!("onsale_bookings_cancelled_total").increment(1);
        self.bus.publish_all(published).await;
        tracing::info!(booking.id = %booking_id, "booking cancelled");
    }

    /// Marks a confirmed booking `status` and frees its seats and places inside `txn`;
    /// nothing happens if it is no longer confirmed.
    pub async fn cancel_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        booking_id: &str,
        status: BookingStatus,
    ) -> Result<Published, AppError> {
        let seat_ids: Vec<i64> = booking_seat::Entity::find()
            .filter(booking_seat::Column::BookingId.eq(booking_id))
            .order_by_asc(booking_seat::Column::SeatId)
            .all(txn)
            .await?
            .into_iter()
            .map(|l| l.seat_id)
            .collect();
        self.db.lock_seats(txn, &seat_ids, RowLock::Wait).await?;
        let now = now_ms();
        let updated = booking::Entity::update_many()
            .col_expr(booking::Column::Status, Expr::value(status))
            .col_expr(booking::Column::UpdatedAtMs, Expr::value(now))
            .filter(booking::Column::Id.eq(booking_id))
            .filter(booking::Column::Status.eq(BookingStatus::Confirmed))
            .exec(txn)
            .await?;
        if updated.rows_affected != 1 {
            return Ok(Published::default());
        }
        let cancelled = views::existing(
            booking::Entity::find_by_id(booking_id.to_owned())
                .one(txn)
                .await?,
            "booking",
            booking_id,
        )?;
        let event_id = cancelled.event_id;
        webhooks::record(
            txn,
            WebhookEvent::booking(
                BookingData::of(
                    &cancelled,
                    &seat_ids,
                    &booking_lines(txn, booking_id).await?,
                ),
                status,
                event_id,
            ),
        )
        .await?;
        booking_seat::Entity::update_many()
            .col_expr(booking_seat::Column::Active, Expr::value(false))
            .filter(booking_seat::Column::BookingId.eq(booking_id))
            .exec(txn)
            .await?;
        if !seat_ids.is_empty() {
            set_claim(Claim::Free)
                .filter(seat::Column::Id.is_in(seat_ids.clone()))
                .filter(seat::Column::BookingId.eq(booking_id))
                .exec(txn)
                .await?;
        }
        let areas = self.cancel_places(txn, booking_id).await?;
        let pending = seat_ids.into_iter().map(PendingChange::available).collect();
        Ok(log::append(txn, event_id, pending).await?.with_areas(areas))
    }

    /// Marks a cancelled booking refunded (once the money is back), inside `txn`.
    pub async fn mark_refunded<C: ConnectionTrait>(
        &self,
        txn: &C,
        booking_id: &str,
    ) -> Result<(), AppError> {
        let updated = booking::Entity::update_many()
            .col_expr(
                booking::Column::Status,
                Expr::value(BookingStatus::Refunded),
            )
            .col_expr(booking::Column::UpdatedAtMs, Expr::value(now_ms()))
            .filter(booking::Column::Id.eq(booking_id))
            .filter(booking::Column::Status.eq(BookingStatus::Cancelled))
            .exec(txn)
            .await?;
        if updated.rows_affected != 1 {
            return Ok(());
        }
        let refunded = views::existing(
            booking::Entity::find_by_id(booking_id.to_owned())
                .one(txn)
                .await?,
            "booking",
            booking_id,
        )?;
        let seat_ids: Vec<i64> = booking_seat::Entity::find()
            .select_only()
            .column(booking_seat::Column::SeatId)
            .filter(booking_seat::Column::BookingId.eq(booking_id))
            .order_by_asc(booking_seat::Column::SeatId)
            .into_tuple()
            .all(txn)
            .await?;
        webhooks::record(
            txn,
            WebhookEvent::booking(
                BookingData::of(&refunded, &seat_ids, &booking_lines(txn, booking_id).await?),
                refunded.status,
                refunded.event_id,
            ),
        )
        .await
    }

    /// The caller's bookings, newest first.
    pub async fn my_bookings(&self, user: &User) -> Result<Vec<BookingView>, AppError> {
        let models = booking::Entity::find()
            .filter(booking::Column::UserId.eq(user.id.as_str()))
            .order_by_desc(booking::Column::CreatedAtMs)
            .limit(MY_LIST_LIMIT)
            .all(&self.db.conn)
            .await?;
        views::bookings(&self.db.conn, models).await
    }

    async fn replay_booking(
        &self,
        user: &User,
        op: Operation,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<BookingView>, AppError> {
        idempotency::replay(&self.db.conn, &user.id, op, key, |id| async move {
            views::booking(&self.db.conn, &id).await
        })
        .await
    }
}

/// The general-admission lines of one booking, by area id.
async fn booking_lines<C: ConnectionTrait>(
    txn: &C,
    booking_id: &str,
) -> Result<Vec<HoldAreaView>, AppError> {
    Ok(
        super::areas::lines_of_bookings(txn, vec![booking_id.to_owned()])
            .await?
            .remove(booking_id)
            .unwrap_or_default(),
    )
}
