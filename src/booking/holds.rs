//! Holds: taking seats (chosen or best available) all-or-nothing, releasing them, and reading
//! one's own holds.
//!
//! Locking: every write transaction locks seat rows first, in ascending id order, then the
//! hold or booking row, then the event's change counter. One order everywhere, so no deadlock.
//! A queued request's transaction takes its queue's fence row before all of them; nothing
//! else takes that row, so it cannot close a cycle.

use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use tracing::instrument;

use super::BookingService;
use super::admission::Admission;
use super::areas::buyer_places;
use super::best_available::adjacent_blocks;
use super::events::Viewer;
use super::idempotency::{self, Operation};
use super::rules::{check_requested, claimable, ensure_active};
use super::seats::{Claim, reclaim_run_out, set_claim};
use super::views;
use crate::auth::User;
use crate::db::{RowLock, fence};
use crate::domain::area::{AreaQuantities, HoldAreaView};
use crate::domain::clock::{millis, now_ms};
use crate::domain::input::{IdempotencyKey, SeatCount, SeatIds};
use crate::domain::limits::{MAX_HOLD_LIFETIME, MY_LIST_LIMIT};
use crate::domain::sale::{BuyerLimits, Extension, SaleWindow};
use crate::domain::seat_change::PendingChange;
use crate::domain::status::{BookingStatus, HoldStatus, SeatStatus, seat_status_at};
use crate::domain::views::{HoldView, SeatView};
use crate::error::AppError;
use crate::realtime::{Published, log};
use entity::{booking, booking_seat, category, event, hold, hold_area, hold_seat, seat};

/// Which seats `holdBestAvailable` may choose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeatFilter {
    pub section: Option<String>,
    pub category_id: Option<i64>,
    /// `Some(true)`: accessible seats only; `Some(false)`: others only; `None`: any.
    pub accessible: Option<bool>,
}

impl SeatFilter {
    /// Whether a seat of the chosen section passes the category and accessibility filters.
    fn admits(&self, seat: &seat::Model) -> bool {
        self.category_id.is_none_or(|c| seat.category_id == Some(c))
            && self.accessible.is_none_or(|a| seat.accessible == a)
    }
}

/// How many adjacent blocks `holdBestAvailable` tries to lock before it takes any free seats.
const BLOCKS_TRIED: usize = 5;

