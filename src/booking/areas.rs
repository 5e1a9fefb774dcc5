//! General-admission areas: places sold by count next to numbered seats.
//!
//! The area row is the lock that decides. Every transaction that changes an area's counts
//! locks its row first (areas by ascending id, after any seats), then changes the counts with
//! one guarded `UPDATE` (`held = held + q WHERE capacity - held - booked - blocked >= q`) and
//! bumps its `version`; the named check `ck_areas_counts` is the last word on both backends.
//! Which hold or booking owns places is in `hold_areas` / `booking_areas`, whose `active`
//! flag says whether the places still count: a row is switched off exactly once, by whoever
//! takes the area's lock first (release, expiry, confirm, cancel, or a new hold reclaiming the
//! places of a hold that ran out), and only that transaction moves the counts.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use tracing::instrument;

use super::BookingService;
use crate::db::RowLock;
use crate::domain::area::{AreaChange, AreaQuantities, AreaView, HoldAreaView};
use crate::domain::clock::now_ms;
use crate::domain::status::{BookingStatus, HoldStatus};
use crate::error::AppError;
use entity::{area, booking, booking_area, category, hold, hold_area};

/// Places taken for a new hold: what the hold records and what to publish.
pub(crate) struct TakenPlaces {
    pub lines: Vec<HoldAreaView>,
    pub changes: Vec<AreaChange>,
}

impl TakenPlaces {
    pub fn total_cents(&self) -> i64 {
        self.lines
            .iter()
            .map(|l| l.quantity.saturating_mul(l.price_cents))
            .fold(0, i64::saturating_add)
    }

    pub fn places(&self) -> usize {
        self.lines
            .iter()
            .map(|l| usize::try_from(l.quantity).unwrap_or(usize::MAX))
            .fold(0, usize::saturating_add)
    }
}

/// Which counter of an area a change moves, and by how much.
#[derive(Clone, Copy, Debug)]
enum Move {
    /// Places of a hold given back (release, expiry, reclaimed after running out).
    Unhold(i64),
    /// A hold's places confirmed into a booking.
    Book(i64),
    /// A booking's places freed (cancellation, refund).
    Unbook(i64),
}

