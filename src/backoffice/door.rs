//! The door: looking a ticket up by its code and redeeming it, exactly once whatever the
//! concurrency. A conditional `UPDATE ... WHERE checked_in_at_ms IS NULL` decides between two
//! scanners; the loser reads the winner's time. Failed look-ups count against the admin's
//! budget ([`TICKET_FAILURES_PER_WINDOW`] per [`TICKET_FAILURE_WINDOW`]), so codes cannot be
//! guessed at speed.

use std::time::Instant;

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use tracing::instrument;

use crate::auth::{Caller, User};
use crate::booking::BookingService;
use crate::booking::idempotency::{self, Operation};
use crate::booking::views;
use crate::domain::clock::now_ms;
use crate::domain::input::IdempotencyKey;
use crate::domain::limits::{TICKET_FAILURE_WINDOW, TICKET_FAILURES_PER_WINDOW};
use crate::domain::status::BookingStatus;
use crate::domain::ticket::{TicketCode, TicketInvalid};
use crate::domain::views::{CheckInView, TicketView};
use crate::error::AppError;
use crate::webhooks::{self, WebhookEvent};
use entity::{booking, ticket};

impl BookingService {
    /// The ticket with `code`, or `None` (admin only). A miss counts as a failed look-up.
    #[instrument(skip_all, err(level = "debug"))]
    pub async fn ticket_by_code(
        &self,
        caller: &Caller,
        code: &str,
    ) -> Result<Option<TicketView>, AppError> {
        let admin = caller.admin()?;
        self.ensure_lookups_left(admin)?;
        let found = match TicketCode::parse(code) {
            Some(code) => find(&self.db().conn, &code).await?,
            None => None,
        };
        if found.is_none() {
            self.count_failed_lookup(admin);
        }
        Ok(found.map(TicketView::of))
    }

    /// Redeems the ticket with `code` at the door of `event_id` (admin only): the first call
    /// wins, any other gets `ALREADY_CHECKED_IN` with the winner's time; a retry with the
    /// same `key` gets the first answer.
    #[instrument(skip_all, fields(event.id = event_id), err(level = "debug"))]
    pub async fn check_in(
        &self,
        caller: &Caller,
        code: &str,
        event_id: i64,
        key: Option<IdempotencyKey>,
    ) -> Result<CheckInView, AppError> {
        self.admin_event(caller, event_id).await?;
        let admin = caller.admin()?;
        let op = Operation::CheckIn;
        if let Some(view) = self.replay_check_in(admin, key.as_ref()).await? {
            return Ok(view);
        }
        self.ensure_lookups_left(admin)?;
        let Some(code) = TicketCode::parse(code) else {
            self.count_failed_lookup(admin);
            return Err(AppError::TicketInvalid(TicketInvalid::Unknown));
        };
        let key_ref = key.as_ref();
        let outcome = self
            .db()
            .write(|txn| {
                let code = &code;
                async move {
                    let txn = &*txn;
                    let (ticket_id, booking_id, at) = redeem(txn, code, event_id).await?;
                    idempotency::record_if(txn, &admin.id, op, key_ref, &ticket_id.to_string())
                        .await?;
                    webhooks::record(
                        txn,
                        WebhookEvent::ticket_checked_in(
                            &ticket_id.to_string(),
                            &booking_id,
                            event_id,
                            at,
                        ),
                    )
                    .await?;
                    Ok(ticket_id)
                }
            })
            .await;
        match outcome {
            Ok(ticket_id) => {
                metrics::counter!("onsale_tickets_checked_in_total").increment(1);
                tracing::info!(ticket.id = ticket_id, "ticket checked in");
                check_in_view(&self.db().conn, ticket_id).await
            }
            Err(err) => {
                // A concurrent call with the same key may have won: its answer is ours.
                if let Ok(Some(view)) = self.replay_check_in(admin, key.as_ref()).await {
                    return Ok(view);
                }
                if matches!(err, AppError::TicketInvalid(_)) {
                    self.count_failed_lookup(admin);
                }
                Err(err)
            }
        }
    }