impl BookingService {
    /// Holds exactly the requested seats for the caller, or none of them.
    #[instrument(skip_all, fields(event.id = event_id, user.id = %user.id), err(level = "debug"))]
    pub async fn hold_seats(
        &self,
        user: &User,
        event_id: i64,
        seat_ids: SeatIds,
        areas: AreaQuantities,
        key: Option<IdempotencyKey>,
        admission: Admission<'_>,
    ) -> Result<HoldView, AppError> {
        self.check_admission(user, event_id, admission).await?;
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
            // Places of an area known sold out are refused without a database round trip.
            self.gate
                .refuse_sold_out(areas.as_slice().iter().map(|(id, _)| *id))?;
            // A hold of places only has no seat to claim at the gate.
            let claim = if ids.is_empty() {
                None
            } else {
                Some(self.gate.admit(event_id, ids, twin.as_deref()).await?)
            };
            let _slot = self.admit_mutation()?;
            let decided = self
                .hold_chosen_seats(user, event_id, ids, &areas, key.as_ref(), op, admission)
                .await;
            drop(claim);
            decided
        }
        .await;
        self.finish_hold(user, op, key.as_ref(), outcome).await
    }

    /// The database part of `hold_seats`: a cheap check without locks (most requests for a
    /// taken seat end there), then the locking transaction. The answer is built from what the
    /// transaction wrote, without reading it back. A queued request passes its queue's fence
    /// first, so a worker whose lease was taken over applies nothing.
    #[expect(clippy::too_many_arguments, reason = "the parts of one hold request")]
    async fn hold_chosen_seats(
        &self,
        user: &User,
        event_id: i64,
        ids: &[i64],
        areas: &AreaQuantities,
        key: Option<&IdempotencyKey>,
        op: Operation,
        admission: Admission<'_>,
    ) -> Result<(HoldView, Published), AppError> {
        let event = self.open_event(user, event_id).await?;
        BuyerLimits::of(&event)
            .check_order(ids.len().saturating_add(areas.places()))
            .map_err(AppError::limit_exceeded)?;
        if !ids.is_empty() {
            let seats = seat::Entity::find()
                .filter(seat::Column::Id.is_in(ids.to_vec()))
                .all(&self.db.conn)
                .await?;
            check_requested(&seats, ids, event_id, now_ms())?;
        }
        // The hold's id is this request's id: an attempt after one whose COMMIT may have
        // succeeded first looks for it (see [`committed_hold`]).
        let hold_id = uuid::Uuid::new_v4().to_string();
        let (hold_id, tried) = (hold_id.as_str(), &AtomicBool::new(false));
        self.db
            .write_event(event_id, |txn| async move {
                let txn = &*txn;
                if let Some(token) = admission.fence() {
                    fence::pass_queue_fence(txn, event_id, token).await?;
                }
                if tried.swap(true, Ordering::AcqRel)
                    && let Some(committed) = committed_hold(txn, hold_id).await?
                {
                    return Ok(committed);
                }
                let locked = self.db.lock_seats(txn, ids, RowLock::Wait).await?;
                let now = now_ms();
                check_requested(&locked, ids, event_id, now)?;
                self.create_hold(txn, user, event_id, &locked, areas, now, key, op, hold_id)
                    .await
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
        filter: SeatFilter,
        key: Option<IdempotencyKey>,
        admission: Admission<'_>,
    ) -> Result<HoldView, AppError> {
        self.check_admission(user, event_id, admission).await?;
        let op = Operation::HoldBestAvailable;
        if let Some(view) = self.replay_hold(user, op, key.as_ref()).await? {
            return Ok(view);
        }
        let event = self.open_event(user, event_id).await?;
        BuyerLimits::of(&event)
            .check_order(count.get())
            .map_err(AppError::limit_exceeded)?;
        if let Some(category_id) = filter.category_id {
            let of_event = category::Entity::find_by_id(category_id)
                .one(&self.db.conn)
                .await?
                .is_some_and(|c| c.event_id == event_id);
            if !of_event {
                return Err(AppError::BadInput(format!(
                    "event {event_id} has no category {category_id}"
                )));
            }
        }
        let section = filter.section.clone();
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
        let outcome = async {
            // Every free seat of the section as committed now, so that neighbours outside the
            // filter count; the transaction locks without waiting and falls back to whatever
            // is free under its locks.
            let free = self
                .claimable_seats(&self.db.conn, event_id, section.as_deref(), None)
                .await?;
            let eligible = free.iter().filter(|s| filter.admits(s)).count();
            if eligible < count {
                return Err(only_available(eligible));
            }
            let (free, section, key, filter) = (&free, section.as_deref(), key.as_ref(), &filter);
            let hold_id = uuid::Uuid::new_v4().to_string();
            let (hold_id, tried) = (hold_id.as_str(), &AtomicBool::new(false));
            self.db
                .write_event(event_id, |txn| async move {
                    let txn = &*txn;
                    if let Some(token) = admission.fence() {
                        fence::pass_queue_fence(txn, event_id, token).await?;
                    }
                    if tried.swap(true, Ordering::AcqRel)
                        && let Some(committed) = committed_hold(txn, hold_id).await?
                    {
                        return Ok(committed);
                    }
                    let mut chosen = None;
                    for block in adjacent_blocks(free, count, |s| filter.admits(s))
                        .into_iter()
                        .take(BLOCKS_TRIED)
                    {
                        // A savepoint per try, so seats locked for a block we cannot use are
                        // let go.
                        let attempt = txn.begin().await?;
                        let locked = self
                            .db
                            .lock_seats(&attempt, &block, RowLock::SkipLocked)
                            .await?;
                        let now = now_ms();
                        if locked.len() == count
                            && locked
                                .iter()
                                .all(|s| seat_status_at(s, now) == SeatStatus::Available)
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
                                .claimable_seats(txn, event_id, section, Some((count, filter)))
                                .await?;
                            if locked.len() < count {
                                return Err(only_available(locked.len()));
                            }
                            locked
                        }
                    };
                    let no_places = AreaQuantities::default();
                    self.create_hold(
                        txn,
                        user,
                        event_id,
                        &locked,
                        &no_places,
                        now_ms(),
                        key,
                        op,
                        hold_id,
                    )
                    .await
                })
                .await
        }
        .await;
        self.finish_hold(user, op, key.as_ref(), outcome).await
    }

    /// Gives the hold's seats back. Only the holder (or an admin) may release.
    #[instrument(skip_all, fields(hold.id = %hold_id, user.id = %user.id), err(level = "debug"))]
    pub async fn release_hold(&self, user: &User, hold_id: &str) -> Result<HoldView, AppError> {
        let stored = views::owned_hold(&self.db.conn, user, hold_id).await?;
        let _slot = self.admit_mutation()?;
        let published = self
            .db
            .write_event(stored.event_id, |txn| async move {
                let txn = &*txn;
                let (current, locked) = self.lock_hold(txn, hold_id).await?;
                ensure_active(&current, now_ms())?;
                self.end_hold_in(txn, &current, &locked, HoldStatus::Released)
                    .await?
                    .ok_or(AppError::HoldNotActive("no longer active"))
            })
            .await?;
        metrics::counter!("onsale_holds_released_total").increment(1);
        self.bus.publish_all(published).await;
        tracing::info!(hold.id = %hold_id, "hold released");
        views::hold(&self.db.conn, hold_id).await
    }

    /// Keeps the caller's active hold longer: its expiry moves by the hold TTL, at most the
    /// event's `maxHoldExtensions` times and never beyond two hours from its creation.
    #[instrument(skip_all, fields(hold.id = %hold_id, user.id = %user.id), err(level = "debug"))]
    pub async fn extend_hold(
        &self,
        user: &User,
        hold_id: &str,
        key: Option<IdempotencyKey>,
    ) -> Result<HoldView, AppError> {
        let op = Operation::ExtendHold;
        if let Some(view) = self.replay_hold(user, op, key.as_ref()).await? {
            return Ok(view);
        }
        let stored = views::owned_hold(&self.db.conn, user, hold_id).await?;
        let outcome = async {
            ensure_active(&stored, now_ms())?;
            self.open_event(user, stored.event_id).await?;
            let _slot = self.admit_mutation()?;
            let key = key.as_ref();
            self.db
                .write(|txn| async move {
                    let txn = &*txn;
                    let (current, locked) = self.lock_hold(txn, hold_id).await?;
                    ensure_active(&current, now_ms())?;
                    let allowed = event::Entity::find_by_id(current.event_id)
                        .select_only()
                        .column(event::Column::MaxHoldExtensions)
                        .into_tuple::<i32>()
                        .one(txn)
                        .await?
                        .unwrap_or(0);
                    let expires_at_ms = Extension {
                        expires_at_ms: current.expires_at_ms,
                        created_at_ms: current.created_at_ms,
                        used: current.extensions_used,
                        allowed,
                    }
                    .next_expiry(millis(self.settings.hold_ttl), millis(MAX_HOLD_LIFETIME))
                    .map_err(AppError::limit_exceeded)?;
                    let counted = hold::Entity::update_many()
                        .col_expr(
                            hold::Column::ExtensionsUsed,
                            Expr::value(current.extensions_used + 1),
                        )
                        .filter(hold::Column::Id.eq(hold_id))
                        .filter(hold::Column::ExtensionsUsed.eq(current.extensions_used))
                        .exec(txn)
                        .await?;
                    if counted.rows_affected != 1 {
                        return Err(AppError::HoldNotActive("being changed by another request"));
                    }
                    let published = self
                        .extend_hold_in(txn, &current, &locked, expires_at_ms)
                        .await?;
                    idempotency::record_if(txn, &user.id, op, key, hold_id).await?;
                    Ok(published)
                })
                .await
        }
        .await;
        match outcome {
            Ok(published) => {
                self.bus.publish_all(published).await;
                tracing::info!(hold.id = %hold_id, "hold extended");
                views::hold(&self.db.conn, hold_id).await
            }
            Err(err) => match self.replay_hold(user, op, key.as_ref()).await {
                Ok(Some(view)) => Ok(view),
                _ => Err(err),
            },
        }
    }

    /// The caller's hold, `None` if it does not exist, `FORBIDDEN` if it is someone else's.
    pub async fn hold(&self, user: &User, hold_id: &str) -> Result<Option<HoldView>, AppError> {
        match views::owned_hold(&self.db.conn, user, hold_id).await {
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
            .limit(MY_LIST_LIMIT)
            .all(&self.db.conn)
            .await?;
        let all = views::holds(&self.db.conn, models).await?;
        Ok(all
            .into_iter()
            .filter(|h| status.is_none_or(|s| h.status == s))
            .collect())
    }

    /// Whether the database shows any of these seats held or booked right now (the queue
    /// worker asks, to tell a seat really taken from one another request was deciding about).
    pub async fn any_taken(&self, seat_ids: &[i64]) -> Result<bool, AppError> {
        let now = now_ms();
        Ok(seat::Entity::find()
            .filter(seat::Column::Id.is_in(seat_ids.to_vec()))
            .all(&self.db.conn)
            .await?
            .iter()
            .any(|s| seat_status_at(s, now) != SeatStatus::Available))
    }

    // ---- shared steps -------------------------------------------------------------------

    /// The admission rule in front of every hold (a no-op without a policy).
    async fn check_admission(
        &self,
        user: &User,
        event_id: i64,
        admission: Admission<'_>,
    ) -> Result<(), AppError> {
        match (admission, self.admissions.get()) {
            (Admission::Direct(token), Some(policy)) => policy.admit(user, event_id, token).await,
            _ => Ok(()),
        }
    }

    /// The event if it takes new holds from `user` now: a DRAFT is unknown to customers, and
    /// an event off sale or outside its window is `NOT_ON_SALE`. The hold's transaction checks
    /// again under the event's lock ([`Self::create_hold`]).
    pub(crate) async fn open_event(
        &self,
        user: &User,
        event_id: i64,
    ) -> Result<event::Model, AppError> {
        let event = self.visible_event(event_id, Viewer::of(user.admin)).await?;
        SaleWindow::of(&event)
            .check(now_ms())
            .map_err(AppError::not_on_sale)?;
        Ok(event)
    }

    /// Locks the hold's seats (ascending ids), then reads the hold as it is now: the first
    /// step of every transaction that changes a hold.
    pub async fn lock_hold<C: ConnectionTrait>(
        &self,
        txn: &C,
        hold_id: &str,
    ) -> Result<(hold::Model, Vec<seat::Model>), AppError> {
        let seat_ids = hold_seat_ids(txn, hold_id).await?;
        let locked = self.db.lock_seats(txn, &seat_ids, RowLock::Wait).await?;
        let current = views::existing(
            hold::Entity::find_by_id(hold_id.to_owned())
                .one(txn)
                .await?,
            "hold",
            hold_id,
        )?;
        Ok((current, locked))
    }

    /// Ends a hold that is still `ACTIVE` as `status` and frees the seats it still has (after
    /// [`Self::lock_hold`]) and its places. Returns the changes, or `None` if it was not active.
    pub async fn end_hold_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        current: &hold::Model,
        locked: &[seat::Model],
        status: HoldStatus,
    ) -> Result<Option<Published>, AppError> {
        let updated = hold::Entity::update_many()
            .col_expr(hold::Column::Status, Expr::value(status))
            .col_expr(hold::Column::UpdatedAtMs, Expr::value(now_ms()))
            .filter(hold::Column::Id.eq(current.id.as_str()))
            .filter(hold::Column::Status.eq(HoldStatus::Active))
            .exec(txn)
            .await?;
        if updated.rows_affected != 1 {
            return Ok(None);
        }
        let pending = self.free_seats_of_hold(txn, &current.id, locked).await?;
        let areas = self.free_places_of_hold(txn, &current.id).await?;
        Ok(Some(
            log::append(txn, current.event_id, pending)
                .await?
                .with_areas(areas),
        ))
    }

    /// Releases a hold's seats inside `txn` if it is still active (nothing otherwise).
    pub async fn release_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        hold_id: &str,
    ) -> Result<Published, AppError> {
        let (current, locked) = self.lock_hold(txn, hold_id).await?;
        Ok(self
            .end_hold_in(txn, &current, &locked, HoldStatus::Released)
            .await?
            .unwrap_or_default())
    }

    /// Moves an active hold's expiry (and its seats') to `expires_at_ms` inside `txn`, after
    /// [`Self::lock_hold`]; returns the logged changes.
    pub async fn extend_hold_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        current: &hold::Model,
        locked: &[seat::Model],
        expires_at_ms: i64,
    ) -> Result<Published, AppError> {
        hold::Entity::update_many()
            .col_expr(hold::Column::ExpiresAtMs, Expr::value(expires_at_ms))
            .col_expr(hold::Column::UpdatedAtMs, Expr::value(now_ms()))
            .filter(hold::Column::Id.eq(current.id.as_str()))
            .exec(txn)
            .await?;
        seat::Entity::update_many()
            .col_expr(seat::Column::HoldExpiresAtMs, Expr::value(expires_at_ms))
            .filter(seat::Column::HoldId.eq(current.id.as_str()))
            .exec(txn)
            .await?;
        let pending = locked
            .iter()
            .map(|s| PendingChange::held(s.id, expires_at_ms))
            .collect();
        log::append(txn, current.event_id, pending).await
    }

    /// Free seats of an event in best-first order (price, then layout). With `lock`, locks
    /// that many of them that `filter` admits, skipping rows others have locked.
    async fn claimable_seats<C: ConnectionTrait>(
        &self,
        conn: &C,
        event_id: i64,
        section: Option<&str>,
        lock: Option<(usize, &SeatFilter)>,
    ) -> Result<Vec<seat::Model>, AppError> {
        let mut query = seat::Entity::find()
            .filter(seat::Column::EventId.eq(event_id))
            .filter(claimable(now_ms()));
        if let Some(section) = section {
            query = query.filter(seat::Column::Section.eq(section));
        }
        let lock_count = lock.map(|(n, filter)| {
            if let Some(category_id) = filter.category_id {
                query = query
                    .clone()
                    .filter(seat::Column::CategoryId.eq(category_id));
            }
            if let Some(accessible) = filter.accessible {
                query = query
                    .clone()
                    .filter(seat::Column::Accessible.eq(accessible));
            }
            n
        });
        query = query
            .order_by_desc(seat::Column::PriceCents)
            .order_by_asc(seat::Column::Position);
        if let Some(n) = lock_count {
            query = self.db.locking(
                query.limit(u64::try_from(n).unwrap_or(u64::MAX)),
                RowLock::SkipLocked,
            );
        }
        let mut seats = query.all(conn).await?;
        if lock_count.is_some() {
            seats.sort_by_key(|s| s.id);
        }
        Ok(seats)
    }

    /// Inserts an active hold on `locked` (already locked and checked claimable), moves the
    /// seats to HELD (seats reclaimed from an expired hold first go back to AVAILABLE), logs
    /// the changes and records the idempotency key. Returns the hold as it now stands, from
    /// what this transaction wrote (no read-back), and the logged changes.
    #[expect(clippy::too_many_arguments, reason = "the steps of one transaction")]
    async fn create_hold<C: ConnectionTrait>(
        &self,
        txn: &C,
        user: &User,
        event_id: i64,
        locked: &[seat::Model],
        areas: &AreaQuantities,
        now: i64,
        key: Option<&IdempotencyKey>,
        op: Operation,
        hold_id: &str,
    ) -> Result<(HoldView, Published), AppError> {
        // After the seats' row locks, before the areas': one buyer's holds of this event go
        // one at a time from here to their commit, so that parallel holds of one buyer see
        // each other and cannot beat the per-buyer limits (MAX_HOLDS_PER_USER, the event's
        // maxSeatsPerBuyer).
        self.db.lock_buyer(txn, event_id, &user.id).await?;
        let active = hold::Entity::find()
            .filter(hold::Column::UserId.eq(user.id.as_str()))
            .filter(hold::Column::EventId.eq(event_id))
            .filter(hold::Column::Status.eq(HoldStatus::Active))
            .filter(hold::Column::ExpiresAtMs.gt(now))
            .count(txn)
            .await?;
        if active >= self.settings.max_holds_per_user as u64 {
            return Err(AppError::BadInput(format!(
                "you already have {active} active holds for this event; confirm or release one first"
            )));
        }
        let expires = now.saturating_add(millis(self.settings.hold_ttl));
        let hold_id = hold_id.to_owned();
        let ids: Vec<i64> = locked.iter().map(|s| s.id).collect();
        // Areas after seats, in ascending id: the lock order of every transaction.
        let places = self.take_places(txn, event_id, areas, now).await?;
        let total_cents = locked
            .iter()
            .map(|s| s.price_cents)
            .sum::<i64>()
            .saturating_add(places.total_cents());
        hold::Entity::insert(hold::ActiveModel {
            id: Set(hold_id.clone()),
            event_id: Set(event_id),
            user_id: Set(user.id.clone()),
            status: Set(HoldStatus::Active),
            expires_at_ms: Set(expires),
            total_cents: Set(total_cents),
            created_at_ms: Set(now),
            updated_at_ms: Set(now),
            extensions_used: Set(0),
        })
        .exec_without_returning(txn)
        .await?;
        record_hold_lines(txn, &hold_id, &places.lines).await?;
        let reclaimed = reclaim_run_out(txn, locked).await?;
        if !ids.is_empty() {
            hold_seat::Entity::insert_many(ids.iter().map(|id| hold_seat::ActiveModel {
                hold_id: Set(hold_id.clone()),
                seat_id: Set(*id),
                active: Set(true),
            }))
            .exec_without_returning(txn)
            .await?;
            let updated = set_claim(Claim::Held {
                hold_id: &hold_id,
                expires_at_ms: expires,
            })
            .filter(seat::Column::Id.is_in(ids.clone()))
            .filter(claimable(now))
            .exec(txn)
            .await?;
            if updated.rows_affected != ids.len() as u64 {
                // Only reachable if a row lock was bypassed; the database stays the last word.
                return Err(AppError::seat_unavailable(ids));
            }
        }
        let pending: Vec<PendingChange> = reclaimed
            .iter()
            .map(|id| PendingChange::available(*id))
            .chain(ids.iter().map(|id| PendingChange::held(*id, expires)))
            .collect();
        let seat_changes = log::append(txn, event_id, pending).await?;
        // Last, after every row lock: the event as committed now, kept from changing until
        // this commit (a status or limit change committed meanwhile is seen here; one after
        // waits for this commit).
        let event = self
            .db
            .share_event(txn, event_id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("event {event_id} does not exist")))?;
        SaleWindow::of(&event)
            .check(now)
            .map_err(AppError::not_on_sale)?;
        let limits = BuyerLimits::of(&event);
        limits
            .check_order(locked.len().saturating_add(places.places()))
            .map_err(AppError::limit_exceeded)?;
        if limits.per_buyer.is_some() {
            // Every hold of this buyer committed before is counted (the buyer lock above).
            let total = buyer_seats(txn, &user.id, event_id, now)
                .await?
                .saturating_add(buyer_places(txn, &user.id, event_id, now).await?);
            limits
                .check_buyer(total)
                .map_err(AppError::limit_exceeded)?;
        }
        idempotency::record_if(txn, &user.id, op, key, &hold_id).await?;
        let view = HoldView {
            id: hold_id,
            event_id,
            user_id: user.id.clone(),
            seats: locked
                .iter()
                .map(|s| SeatView {
                    hold_expires_at_ms: Some(expires),
                    ..SeatView::with_status(s, SeatStatus::Held)
                })
                .collect(),
            areas: places.lines,
            status: HoldStatus::Active,
            expires_at_ms: expires,
            total_cents,
            created_at_ms: now,
            extensions_left: event.max_hold_extensions.max(0),
        };
        let published = seat_changes.with_areas(places.changes);
        Ok((view, published))
    }

    /// Returns the seats `hold_id` still holds (among `locked`) to AVAILABLE.
    async fn free_seats_of_hold<C: ConnectionTrait>(
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
            .filter(|s| s.status == SeatStatus::Held && s.hold_id.as_deref() == Some(hold_id))
            .map(|s| s.id)
            .collect();
        if freed.is_empty() {
            return Ok(Vec::new());
        }
        set_claim(Claim::Free)
            .filter(seat::Column::Id.is_in(freed.clone()))
            .filter(seat::Column::HoldId.eq(hold_id))
            .exec(txn)
            .await?;
        Ok(freed.into_iter().map(PendingChange::available).collect())
    }

    /// With an idempotency key already used: the hold the first call made.
    async fn replay_hold(
        &self,
        user: &User,
        op: Operation,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<HoldView>, AppError> {
        idempotency::replay(&self.db.conn, &user.id, op, key, |id| async move {
            views::hold(&self.db.conn, &id).await
        })
        .await
    }

    /// Publishes a committed hold and returns its view; a failure with a key that a
    /// concurrent twin call has meanwhile used returns that call's hold instead.
    async fn finish_hold(
        &self,
        user: &User,
        op: Operation,
        key: Option<&IdempotencyKey>,
        outcome: Result<(HoldView, Published), AppError>,
    ) -> Result<HoldView, AppError> {
        match outcome {
            Ok((view, published)) => {
                metrics::counter!("onsale_holds_created_total").increment(1);
                self.bus.publish_all(published).await;
                tracing::info!(hold.id = %view.id, "seats held");
                Ok(view)
            }
            Err(err) => match self.replay_hold(user, op, key).await {
                Ok(Some(view)) => Ok(view),
                _ => {
                    if let AppError::SeatUnavailable { .. } | AppError::AreaUnavailable { .. } = err
                    {
                        metrics::counter!("onsale_seat_conflicts_total").increment(1);
                    }
                    Err(err)
                }
            },
        }
    }
}