impl BookingService {
    /// Locks the area rows (ascending ids; after any seats, before the event's counter).
    async fn lock_areas<C: ConnectionTrait>(
        &self,
        txn: &C,
        ids: &[i64],
    ) -> Result<Vec<area::Model>, AppError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let query = area::Entity::find()
            .filter(area::Column::Id.is_in(ids.to_vec()))
            .order_by_asc(area::Column::Id);
        Ok(self.db.locking(query, RowLock::Wait).all(txn).await?)
    }

    /// Takes the wanted places of the event's areas for a new hold inside `txn` (the caller
    /// records the hold's lines once its row exists), all or nothing: an area with too few places is `SEAT_UNAVAILABLE` naming it (every such area),
    /// an area of another event `BAD_USER_INPUT`. Places of holds that have run out are
    /// reclaimed first when needed, so expiry returns places before any sweep.
    pub(crate) async fn take_places<C: ConnectionTrait>(
        &self,
        txn: &C,
        event_id: i64,
        wanted: &AreaQuantities,
        now: i64,
    ) -> Result<TakenPlaces, AppError> {
        if wanted.is_empty() {
            return Ok(TakenPlaces {
                lines: Vec::new(),
                changes: Vec::new(),
            });
        }
        let ids: Vec<i64> = wanted.as_slice().iter().map(|(id, _)| *id).collect();
        let locked: HashMap<i64, area::Model> = self
            .lock_areas(txn, &ids)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        let mut rows = Vec::with_capacity(ids.len());
        for (id, quantity) in wanted.as_slice() {
            match locked.get(id) {
                Some(row) if row.event_id == event_id => rows.push((row, *quantity)),
                _ => {
                    return Err(AppError::BadInput(format!(
                        "event {event_id} has no area {id}"
                    )));
                }
            }
        }
        let prices = category_prices(txn, rows.iter().map(|(a, _)| a.category_id)).await?;
        let mut short = Vec::new();
        let mut lines = Vec::with_capacity(rows.len());
        let mut changes = Vec::with_capacity(rows.len());
        for (row, quantity) in rows {
            let available = row.capacity - row.held - row.booked - row.blocked;
            let reclaimed = if available < quantity {
                reclaim_run_out(txn, row.id, now).await?
            } else {
                0
            };
            let updated = area::Entity::update_many()
                .col_expr(
                    area::Column::Held,
                    Expr::col(area::Column::Held).sub(reclaimed).add(quantity),
                )
                .col_expr(
                    area::Column::Version,
                    Expr::col(area::Column::Version).add(1),
                )
                .filter(area::Column::Id.eq(row.id))
                .filter(
                    Expr::col(area::Column::Capacity)
                        .sub(Expr::col(area::Column::Held))
                        .sub(Expr::col(area::Column::Booked))
                        .sub(Expr::col(area::Column::Blocked))
                        .add(reclaimed)
                        .gte(quantity),
                )
                .exec_with_returning(txn)
                .await?;
            let Some(after) = updated.into_iter().next() else {
                if available + reclaimed <= 0 {
                    // Seen under the area's lock: tell the gate, so that the next requests
                    // for it are answered without the database.
                    self.gate.saw_sold_out(row.id, row.version);
                }
                short.push(row.id);
                continue;
            };
            changes.push(AreaView::of(&after, 0).change());
            lines.push(HoldAreaView {
                area_id: row.id,
                quantity,
                price_cents: prices.get(&row.category_id).copied().unwrap_or(0),
            });
        }
        if !short.is_empty() {
            return Err(AppError::area_unavailable(short));
        }
        Ok(TakenPlaces { lines, changes })
    }

    /// Gives back the places `hold_id` still holds (release, expiry), inside `txn`.
    pub(crate) async fn free_places_of_hold<C: ConnectionTrait>(
        &self,
        txn: &C,
        hold_id: &str,
    ) -> Result<Vec<AreaChange>, AppError> {
        let lines = hold_area::Entity::find()
            .filter(hold_area::Column::HoldId.eq(hold_id))
            .filter(hold_area::Column::Active.eq(true))
            .order_by_asc(hold_area::Column::AreaId)
            .all(txn)
            .await?;
        let ids: Vec<i64> = lines.iter().map(|l| l.area_id).collect();
        self.lock_areas(txn, &ids).await?;
        let mut changes = Vec::with_capacity(lines.len());
        for line in lines {
            if deactivate_hold_line(txn, hold_id, line.area_id).await? {
                changes.push(move_counts(txn, line.area_id, Move::Unhold(line.quantity)).await?);
            }
        }
        Ok(changes)
    }

    /// Moves a hold's places into `booking_id` (held → booked) inside `txn`; returns the
    /// changes and the booking's lines. A hold whose places were reclaimed after it ran out
    /// is `HOLD_EXPIRED`.
    pub(crate) async fn book_places<C: ConnectionTrait>(
        &self,
        txn: &C,
        hold_id: &str,
        booking_id: &str,
    ) -> Result<(Vec<AreaChange>, Vec<HoldAreaView>), AppError> {
        let lines = hold_area::Entity::find()
            .filter(hold_area::Column::HoldId.eq(hold_id))
            .order_by_asc(hold_area::Column::AreaId)
            .all(txn)
            .await?;
        if lines.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let ids: Vec<i64> = lines.iter().map(|l| l.area_id).collect();
        self.lock_areas(txn, &ids).await?;
        let mut changes = Vec::with_capacity(lines.len());
        for line in &lines {
            if !deactivate_hold_line(txn, hold_id, line.area_id).await? {
                return Err(AppError::HoldExpired);
            }
            changes.push(move_counts(txn, line.area_id, Move::Book(line.quantity)).await?);
        }
        booking_area::Entity::insert_many(lines.iter().map(|l| booking_area::ActiveModel {
            booking_id: Set(booking_id.to_owned()),
            area_id: Set(l.area_id),
            quantity: Set(l.quantity),
            price_cents: Set(l.price_cents),
            active: Set(true),
        }))
        .exec_without_returning(txn)
        .await?;
        let booked = lines
            .iter()
            .map(|l| HoldAreaView {
                area_id: l.area_id,
                quantity: l.quantity,
                price_cents: l.price_cents,
            })
            .collect();
        Ok((changes, booked))
    }

    /// Frees the places of a booking being cancelled (booked → available) inside `txn`.
    pub(crate) async fn cancel_places<C: ConnectionTrait>(
        &self,
        txn: &C,
        booking_id: &str,
    ) -> Result<Vec<AreaChange>, AppError> {
        let lines = booking_area::Entity::find()
            .filter(booking_area::Column::BookingId.eq(booking_id))
            .filter(booking_area::Column::Active.eq(true))
            .order_by_asc(booking_area::Column::AreaId)
            .all(txn)
            .await?;
        let ids: Vec<i64> = lines.iter().map(|l| l.area_id).collect();
        self.lock_areas(txn, &ids).await?;
        let mut changes = Vec::with_capacity(lines.len());
        for line in lines {
            let switched = booking_area::Entity::update_many()
                .col_expr(booking_area::Column::Active, Expr::value(false))
                .filter(booking_area::Column::BookingId.eq(booking_id))
                .filter(booking_area::Column::AreaId.eq(line.area_id))
                .filter(booking_area::Column::Active.eq(true))
                .exec(txn)
                .await?;
            if switched.rows_affected == 1 {
                changes.push(move_counts(txn, line.area_id, Move::Unbook(line.quantity)).await?);
            }
        }
        Ok(changes)
    }

    /// Takes `quantity` available places of an area off sale (admins).
    #[instrument(skip_all, fields(area.id = area_id), err(level = "debug"))]
    pub async fn block_area_places(
        &self,
        area_id: i64,
        quantity: i32,
    ) -> Result<AreaView, AppError> {
        self.change_blocked(area_id, quantity, true).await
    }

    /// Puts `quantity` blocked places of an area back on sale (admins); more than are blocked
    /// is `BAD_USER_INPUT`.
    #[instrument(skip_all, fields(area.id = area_id), err(level = "debug"))]
    pub async fn unblock_area_places(
        &self,
        area_id: i64,
        quantity: i32,
    ) -> Result<AreaView, AppError> {
        self.change_blocked(area_id, quantity, false).await
    }

    async fn change_blocked(
        &self,
        area_id: i64,
        quantity: i32,
        block: bool,
    ) -> Result<AreaView, AppError> {
        if quantity < 1 {
            return Err(AppError::BadInput("quantity must be at least 1".into()));
        }
        let quantity = i64::from(quantity);
        let stored = area::Entity::find_by_id(area_id)
            .one(&self.db.conn)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("area {area_id} does not exist")))?;
        let _slot = self.admit_mutation()?;
        let after = self
            .db
            .write_event(stored.event_id, |txn| async move {
                let txn = &*txn;
                let locked = self.lock_areas(txn, &[area_id]).await?;
                let Some(row) = locked.first() else {
                    return Err(AppError::NotFound(format!("area {area_id} does not exist")));
                };
                let reclaimed =
                    if block && row.capacity - row.held - row.booked - row.blocked < quantity {
                        reclaim_run_out(txn, area_id, now_ms()).await?
                    } else {
                        0
                    };
                let (delta, guard) = if block {
                    (
                        quantity,
                        Expr::col(area::Column::Capacity)
                            .sub(Expr::col(area::Column::Held))
                            .sub(Expr::col(area::Column::Booked))
                            .sub(Expr::col(area::Column::Blocked))
                            .add(reclaimed)
                            .gte(quantity),
                    )
                } else {
                    (-quantity, Expr::col(area::Column::Blocked).gte(quantity))
                };
                let updated = area::Entity::update_many()
                    .col_expr(
                        area::Column::Blocked,
                        Expr::col(area::Column::Blocked).add(delta),
                    )
                    .col_expr(
                        area::Column::Held,
                        Expr::col(area::Column::Held).sub(reclaimed),
                    )
                    .col_expr(
                        area::Column::Version,
                        Expr::col(area::Column::Version).add(1),
                    )
                    .filter(area::Column::Id.eq(area_id))
                    .filter(guard)
                    .exec_with_returning(txn)
                    .await?;
                match updated.into_iter().next() {
                    Some(after) => Ok(after),
                    None if block => Err(AppError::area_unavailable(vec![area_id])),
                    None => Err(AppError::BadInput(format!(
                        "area {area_id} has fewer than {quantity} blocked places"
                    ))),
                }
            })
            .await?;
        let view = AreaView::of(&after, 0);
        self.bus.publish_areas(vec![view.change()]).await;
        tracing::info!(
            area.id = area_id,
            block,
            quantity,
            "area places (un)blocked"
        );
        Ok(view)
    }
}

