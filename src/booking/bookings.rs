//! Bookings: confirming a hold into a booking, cancelling a booking, reading one's bookings.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use tracing::instrument;

use super::BookingService;
use super::changes::{self, PendingChange};
use super::holds::ensure_active;
use super::idempotency::{self, Operation};
use super::model::{BookingStatus, BookingView, HoldStatus, IdempotencyKey, SeatStatus, now_ms};
use super::views;
use crate::auth::User;
use crate::error::AppError;
use crate::realtime::SeatChange;
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
            let stored = self.owned_hold(user, hold_id).await?;
            if self.settings.payments_enabled && stored.total_cents > 0 {
                return Err(AppError::BadInput(
                    "payments are on: pay for this hold with startCheckout".into(),
                ));
            }
            ensure_active(&stored, now_ms())?;
            self.db
                .retry(|| async {
                    let tx = self.db.begin_write().await?;
                    let (booking_id, published) = self.book_hold(&tx.txn, hold_id, None).await?;
                    if let Some(key) = &key {
                        idempotency::record(&tx.txn, &user.id, op, key, &booking_id).await?;
                    }
                    tx.commit().await?;
                    Ok((booking_id, published))
                })
                .await
        }
        .await;
        match outcome {
            Ok((booking_id, published)) => {
                metrics::counter!("onsale_bookings_confirmed_total").increment(1);
                self.bus.publish(published).await;
                tracing::info!(booking.id = %booking_id, "hold confirmed");
                views::booking(&self.db.conn, &booking_id).await
            }
            Err(err) => match self.replay_booking(user, op, key.as_ref()).await {
                Ok(Some(view)) => Ok(view),
                _ => Err(err),
            },
        }
    }

    /// Books the seats of an active, unexpired hold inside `txn`. Returns the booking id and
    /// the changes to publish after commit. Used by `confirmHold` and by the payment saga.
    pub(crate) async fn book_hold<C: ConnectionTrait>(
        &self,
        txn: &C,
        hold_id: &str,
        payment_intent_id: Option<&str>,
    ) -> Result<(String, Vec<SeatChange>), AppError> {
        let (current, locked) = self.lock_hold(txn, hold_id).await?;
        let seat_ids: Vec<i64> = locked.iter().map(|s| s.id).collect();
        let now = now_ms();
        ensure_active(&current, now)?;
        if locked.is_empty()
            || locked
                .iter()
                .any(|s| s.status != "HELD" || s.hold_id.as_deref() != Some(hold_id))
        {
            // Its seats were reclaimed after it ran out.
            return Err(AppError::HoldExpired);
        }
        let updated = hold::Entity::update_many()
            .col_expr(
                hold::Column::Status,
                Expr::value(HoldStatus::Confirmed.as_str()),
            )
            .col_expr(hold::Column::UpdatedAtMs, Expr::value(now))
            .filter(hold::Column::Id.eq(hold_id))
            .filter(hold::Column::Status.eq("ACTIVE"))
            .exec(txn)
            .await?;
        if updated.rows_affected != 1 {
            return Err(AppError::HoldNotActive("no longer active"));
        }
        let booking_id = uuid::Uuid::new_v4().to_string();
        booking::Entity::insert(booking::ActiveModel {
            id: Set(booking_id.clone()),
            event_id: Set(current.event_id),
            hold_id: Set(hold_id.to_owned()),
            user_id: Set(current.user_id.clone()),
            status: Set(BookingStatus::Confirmed.as_str().into()),
            total_cents: Set(current.total_cents),
            payment_intent_id: Set(payment_intent_id.map(str::to_owned)),
            created_at_ms: Set(now),
            updated_at_ms: Set(now),
        })
        .exec_without_returning(txn)
        .await?;
        hold_seat::Entity::update_many()
            .col_expr(hold_seat::Column::Active, Expr::value(false))
            .filter(hold_seat::Column::HoldId.eq(hold_id))
            .exec(txn)
            .await?;
        booking_seat::Entity::insert_many(seat_ids.iter().map(|id| booking_seat::ActiveModel {
            booking_id: Set(booking_id.clone()),
            seat_id: Set(*id),
            active: Set(true),
        }))
        .exec_without_returning(txn)
        .await?;
        seat::Entity::update_many()
            .col_expr(
                seat::Column::Status,
                Expr::value(SeatStatus::Booked.as_str()),
            )
            .col_expr(seat::Column::BookingId, Expr::value(booking_id.clone()))
            .col_expr(seat::Column::HoldId, Expr::value(Option::<String>::None))
            .col_expr(
                seat::Column::HoldExpiresAtMs,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(
                seat::Column::Version,
                Expr::col(seat::Column::Version).add(1),
            )
            .filter(seat::Column::Id.is_in(seat_ids.clone()))
            .filter(seat::Column::HoldId.eq(hold_id))
            .exec(txn)
            .await?;
        let pending = seat_ids
            .iter()
            .map(|id| PendingChange {
                seat_id: *id,
                status: SeatStatus::Booked,
                hold_expires_at_ms: None,
            })
            .collect();
        let published = changes::append(txn, current.event_id, pending).await?;
        Ok((booking_id, published))
    }

    /// Cancels a confirmed booking and frees its seats. Cancelling again returns it unchanged.
    #[instrument(skip_all, fields(booking.id = %booking_id, user.id = %user.id), err(level = "debug"))]
    pub async fn cancel_booking(
        &self,
        user: &User,
        booking_id: &str,
    ) -> Result<BookingView, AppError> {
        let stored = self.owned_booking(user, booking_id).await?;
        if stored.status != BookingStatus::Confirmed.as_str() {
            return views::booking(&self.db.conn, booking_id).await;
        }
        let _slot = self.admit_mutation()?;
        let paid = stored.payment_intent_id.is_some();
        let published = self
            .db
            .retry(|| async {
                let tx = self.db.begin_write().await?;
                let published = if paid {
                    self.cancel_paid_in(&tx.txn, &stored).await?
                } else {
                    self.cancel_in(&tx.txn, booking_id, BookingStatus::Cancelled)
                        .await?
                };
                tx.commit().await?;
                Ok(published)
            })
            .await?;
        metrics::counter!("onsale_bookings_cancelled_total").increment(1);
        self.bus.publish(published).await;
        tracing::info!(booking.id = %booking_id, "booking cancelled");
        if paid {
            // Refund (or cancel the authorisation) now; the worker retries if Stripe fails.
            self.run_outbox_step(&stored.hold_id).await;
        }
        views::booking(&self.db.conn, booking_id).await
    }

    /// Marks a confirmed booking `status` and frees its seats inside `txn`; nothing happens
    /// if it is no longer confirmed.
    pub(crate) async fn cancel_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        booking_id: &str,
        status: BookingStatus,
    ) -> Result<Vec<SeatChange>, AppError> {
        let seat_ids: Vec<i64> = booking_seat::Entity::find()
            .filter(booking_seat::Column::BookingId.eq(booking_id))
            .order_by_asc(booking_seat::Column::SeatId)
            .all(txn)
            .await?
            .into_iter()
            .map(|l| l.seat_id)
            .collect();
        self.lock_seats(txn, &seat_ids, false).await?;
        let now = now_ms();
        let updated = booking::Entity::update_many()
            .col_expr(booking::Column::Status, Expr::value(status.as_str()))
            .col_expr(booking::Column::UpdatedAtMs, Expr::value(now))
            .filter(booking::Column::Id.eq(booking_id))
            .filter(booking::Column::Status.eq("CONFIRMED"))
            .exec(txn)
            .await?;
        if updated.rows_affected != 1 {
            return Ok(Vec::new());
        }
        let event_id = booking::Entity::find_by_id(booking_id.to_owned())
            .select_only()
            .column(booking::Column::EventId)
            .into_tuple::<i64>()
            .one(txn)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("booking {booking_id} does not exist")))?;
        booking_seat::Entity::update_many()
            .col_expr(booking_seat::Column::Active, Expr::value(false))
            .filter(booking_seat::Column::BookingId.eq(booking_id))
            .exec(txn)
            .await?;
        seat::Entity::update_many()
            .col_expr(
                seat::Column::Status,
                Expr::value(SeatStatus::Available.as_str()),
            )
            .col_expr(seat::Column::BookingId, Expr::value(Option::<String>::None))
            .col_expr(
                seat::Column::Version,
                Expr::col(seat::Column::Version).add(1),
            )
            .filter(seat::Column::Id.is_in(seat_ids.clone()))
            .filter(seat::Column::BookingId.eq(booking_id))
            .exec(txn)
            .await?;
        let pending = seat_ids
            .into_iter()
            .map(|id| PendingChange {
                seat_id: id,
                status: SeatStatus::Available,
                hold_expires_at_ms: None,
            })
            .collect();
        changes::append(txn, event_id, pending).await
    }

    /// The caller's bookings, newest first.
    pub async fn my_bookings(&self, user: &User) -> Result<Vec<BookingView>, AppError> {
        let models = booking::Entity::find()
            .filter(booking::Column::UserId.eq(user.id.as_str()))
            .order_by_desc(booking::Column::CreatedAtMs)
            .limit(500)
            .all(&self.db.conn)
            .await?;
        views::bookings(&self.db.conn, models).await
    }

    /// The stored booking if `user` may act on it.
    pub(crate) async fn owned_booking(
        &self,
        user: &User,
        booking_id: &str,
    ) -> Result<booking::Model, AppError> {
        let stored = booking::Entity::find_by_id(booking_id.to_owned())
            .one(&self.db.conn)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("booking {booking_id} does not exist")))?;
        if stored.user_id != user.id && !user.admin {
            return Err(AppError::Forbidden(
                "this booking belongs to someone else".into(),
            ));
        }
        Ok(stored)
    }

    async fn replay_booking(
        &self,
        user: &User,
        op: Operation,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<BookingView>, AppError> {
        let Some(key) = key else { return Ok(None) };
        match idempotency::lookup(&self.db.conn, &user.id, op, key).await? {
            Some(id) => Ok(Some(views::booking(&self.db.conn, &id).await?)),
            None => Ok(None),
        }
    }
}