/// The hold `hold_id` if an earlier attempt of this request committed it although its answer
/// was lost with the connection (the COMMIT's outcome was unknown): then that hold is the
/// answer, and its changes are already in the log (subscribers catch up from there).
async fn committed_hold<C: ConnectionTrait>(
    txn: &C,
    hold_id: &str,
) -> Result<Option<(HoldView, Published)>, AppError> {
    if hold::Entity::find_by_id(hold_id.to_owned())
        .one(txn)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    tracing::warn!(hold.id = %hold_id, "a hold whose commit seemed to fail had committed");
    let view = views::hold(txn, hold_id).await?;
    // Its changes may still wait for their numbers (PostgreSQL): publishing settles them.
    let published = Published {
        unnumbered: (txn.get_database_backend() == sea_orm::DbBackend::Postgres)
            .then_some(view.event_id),
        ..Published::default()
    };
    Ok(Some((view, published)))
}

fn only_available(n: usize) -> AppError {
    AppError::SeatUnavailable {
        seat_ids: Vec::new(),
        message: format!("only {n} seat(s) are available"),
    }
}

/// Seats and places `user_id` has of the event at `now`: in active unexpired holds (this
/// transaction's new one included) and in confirmed bookings.
async fn buyer_seats<C: ConnectionTrait>(
    txn: &C,
    user_id: &str,
    event_id: i64,
    now: i64,
) -> Result<i64, AppError> {
    let holds = Query::select()
        .column(hold::Column::Id)
        .from(hold::Entity)
        .and_where(hold::Column::UserId.eq(user_id))
        .and_where(hold::Column::EventId.eq(event_id))
        .and_where(hold::Column::Status.eq(HoldStatus::Active))
        .and_where(hold::Column::ExpiresAtMs.gt(now))
        .to_owned();
    let in_holds = hold_seat::Entity::find()
        .filter(hold_seat::Column::Active.eq(true))
        .filter(hold_seat::Column::HoldId.in_subquery(holds))
        .count(txn)
        .await?;
    let bookings = Query::select()
        .column(booking::Column::Id)
        .from(booking::Entity)
        .and_where(booking::Column::UserId.eq(user_id))
        .and_where(booking::Column::EventId.eq(event_id))
        .and_where(booking::Column::Status.eq(BookingStatus::Confirmed))
        .to_owned();
    let in_bookings = booking_seat::Entity::find()
        .filter(booking_seat::Column::Active.eq(true))
        .filter(booking_seat::Column::BookingId.in_subquery(bookings))
        .count(txn)
        .await?;
    Ok(i64::try_from(in_holds + in_bookings).unwrap_or(i64::MAX))
}

/// Records the places a new hold took (after its row exists).
async fn record_hold_lines<C: ConnectionTrait>(
    txn: &C,
    hold_id: &str,
    lines: &[HoldAreaView],
) -> Result<(), AppError> {
    if lines.is_empty() {
        return Ok(());
    }
    hold_area::Entity::insert_many(lines.iter().map(|l| hold_area::ActiveModel {
        hold_id: Set(hold_id.to_owned()),
        area_id: Set(l.area_id),
        quantity: Set(l.quantity),
        price_cents: Set(l.price_cents),
        active: Set(true),
    }))
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Seat ids of a hold, ascending.
async fn hold_seat_ids<C: ConnectionTrait>(conn: &C, hold_id: &str) -> Result<Vec<i64>, AppError> {
    Ok(hold_seat::Entity::find()
        .filter(hold_seat::Column::HoldId.eq(hold_id))
        .order_by_asc(hold_seat::Column::SeatId)
        .all(conn)
        .await?
        .into_iter()
        .map(|l| l.seat_id)
        .collect())
}