/// Switches off a hold's line of one area if it still counts; whether it did.
async fn deactivate_hold_line<C: ConnectionTrait>(
    txn: &C,
    hold_id: &str,
    area_id: i64,
) -> Result<bool, AppError> {
    let switched = hold_area::Entity::update_many()
        .col_expr(hold_area::Column::Active, Expr::value(false))
        .filter(hold_area::Column::HoldId.eq(hold_id))
        .filter(hold_area::Column::AreaId.eq(area_id))
        .filter(hold_area::Column::Active.eq(true))
        .exec(txn)
        .await?;
    Ok(switched.rows_affected == 1)
}

/// Moves one area's counts (its row already locked) and returns them as committed.
async fn move_counts<C: ConnectionTrait>(
    txn: &C,
    area_id: i64,
    how: Move,
) -> Result<AreaChange, AppError> {
    let mut update = area::Entity::update_many().col_expr(
        area::Column::Version,
        Expr::col(area::Column::Version).add(1),
    );
    update = match how {
        Move::Unhold(q) => {
            update.col_expr(area::Column::Held, Expr::col(area::Column::Held).sub(q))
        }
        Move::Book(q) => update
            .col_expr(area::Column::Held, Expr::col(area::Column::Held).sub(q))
            .col_expr(area::Column::Booked, Expr::col(area::Column::Booked).add(q)),
        Move::Unbook(q) => {
            update.col_expr(area::Column::Booked, Expr::col(area::Column::Booked).sub(q))
        }
    };
    let after = update
        .filter(area::Column::Id.eq(area_id))
        .exec_with_returning(txn)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| AppError::Internal(format!("area {area_id} vanished")))?;
    Ok(AreaView::of(&after, 0).change())
}

