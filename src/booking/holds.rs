//! Holds: taking seats (chosen or best available) all-or-nothing, releasing them, and reading
//! one's own holds.
//!
//! Locking: every write transaction locks seat rows first, in ascending id order, then the
//! hold or booking row, then the event's change counter. One order everywhere, so no deadlock.

use std::collections::HashMap;

use sea_orm::sea_query::{Condition, Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use tracing::instrument;

use super::BookingService;
use super::changes::{self, PendingChange};
use super::idempotency::{self, Operation};
use super::model::{
    HoldStatus, HoldView, IdempotencyKey, SeatCount, SeatIds, SeatStatus, SeatView, now_ms,
};
use super::views;
use crate::auth::User;
use crate::error::AppError;
use crate::realtime::SeatChange;
use entity::{event, hold, hold_seat, seat};

/// Seats a new hold may take at `now`: free, or held by a hold that has run out.
pub(crate) fn claimable(now: i64) -> Condition {
    Condition::any()
        .add(seat::Column::Status.eq("AVAILABLE"))
        .add(
            Condition::all()
                .add(seat::Column::Status.eq("HELD"))
                .add(seat::Column::HoldExpiresAtMs.lte(now)),
        )
}

impl BookingService {
    /// Holds exactly the requested seats for the caller, or none of them.
    #[instrument(skip_all, fields(event.id = event_id, user.id = %user.id), err(level = "debug"))]
    pub async fn hold_seats(
        &self,
        user: &User,
        event_id: i64,
        seat_ids: SeatIds,
        key: Option<IdempotencyKey>,
    ) -> Result<HoldView, AppError> {
        let op = Operation::HoldSeats;
        if let Some(view) = self.replay_hold(user, op, key.as_ref()).await? {
            return Ok(view);
        }
        let ids = seat_ids.as_slice();
        let outcome = async {
            // The gate first (it costs no database work): of many simultaneous requests for a
            // seat only one goes on; then load shedding.
            let twin = key
                .as_ref()
                .map(|k| format!("{}\u{1f}{}\u{1f}{}", user.id, op.as_str(), k.as_str()));
            let claim = self.gate.admit(event_id, ids, twin.as_deref()).await?;
            let _slot = self.admit_mutation()?;
            let decided = self
                .hold_chosen_seats(user, event_id, ids, key.as_ref(), op)
                .await;
            drop(claim);
            decided
        }
        .await;
        self.finish_hold(user, op, key.as_ref(), outcome).await
    }

    /// The database part of `hold_seats`: a cheap check without locks (most requests for a
    /// taken seat end there), then the locking transaction. The answer is built from what the
    /// transaction wrote, without reading it back.
    async fn hold_chosen_seats(
        &self,
        user: &User,
        event_id: i64,
        ids: &[i64],
        key: Option<&IdempotencyKey>,
        op: Operation,
    ) -> Result<(HoldView, Vec<SeatChange>), AppError> {
        let seats = seat::Entity::find()
            .filter(seat::Column::Id.is_in(ids.to_vec()))
            .all(&self.db.conn)
            .await?;
        if seats.len() != ids.len() || seats.iter().any(|s| s.event_id != event_id) {
            // Only then can the event itself be unknown: each of its seats proves it exists.
            self.require_event(event_id).await?;
        }
        check_requested(&seats, ids, event_id, now_ms())?;
        self.db
            .retry(|| async {
                let tx = self.db.begin_write().await?;
                let locked = self.lock_seats(&tx.txn, ids, false).await?;
                let now = now_ms();
                check_requested(&locked, ids, event_id, now)?;
                let (view, pending) = self
                    .create_hold(&tx.txn, user, event_id, &locked, now)
                    .await?;
                let published = changes::append(&tx.txn, event_id, pending).await?;
                if let Some(key) = key {
                    idempotency::record(&tx.txn, &user.id, op, key, &view.id).await?;
                }
                tx.commit().await?;
                Ok((view, published))
            })
            .await
    }

    /// Holds `count` seats chosen for the caller: adjacent in one row when possible, otherwise
    /// the best-priced free seats. Never waits on seats others are locking.
    #[instrument(skip_all, fields(event.id = event_id, user.id = %user.id), err(level = "debug"))]
    pub async fn hold_best_available(
        &self,
        user: &User,
        event_id: i64,
        count: SeatCount,
        section: Option<String>,
        key: Option<IdempotencyKey>,
    ) -> Result<HoldView, AppError> {
        let op = Operation::HoldBestAvailable;
        if let Some(view) = self.replay_hold(user, op, key.as_ref()).await? {
            return Ok(view);
        }
        self.require_event(event_id).await?;
        if let Some(name) = &section {
            let exists = seat::Entity::find()
                .filter(seat::Column::EventId.eq(event_id))
                .filter(seat::Column::Section.eq(name.as_str()))
                .one(&self.db.conn)
                .await?
                .is_some();
            if !exists {
                return Err(AppError::BadInput(format!(
                    "event {event_id} has no section {name:?}"
                )));
            }
        }
        let count = count.get();
        let _slot = self.admit_mutation()?;
        let outcome = self
            .db
            .retry(|| async {
                let candidates = self
                    .claimable_seats(&self.db.conn, event_id, section.as_deref(), None)
                    .await?;
                if candidates.len() < count {
                    return Err(AppError::SeatUnavailable {
                        seat_ids: Vec::new(),
                        message: format!("only {} seat(s) are available", candidates.len()),
                    });
                }
                let tx = self.db.begin_write().await?;
                let mut chosen = None;
                for block in adjacent_blocks(&candidates, count).into_iter().take(5) {
                    // A savepoint per try, so seats locked for a block we cannot use are let go.
                    let attempt = tx.txn.begin().await?;
                    let locked = self.lock_seats(&attempt, &block, true).await?;
                    let now = now_ms();
                    if locked.len() == count
                        && locked
                            .iter()
                            .all(|s| SeatStatus::of(s, now) == SeatStatus::Available)
                    {
                        attempt.commit().await?;
                        chosen = Some(locked);
                        break;
                    }
                    attempt.rollback().await?;
                }
                let locked = match chosen {
                    Some(locked) => locked,
                    None => {
                        let locked = self
                            .claimable_seats(&tx.txn, event_id, section.as_deref(), Some(count))
                            .await?;
                        if locked.len() < count {
                            return Err(AppError::SeatUnavailable {
                                seat_ids: Vec::new(),
                                message: format!("only {} seat(s) are available", locked.len()),
                            });
                        }
                        locked
                    }
                };
                let now = now_ms();
                let (view, pending) = self
                    .create_hold(&tx.txn, user, event_id, &locked, now)
                    .await?;
                let published = changes::append(&tx.txn, event_id, pending).await?;
                if let Some(key) = &key {
                    idempotency::record(&tx.txn, &user.id, op, key, &view.id).await?;
                }
                tx.commit().await?;
                Ok((view, published))
            })
            .await;
        self.finish_hold(user, op, key.as_ref(), outcome).await
    }

    /// Gives the hold's seats back. Only the holder (or an admin) may release.
    #[instrument(skip_all, fields(hold.id = %hold_id, user.id = %user.id), err(level = "debug"))]
    pub async fn release_hold(&self, user: &User, hold_id: &str) -> Result<HoldView, AppError> {
        self.owned_hold(user, hold_id).await?;
        let _slot = self.admit_mutation()?;
        let published = self
            .db
            .retry(|| async {
                let tx = self.db.begin_write().await?;
                let (current, locked) = self.lock_hold(&tx.txn, hold_id).await?;
                ensure_active(&current, now_ms())?;
                let published = self
                    .end_hold_in(&tx.txn, &current, &locked, HoldStatus::Released)
                    .await?
                    .ok_or(AppError::HoldNotActive("no longer active"))?;
                tx.commit().await?;
                Ok(published)
            })
            .await?;
        metrics::counter!("onsale_holds_released_total").increment(1);
        self.bus.publish(published).await;
        tracing::info!(hold.id = %hold_id, "hold released");
        views::hold(&self.db.conn, hold_id).await
    }

    /// The caller's hold, `None` if it does not exist, `FORBIDDEN` if it is someone else's.
    pub async fn hold(&self, user: &User, hold_id: &str) -> Result<Option<HoldView>, AppError> {
        match self.owned_hold(user, hold_id).await {
            Ok(_) => Ok(Some(views::hold(&self.db.conn, hold_id).await?)),
            Err(AppError::NotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The caller's holds, newest first, optionally of one status.
    pub async fn my_holds(
        &self,
        user: &User,
        status: Option<HoldStatus>,
    ) -> Result<Vec<HoldView>, AppError> {
        let models = hold::Entity::find()
            .filter(hold::Column::UserId.eq(user.id.as_str()))
            .order_by_desc(hold::Column::CreatedAtMs)
            .limit(500)
            .all(&self.db.conn)
            .await?;
        let all = views::holds(&self.db.conn, models).await?;
        Ok(all
            .into_iter()
            .filter(|h| status.is_none_or(|s| h.status == s))
            .collect())
    }

    // ---- shared steps -------------------------------------------------------------------

    pub(crate) async fn require_event(&self, event_id: i64) -> Result<(), AppError> {
        event::Entity::find_by_id(event_id)
            .one(&self.db.conn)
            .await?
            .map(|_| ())
            .ok_or_else(|| AppError::NotFound(format!("event {event_id} does not exist")))
    }

    /// The stored hold if `user` may act on it.
    pub(crate) async fn owned_hold(
        &self,
        user: &User,
        hold_id: &str,
    ) -> Result<hold::Model, AppError> {
        let stored = hold::Entity::find_by_id(hold_id.to_owned())
            .one(&self.db.conn)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("hold {hold_id} does not exist")))?;
        if stored.user_id != user.id && !user.admin {
            return Err(AppError::Forbidden(
                "this hold belongs to someone else".into(),
            ));
        }
        Ok(stored)
    }

    /// Locks the hold's seats (ascending ids), then reads the hold as it is now: the first
    /// step of every transaction that changes a hold.
    pub(crate) async fn lock_hold<C: ConnectionTrait>(
        &self,
        txn: &C,
        hold_id: &str,
    ) -> Result<(hold::Model, Vec<seat::Model>), AppError> {
        let seat_ids = hold_seat_ids(txn, hold_id).await?;
        let locked = self.lock_seats(txn, &seat_ids, false).await?;
        let current = hold::Entity::find_by_id(hold_id.to_owned())
            .one(txn)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("hold {hold_id} does not exist")))?;
        Ok((current, locked))
    }

    /// Ends a hold that is still `ACTIVE` as `status` and frees the seats it still has (after
    /// [`Self::lock_hold`]). Returns the logged changes, or `None` if it was not active.
    pub(crate) async fn end_hold_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        current: &hold::Model,
        locked: &[seat::Model],
        status: HoldStatus,
    ) -> Result<Option<Vec<SeatChange>>, AppError> {
        let updated = hold::Entity::update_many()
            .col_expr(hold::Column::Status, Expr::value(status.as_str()))
            .col_expr(hold::Column::UpdatedAtMs, Expr::value(now_ms()))
            .filter(hold::Column::Id.eq(current.id.as_str()))
            .filter(hold::Column::Status.eq("ACTIVE"))
            .exec(txn)
            .await?;
        if updated.rows_affected != 1 {
            return Ok(None);
        }
        let pending = self.free_seats_of_hold(txn, &current.id, locked).await?;
        Ok(Some(changes::append(txn, current.event_id, pending).await?))
    }

    /// Locks seat rows in ascending id order (PostgreSQL `FOR UPDATE`, bounded by the
    /// transaction's `lock_timeout`; with `skip_locked`, rows others hold are left out).
    /// SQLite needs no row locks: its single writer already holds the database.
    pub(crate) async fn lock_seats<C: ConnectionTrait>(
        &self,
        txn: &C,
        ids: &[i64],
        skip_locked: bool,
    ) -> Result<Vec<seat::Model>, AppError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = seat::Entity::find()
            .filter(seat::Column::Id.is_in(ids.to_vec()))
            .order_by_asc(seat::Column::Id);
        if self.db.is_postgres() {
            query = if skip_locked {
                query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            } else {
                query.lock(LockType::Update)
            };
        }
        Ok(query.all(txn).await?)
    }

    /// Free seats of an event in best-first order (price, then layout). With `lock_count`,
    /// locks that many of them, skipping rows others have locked.
    async fn claimable_seats<C: ConnectionTrait>(
        &self,
        conn: &C,
        event_id: i64,
        section: Option<&str>,
        lock_count: Option<usize>,
    ) -> Result<Vec<seat::Model>, AppError> {
        let mut query = seat::Entity::find()
            .filter(seat::Column::EventId.eq(event_id))
            .filter(claimable(now_ms()));
        if let Some(section) = section {
            query = query.filter(seat::Column::Section.eq(section));
        }
        query = query
            .order_by_desc(seat::Column::PriceCents)
            .order_by_asc(seat::Column::Position);
        if let Some(n) = lock_count {
            query = query.limit(u64::try_from(n).unwrap_or(u64::MAX));
            if self.db.is_postgres() {
                query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
            }
        }
        let mut seats = query.all(conn).await?;
        if lock_count.is_some() {
            seats.sort_by_key(|s| s.id);
        }
        Ok(seats)
    }

    /// Inserts an active hold on `locked` (already locked and checked claimable) and moves the
    /// seats to HELD; seats reclaimed from an expired hold first go back to AVAILABLE.
    async fn create_hold<C: ConnectionTrait>(
        &self,
        txn: &C,
        user: &User,
        event_id: i64,
        locked: &[seat::Model],
        now: i64,
    ) -> Result<(HoldView, Vec<PendingChange>), AppError> {
        let active = hold::Entity::find()
            .filter(hold::Column::UserId.eq(user.id.as_str()))
            .filter(hold::Column::EventId.eq(event_id))
            .filter(hold::Column::Status.eq("ACTIVE"))
            .filter(hold::Column::ExpiresAtMs.gt(now))
            .count(txn)
            .await?;
        if active >= self.settings.max_holds_per_user as u64 {
            return Err(AppError::BadInput(format!(
                "you already have {active} active holds for this event; confirm or release one first"
            )));
        }
        let ttl_ms = i64::try_from(self.settings.hold_ttl.as_millis()).unwrap_or(i64::MAX);
        let expires = now.saturating_add(ttl_ms);
        let hold_id = uuid::Uuid::new_v4().to_string();
        let ids: Vec<i64> = locked.iter().map(|s| s.id).collect();
        hold::Entity::insert(hold::ActiveModel {
            id: Set(hold_id.clone()),
            event_id: Set(event_id),
            user_id: Set(user.id.clone()),
            status: Set(HoldStatus::Active.as_str().into()),
            expires_at_ms: Set(expires),
            total_cents: Set(locked.iter().map(|s| s.price_cents).sum()),
            created_at_ms: Set(now),
            updated_at_ms: Set(now),
        })
        .exec_without_returning(txn)
        .await?;
        let reclaimed: Vec<i64> = locked
            .iter()
            .filter(|s| s.status == "HELD")
            .map(|s| s.id)
            .collect();
        if !reclaimed.is_empty() {
            hold_seat::Entity::update_many()
                .col_expr(hold_seat::Column::Active, Expr::value(false))
                .filter(hold_seat::Column::SeatId.is_in(reclaimed.clone()))
                .filter(hold_seat::Column::Active.eq(true))
                .exec(txn)
                .await?;
        }
        hold_seat::Entity::insert_many(ids.iter().map(|id| hold_seat::ActiveModel {
            hold_id: Set(hold_id.clone()),
            seat_id: Set(*id),
            active: Set(true),
        }))
        .exec_without_returning(txn)
        .await?;
        let updated = seat::Entity::update_many()
            .col_expr(seat::Column::Status, Expr::value(SeatStatus::Held.as_str()))
            .col_expr(seat::Column::HoldId, Expr::value(hold_id.clone()))
            .col_expr(seat::Column::HoldExpiresAtMs, Expr::value(expires))
            .col_expr(seat::Column::BookingId, Expr::value(Option::<String>::None))
            .col_expr(
                seat::Column::Version,
                Expr::col(seat::Column::Version).add(1),
            )
            .filter(seat::Column::Id.is_in(ids.clone()))
            .filter(claimable(now))
            .exec(txn)
            .await?;
        if updated.rows_affected != ids.len() as u64 {
            // Only reachable if a row lock was bypassed; the database stays the last word.
            return Err(AppError::seat_unavailable(ids));
        }
        let mut pending: Vec<PendingChange> = reclaimed
            .iter()
            .map(|id| PendingChange {
                seat_id: *id,
                status: SeatStatus::Available,
                hold_expires_at_ms: None,
            })
            .collect();
        pending.extend(ids.iter().map(|id| PendingChange {
            seat_id: *id,
            status: SeatStatus::Held,
            hold_expires_at_ms: Some(expires),
        }));
        // The hold as it now stands, from what this transaction wrote: no read-back needed.
        let view = HoldView {
            id: hold_id,
            event_id,
            user_id: user.id.clone(),
            seats: locked
                .iter()
                .map(|s| SeatView {
                    id: s.id,
                    section: s.section.clone(),
                    row: s.row_label.clone(),
                    number: s.number,
                    price_cents: s.price_cents,
                    status: SeatStatus::Held,
                    hold_expires_at_ms: Some(expires),
                })
                .collect(),
            status: HoldStatus::Active,
            expires_at_ms: expires,
            total_cents: locked.iter().map(|s| s.price_cents).sum(),
        };
        Ok((view, pending))
    }

    /// Returns the seats `hold_id` still holds (among `locked`) to AVAILABLE.
    pub(crate) async fn free_seats_of_hold<C: ConnectionTrait>(
        &self,
        txn: &C,
        hold_id: &str,
        locked: &[seat::Model],
    ) -> Result<Vec<PendingChange>, AppError> {
        hold_seat::Entity::update_many()
            .col_expr(hold_seat::Column::Active, Expr::value(false))
            .filter(hold_seat::Column::HoldId.eq(hold_id))
            .filter(hold_seat::Column::Active.eq(true))
            .exec(txn)
            .await?;
        let freed: Vec<i64> = locked
            .iter()
            .filter(|s| s.status == "HELD" && s.hold_id.as_deref() == Some(hold_id))
            .map(|s| s.id)
            .collect();
        if freed.is_empty() {
            return Ok(Vec::new());
        }
        seat::Entity::update_many()
            .col_expr(
                seat::Column::Status,
                Expr::value(SeatStatus::Available.as_str()),
            )
            .col_expr(seat::Column::HoldId, Expr::value(Option::<String>::None))
            .col_expr(
                seat::Column::HoldExpiresAtMs,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(
                seat::Column::Version,
                Expr::col(seat::Column::Version).add(1),
            )
            .filter(seat::Column::Id.is_in(freed.clone()))
            .filter(seat::Column::HoldId.eq(hold_id))
            .exec(txn)
            .await?;
        Ok(freed
            .into_iter()
            .map(|id| PendingChange {
                seat_id: id,
                status: SeatStatus::Available,
                hold_expires_at_ms: None,
            })
            .collect())
    }

    /// With an idempotency key already used: the hold the first call made.
    async fn replay_hold(
        &self,
        user: &User,
        op: Operation,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<HoldView>, AppError> {
        let Some(key) = key else { return Ok(None) };
        match idempotency::lookup(&self.db.conn, &user.id, op, key).await? {
            Some(id) => Ok(Some(views::hold(&self.db.conn, &id).await?)),
            None => Ok(None),
        }
    }

    /// Publishes a committed hold and returns its view; a failure with a key that a
    /// concurrent twin call has meanwhile used returns that call's hold instead.
    async fn finish_hold(
        &self,
        user: &User,
        op: Operation,
        key: Option<&IdempotencyKey>,
        outcome: Result<(HoldView, Vec<SeatChange>), AppError>,
    ) -> Result<HoldView, AppError> {
        match outcome {
            Ok((view, published)) => {
                metrics::counter!("onsale_holds_created_total").increment(1);
                self.bus.publish(published).await;
                tracing::info!(hold.id = %view.id, "seats held");
                Ok(view)
            }
            Err(err) => match self.replay_hold(user, op, key).await {
                Ok(Some(view)) => Ok(view),
                _ => {
                    if let AppError::SeatUnavailable { .. } = err {
                        metrics::counter!("onsale_seat_conflicts_total").increment(1);
                    }
                    Err(err)
                }
            },
        }
    }
}

/// All requested seats exist, belong to the event and are claimable at `now`.
fn check_requested(
    seats: &[seat::Model],
    ids: &[i64],
    event_id: i64,
    now: i64,
) -> Result<(), AppError> {
    let by_id: HashMap<i64, &seat::Model> = seats.iter().map(|s| (s.id, s)).collect();
    if let Some(missing) = ids.iter().find(|id| !by_id.contains_key(id)) {
        return Err(AppError::NotFound(format!("seat {missing} does not exist")));
    }
    if let Some(other) = seats.iter().find(|s| s.event_id != event_id) {
        return Err(AppError::BadInput(format!(
            "seat {} belongs to another event",
            other.id
        )));
    }
    let taken: Vec<i64> = seats
        .iter()
        .filter(|s| SeatStatus::of(s, now) != SeatStatus::Available)
        .map(|s| s.id)
        .collect();
    if taken.is_empty() {
        Ok(())
    } else {
        Err(AppError::seat_unavailable(taken))
    }
}

/// The hold can still be acted on at `now`.
pub(crate) fn ensure_active(hold: &hold::Model, now: i64) -> Result<(), AppError> {
    match HoldStatus::of(hold, now) {
        HoldStatus::Active => Ok(()),
        HoldStatus::Expired => Err(AppError::HoldExpired),
        HoldStatus::Confirmed => Err(AppError::HoldNotActive("already confirmed")),
        HoldStatus::Released => Err(AppError::HoldNotActive("already released")),
    }
}

/// Seat ids of a hold, ascending.
pub(crate) async fn hold_seat_ids<C: ConnectionTrait>(
    conn: &C,
    hold_id: &str,
) -> Result<Vec<i64>, AppError> {
    Ok(hold_seat::Entity::find()
        .filter(hold_seat::Column::HoldId.eq(hold_id))
        .order_by_asc(hold_seat::Column::SeatId)
        .all(conn)
        .await?
        .into_iter()
        .map(|l| l.seat_id)
        .collect())
}

/// Runs of `count` consecutive seat numbers in one row, best first (price, then layout).
fn adjacent_blocks(candidates: &[seat::Model], count: usize) -> Vec<Vec<i64>> {
    let mut by_row: HashMap<(&str, &str), Vec<&seat::Model>> = HashMap::new();
    for s in candidates {
        by_row
            .entry((&s.section, &s.row_label))
            .or_default()
            .push(s);
    }
    let mut blocks: Vec<(i64, i32, Vec<i64>)> = Vec::new();
    for seats in by_row.values_mut() {
        seats.sort_by_key(|s| s.number);
        for window in seats.windows(count) {
            let consecutive = window
                .windows(2)
                .all(|pair| pair[1].number == pair[0].number + 1);
            if consecutive {
                let price: i64 = window.iter().map(|s| s.price_cents).min().unwrap_or(0);
                let position = window[0].position;
                blocks.push((price, position, window.iter().map(|s| s.id).collect()));
            }
        }
    }
    blocks.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    blocks
        .into_iter()
        .map(|(_, _, mut ids)| {
            ids.sort_unstable();
            ids
        })
        .collect()
}