    async fn replay_check_in(
        &self,
        admin: &User,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<CheckInView>, AppError> {
        let conn = &self.db().conn;
        idempotency::replay(conn, &admin.id, Operation::CheckIn, key, |id| async move {
            let ticket_id = id.parse::<i64>().map_err(|_| {
                AppError::Internal(format!("stored ticket id {id} is not a number"))
            })?;
            check_in_view(conn, ticket_id).await
        })
        .await
    }

    /// `RETRY_LATER` while `admin` has used up their failed look-ups.
    fn ensure_lookups_left(&self, admin: &User) -> Result<(), AppError> {
        self.ticket_failures()
            .check(&admin.id, Instant::now())
            .map_err(|wait| {
                metrics::counter!("onsale_rate_limited_total", "by" => "ticket_lookup")
                    .increment(1);
                let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
                AppError::retry_later(
                    wait_ms,
                    format!(
                        "more than {TICKET_FAILURES_PER_WINDOW} failed ticket look-ups in {} s; try again in {wait_ms} ms",
                        TICKET_FAILURE_WINDOW.as_secs()
                    ),
                )
            })
    }

    fn count_failed_lookup(&self, admin: &User) {
        self.ticket_failures().record(&admin.id, Instant::now());
    }
}

async fn find<C: ConnectionTrait>(
    conn: &C,
    code: &TicketCode,
) -> Result<Option<ticket::Model>, AppError> {
    Ok(ticket::Entity::find()
        .filter(ticket::Column::Code.eq(code.as_str()))
        .one(conn)
        .await?)
}

/// Marks the ticket checked in inside `txn` if it is valid for `event_id` and not yet
/// redeemed: its id, its booking and the check-in time. The update itself decides between
/// concurrent calls.
async fn redeem<C: ConnectionTrait>(
    txn: &C,
    code: &TicketCode,
    event_id: i64,
) -> Result<(i64, String, i64), AppError> {
    let found = find(txn, code)
        .await?
        .ok_or(AppError::TicketInvalid(TicketInvalid::Unknown))?;
    if found.event_id != event_id {
        return Err(AppError::TicketInvalid(TicketInvalid::OtherEvent));
    }
    let at = now_ms();
    let updated = ticket::Entity::update_many()
        .col_expr(ticket::Column::CheckedInAtMs, Expr::value(at))
        .filter(ticket::Column::Id.eq(found.id))
        .filter(ticket::Column::CheckedInAtMs.is_null())
        .filter(
            ticket::Column::BookingId.in_subquery(
                Query::select()
                    .column(booking::Column::Id)
                    .from(booking::Entity)
                    .and_where(booking::Column::Id.eq(found.booking_id.as_str()))
                    .and_where(booking::Column::Status.eq(BookingStatus::Confirmed))
                    .to_owned(),
            ),
        )
        .exec(txn)
        .await?;
    if updated.rows_affected == 1 {
        return Ok((found.id, found.booking_id, at));
    }
    // Lost: to another scanner, or the booking is no longer confirmed. Read which.
    let status = booking::Entity::find_by_id(found.booking_id.clone())
        .select_only()
        .column(booking::Column::Status)
        .into_tuple::<BookingStatus>()
        .one(txn)
        .await?;
    match status {
        Some(BookingStatus::Cancelled) => {
            return Err(AppError::TicketInvalid(TicketInvalid::BookingCancelled));
        }
        Some(BookingStatus::Refunded) => {
            return Err(AppError::TicketInvalid(TicketInvalid::BookingRefunded));
        }
        Some(BookingStatus::Confirmed) => {}
        None => {
            return Err(AppError::Internal(format!(
                "ticket {} has no booking",
                found.id
            )));
        }
    }
    let checked_in_at_ms = ticket::Entity::find_by_id(found.id)
        .select_only()
        .column(ticket::Column::CheckedInAtMs)
        .into_tuple::<Option<i64>>()
        .one(txn)
        .await?
        .flatten()
        .ok_or_else(|| {
            AppError::Internal(format!("ticket {} was neither redeemed nor free", found.id))
        })?;
    Err(AppError::AlreadyCheckedIn { checked_in_at_ms })
}

async fn check_in_view<C: ConnectionTrait>(
    conn: &C,
    ticket_id: i64,
) -> Result<CheckInView, AppError> {
    let stored = views::existing(
        ticket::Entity::find_by_id(ticket_id).one(conn).await?,
        "ticket",
        &ticket_id.to_string(),
    )?;
    let booking = views::booking(conn, &stored.booking_id).await?;
    Ok(CheckInView {
        ticket: TicketView::of(stored),
        booking,
    })
}