/// Lets go of the places of holds that ran out but still count in the area (its row locked
/// by the caller); returns how many places that frees. The caller subtracts them from `held`.
async fn reclaim_run_out<C: ConnectionTrait>(
    txn: &C,
    area_id: i64,
    now: i64,
) -> Result<i64, AppError> {
    let lines = hold_area::Entity::find()
        .filter(hold_area::Column::AreaId.eq(area_id))
        .filter(hold_area::Column::Active.eq(true))
        .filter(hold_area::Column::HoldId.in_subquery(run_out_holds(now)))
        .all(txn)
        .await?;
    let mut freed = 0;
    for line in lines {
        if deactivate_hold_line(txn, &line.hold_id, area_id).await? {
            freed += line.quantity;
        }
    }
    Ok(freed)
}

/// Ids of holds still stored ACTIVE whose expiry has passed at `now`.
fn run_out_holds(now: i64) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(hold::Column::Id)
        .from(hold::Entity)
        .and_where(hold::Column::Status.eq(HoldStatus::Active))
        .and_where(hold::Column::ExpiresAtMs.lte(now))
        .to_owned()
}

/// The first instant after `now` at which an active hold with places in `area_ids` runs out
/// (from then on its places show as available).
pub(crate) async fn next_place_expiry<C: ConnectionTrait>(
    conn: &C,
    area_ids: Vec<i64>,
    now: i64,
) -> Result<Option<i64>, AppError> {
    Ok(hold::Entity::find()
        .select_only()
        .column(hold::Column::ExpiresAtMs)
        .filter(hold::Column::Status.eq(HoldStatus::Active))
        .filter(hold::Column::ExpiresAtMs.gt(now))
        .filter(
            hold::Column::Id.in_subquery(
                Query::select()
                    .column(hold_area::Column::HoldId)
                    .from(hold_area::Entity)
                    .and_where(hold_area::Column::AreaId.is_in(area_ids))
                    .and_where(hold_area::Column::Active.eq(true))
                    .to_owned(),
            ),
        )
        .order_by_asc(hold::Column::ExpiresAtMs)
        .into_tuple::<i64>()
        .one(conn)
        .await?)
}

/// Every area's version for `event_id`, by id: what a stored seat map is checked against,
/// since place counts change without the event's `seq`.
pub(crate) async fn area_versions<C: ConnectionTrait>(
    conn: &C,
    event_id: i64,
) -> Result<Vec<(i64, i64)>, AppError> {
    Ok(area::Entity::find()
        .select_only()
        .column(area::Column::Id)
        .column(area::Column::Version)
        .filter(area::Column::EventId.eq(event_id))
        .order_by_asc(area::Column::Id)
        .into_tuple()
        .all(conn)
        .await?)
}

/// The price of one place of each category.
async fn category_prices<C: ConnectionTrait>(
    conn: &C,
    ids: impl IntoIterator<Item = i64>,
) -> Result<HashMap<i64, i64>, AppError> {
    Ok(category::Entity::find()
        .filter(category::Column::Id.is_in(ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|c| (c.id, c.price_cents))
        .collect())
}

/// The areas of each of these events (ascending id), as they show at `now`: places of holds
/// that ran out count as available even before the sweeper has returned them.
pub(crate) async fn areas_of<C: ConnectionTrait>(
    conn: &C,
    event_ids: &[i64],
    now: i64,
) -> Result<HashMap<i64, Vec<AreaView>>, AppError> {
    let rows = area::Entity::find()
        .filter(area::Column::EventId.is_in(event_ids.to_vec()))
        .order_by_asc(area::Column::Id)
        .all(conn)
        .await?;
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let run_out: HashMap<i64, i64> = hold_area::Entity::find()
        .select_only()
        .column(hold_area::Column::AreaId)
        .column(hold_area::Column::Quantity)
        .filter(hold_area::Column::AreaId.is_in(rows.iter().map(|a| a.id)))
        .filter(hold_area::Column::Active.eq(true))
        .filter(hold_area::Column::HoldId.in_subquery(run_out_holds(now)))
        .into_tuple::<(i64, i64)>()
        .all(conn)
        .await?
        .into_iter()
        .fold(HashMap::new(), |mut sums, (id, q)| {
            *sums.entry(id).or_insert(0) += q;
            sums
        });
    let mut by_event: HashMap<i64, Vec<AreaView>> = HashMap::new();
    for row in rows {
        let view = AreaView::of(&row, run_out.get(&row.id).copied().unwrap_or(0));
        by_event.entry(row.event_id).or_default().push(view);
    }
    Ok(by_event)
}

/// The area lines of each hold, ascending by area.
pub(crate) async fn lines_of_holds<C: ConnectionTrait>(
    conn: &C,
    hold_ids: Vec<String>,
) -> Result<HashMap<String, Vec<HoldAreaView>>, AppError> {
    let mut by_hold: HashMap<String, Vec<HoldAreaView>> = HashMap::new();
    for l in hold_area::Entity::find()
        .filter(hold_area::Column::HoldId.is_in(hold_ids))
        .order_by_asc(hold_area::Column::AreaId)
        .all(conn)
        .await?
    {
        by_hold.entry(l.hold_id).or_default().push(HoldAreaView {
            area_id: l.area_id,
            quantity: l.quantity,
            price_cents: l.price_cents,
        });
    }
    Ok(by_hold)
}

/// The area lines of each booking, ascending by area.
pub(crate) async fn lines_of_bookings<C: ConnectionTrait>(
    conn: &C,
    booking_ids: Vec<String>,
) -> Result<HashMap<String, Vec<HoldAreaView>>, AppError> {
    let mut by_booking: HashMap<String, Vec<HoldAreaView>> = HashMap::new();
    for l in booking_area::Entity::find()
        .filter(booking_area::Column::BookingId.is_in(booking_ids))
        .order_by_asc(booking_area::Column::AreaId)
        .all(conn)
        .await?
    {
        by_booking
            .entry(l.booking_id)
            .or_default()
            .push(HoldAreaView {
                area_id: l.area_id,
                quantity: l.quantity,
                price_cents: l.price_cents,
            });
    }
    Ok(by_booking)
}

/// Places `user_id` has of the event at `now`: in active unexpired holds (this transaction's
/// new one included) and in confirmed bookings.
pub(crate) async fn buyer_places<C: ConnectionTrait>(
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
    let in_holds: i64 = hold_area::Entity::find()
        .select_only()
        .column(hold_area::Column::Quantity)
        .filter(hold_area::Column::Active.eq(true))
        .filter(hold_area::Column::HoldId.in_subquery(holds))
        .into_tuple::<i64>()
        .all(txn)
        .await?
        .into_iter()
        .sum();
    let bookings = Query::select()
        .column(booking::Column::Id)
        .from(booking::Entity)
        .and_where(booking::Column::UserId.eq(user_id))
        .and_where(booking::Column::EventId.eq(event_id))
        .and_where(booking::Column::Status.eq(BookingStatus::Confirmed))
        .to_owned();
    let in_bookings: i64 = booking_area::Entity::find()
        .select_only()
        .column(booking_area::Column::Quantity)
        .filter(booking_area::Column::Active.eq(true))
        .filter(booking_area::Column::BookingId.in_subquery(bookings))
        .into_tuple::<i64>()
        .all(txn)
        .await?
        .into_iter()
        .sum();
    Ok(in_holds.saturating_add(in_bookings))
}
