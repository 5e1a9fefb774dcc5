//! Delivering webhooks: the worker that leases due deliveries and attempts them, the retry
//! schedule, and the admins' list of an endpoint's deliveries.

use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use sea_orm::sea_query::{Condition, Expr, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::WebhookService;
use super::{RETRY_FOR, address, signature};
use crate::auth::Caller;
use crate::backoffice::connections::{Cursor, Page, PageArgs, fetch_page};
use crate::db::RowLock;
use crate::domain::clock::{millis, now_ms};
use crate::error::AppError;
use crate::tasks::{self, Shutdown};
use entity::webhook_delivery::{self, WebhookDeliveryStatus};
use entity::{webhook_endpoint, webhook_event};

/// Attempts one instance makes at once, and so the deliveries one pass leases: every leased
/// delivery is attempted at once, well inside its lease.
const IN_FLIGHT: usize = 16;
const PASS_BATCH: u64 = IN_FLIGHT as u64;
/// How many attempt timeouts a lease lasts: long enough that an attempt always ends (and is
/// recorded) inside it, short enough that a killed instance's deliveries are soon taken over.
const LEASE_TIMEOUTS: u32 = 2;
/// The longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// The longest error text kept on a delivery.
const MAX_ERROR_LEN: usize = 500;

/// A delivery as admins see it.
#[derive(Clone, Debug)]
pub struct DeliveryView {
    pub id: String,
    pub endpoint_id: String,
    pub webhook_event_id: String,
    pub event_type: String,
    pub attempts: i32,
    pub status: WebhookDeliveryStatus,
    pub last_status_code: Option<i32>,
    /// When the next attempt is due; `None` once DELIVERED or FAILED.
    pub next_attempt_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

impl From<webhook_delivery::Model> for DeliveryView {
    fn from(d: webhook_delivery::Model) -> Self {
        Self {
            next_attempt_at_ms: (d.status == WebhookDeliveryStatus::Pending)
                .then_some(d.next_attempt_at_ms),
            id: d.id,
            endpoint_id: d.endpoint_id,
            webhook_event_id: d.webhook_event_id,
            event_type: d.event_type,
            attempts: d.attempts,
            status: d.status,
            last_status_code: d.last_status_code,
            created_at_ms: d.created_at_ms,
        }
    }
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A 2xx.
    Delivered(u16),
    /// Another status, a timeout, a refused address or a network failure.
    Failed { status: Option<u16>, error: String },
}

/// What follows a failed attempt.
#[derive(Debug, PartialEq, Eq)]
enum AfterFailure {
    RetryAt(i64),
    GiveUp,
}

/// The wait before attempt `attempts + 1`: `base` doubled per earlier failure, at most
/// [`MAX_RETRY_DELAY`], plus up to a quarter more at random (`jitter` in `0..=1`) so that
/// endpoints coming back are not hit by every retry at once.
fn retry_delay_ms(base: Duration, attempts: i32, jitter: f64) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    let full = millis(base)
        .saturating_mul(1_i64 << doublings)
        .min(millis(MAX_RETRY_DELAY));
    full + (full as f64 * 0.25 * jitter.clamp(0.0, 1.0)) as i64
}

/// After the `attempts`-th attempt failed at `now`: retry, unless the delivery has been
/// tried for [`RETRY_FOR`] already.
fn after_failure(
    created_at_ms: i64,
    now: i64,
    attempts: i32,
    base: Duration,
    jitter: f64,
) -> AfterFailure {
    if now.saturating_sub(created_at_ms) >= millis(RETRY_FOR) {
        AfterFailure::GiveUp
    } else {
        AfterFailure::RetryAt(now + retry_delay_ms(base, attempts, jitter))
    }
}

fn shorten(mut text: String) -> String {
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl WebhookService {
    /// Runs the delivery worker every `interval` until shutdown.
    pub async fn run_worker(self, shutdown: Shutdown) {
        let interval = self.settings.worker_interval;
        tasks::every(interval, shutdown, || async {
            if let Err(err) = self.run_delivery_pass().await {
                tracing::warn!(error = %err, "webhook delivery pass failed; will try again");
            }
        })
        .await;
    }

    /// One pass: lease the due deliveries, attempt them (a few at once); how many there were.
    pub async fn run_delivery_pass(&self) -> Result<usize, AppError> {
        let leased = self.lease_due().await?;
        let count = leased.len();
        futures::stream::iter(leased)
            .for_each_concurrent(IN_FLIGHT, |d| async move { self.attempt(d).await })
            .await;
        Ok(count)
    }

    /// Leases up to [`PASS_BATCH`] due PENDING deliveries of enabled endpoints whose lease (if
    /// any) has run out. Rows another instance is leasing right now are skipped, not waited
    /// for (PostgreSQL); SQLite's single writer makes the read and the lease one step. Each
    /// lease gets a fresh `lease_token`, which recording the attempt needs still to find.
    async fn lease_due(&self) -> Result<Vec<webhook_delivery::Model>, AppError> {
        let now = now_ms();
        let until = now + millis(self.settings.timeout * LEASE_TIMEOUTS);
        let due = move || {
            let enabled = Query::select()
                .column(webhook_endpoint::Column::Id)
                .from(webhook_endpoint::Entity)
                .and_where(webhook_endpoint::Column::Enabled.eq(true))
                .to_owned();
            webhook_delivery::Entity::find()
                .filter(webhook_delivery::Column::Status.eq(WebhookDeliveryStatus::Pending))
                .filter(webhook_delivery::Column::NextAttemptAtMs.lte(now))
                .filter(
                    Condition::any()
                        .add(webhook_delivery::Column::LeaseUntilMs.is_null())
                        .add(webhook_delivery::Column::LeaseUntilMs.lte(now)),
                )
                .filter(webhook_delivery::Column::EndpointId.in_subquery(enabled))
        };
        // Most passes find nothing: look without a write transaction first, so an idle
        // worker never takes SQLite's one writer slot from the bookings.
        let db = &self.db;
        if due().one(&db.conn).await?.is_none() {
            return Ok(Vec::new());
        }
        let me = self.instance.to_string();
        let token: i64 = rand::rng().random();
        db.write(|txn| {
            let me = me.clone();
            async move {
                let txn = &*txn;
                let due = due()
                    .order_by_asc(webhook_delivery::Column::NextAttemptAtMs)
                    .limit(PASS_BATCH);
                let mut rows = db.locking(due, RowLock::SkipLocked).all(txn).await?;
                if rows.is_empty() {
                    return Ok(rows);
                }
                webhook_delivery::Entity::update_many()
                    .col_expr(webhook_delivery::Column::LeaseUntilMs, Expr::value(until))
                    .col_expr(webhook_delivery::Column::LeasedBy, Expr::value(me.clone()))
                    .col_expr(webhook_delivery::Column::LeaseToken, Expr::value(token))
                    .filter(
                        webhook_delivery::Column::Id
                            .is_in(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>()),
                    )
                    .exec(txn)
                    .await?;
                for row in &mut rows {
                    row.lease_token = Some(token);
                }
                Ok(rows)
            }
        })
        .await
    }

    /// Makes one attempt of a leased delivery and records how it ended.
    async fn attempt(&self, delivery: webhook_delivery::Model) {
        let outcome = match self.send(&delivery).await {
            Ok(outcome) => outcome,
            Err(err) => Outcome::Failed {
                status: None,
                error: err.to_string(),
            },
        };
        if let Err(err) = self.finish(&delivery, outcome).await {
            // The lease runs out and the delivery is attempted again.
            tracing::warn!(webhook.delivery = %delivery.id, error = %err, "cannot record a webhook attempt");
        }
    }

    /// POSTs the event's body to the endpoint, signed with its current secret.
    async fn send(&self, delivery: &webhook_delivery::Model) -> Result<Outcome, AppError> {
        let conn = &self.db.conn;
        let endpoint = webhook_endpoint::Entity::find_by_id(delivery.endpoint_id.clone())
            .one(conn)
            .await?
            .ok_or_else(|| AppError::NotFound("the endpoint was deleted".into()))?;
        let event = webhook_event::Entity::find_by_id(delivery.webhook_event_id.clone())
            .one(conn)
            .await?
            .ok_or_else(|| AppError::Internal("the webhook event is missing".into()))?;
        let url = reqwest::Url::parse(&endpoint.url)
            .map_err(|e| AppError::Internal(format!("stored webhook URL: {e}")))?;
        if let Err(error) = address::deliverable(&url, self.settings.allow_private) {
            return Ok(Outcome::Failed {
                status: None,
                error,
            });
        }
        let t = chrono::Utc::now().timestamp();
        let signed = signature::header(&endpoint.secret, t, &event.payload)?;
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Onsale-Signature", signed)
            .header("Onsale-Webhook-Id", event.id.as_str())
            .body(event.payload)
            .send()
            .await;
        Ok(match sent {
            Ok(resp) if resp.status().is_success() => Outcome::Delivered(resp.status().as_u16()),
            Ok(resp) => Outcome::Failed {
                status: Some(resp.status().as_u16()),
                error: format!("the endpoint answered {}", resp.status()),
            },
            Err(err) => Outcome::Failed {
                status: None,
                error: if err.is_timeout() {
                    "timed out".to_owned()
                } else {
                    format!("{err:?}")
                },
            },
        })
    }

    /// Records an attempt's end, if this instance still holds the lease (the one it took, by
    /// its token: an attempt that outlasted its lease, taken again since, records nothing):
    /// DELIVERED, or the next attempt's time, or FAILED once retries have run for long enough.
    async fn finish(
        &self,
        delivery: &webhook_delivery::Model,
        outcome: Outcome,
    ) -> Result<(), AppError> {
        let now = now_ms();
        let attempts = delivery.attempts.saturating_add(1);
        let mut update = webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::Attempts, Expr::value(attempts))
            .col_expr(
                webhook_delivery::Column::LeaseUntilMs,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(
                webhook_delivery::Column::LeasedBy,
                Expr::value(Option::<String>::None),
            )
            .col_expr(webhook_delivery::Column::UpdatedAtMs, Expr::value(now));
        match &outcome {
            Outcome::Delivered(code) => {
                update = update
                    .col_expr(
                        webhook_delivery::Column::Status,
                        Expr::value(WebhookDeliveryStatus::Delivered),
                    )
                    .col_expr(
                        webhook_delivery::Column::LastStatusCode,
                        Expr::value(i32::from(*code)),
                    )
                    .col_expr(
                        webhook_delivery::Column::LastError,
                        Expr::value(Option::<String>::None),
                    );
            }
            Outcome::Failed { status, error } => {
                let jitter = rand::rng().random_range(0.0..=1.0);
                update = update
                    .col_expr(
                        webhook_delivery::Column::LastStatusCode,
                        Expr::value(status.map(i32::from)),
                    )
                    .col_expr(
                        webhook_delivery::Column::LastError,
                        Expr::value(shorten(error.clone())),
                    );
                update = match after_failure(
                    delivery.created_at_ms,
                    now,
                    attempts,
                    self.settings.retry_base,
                    jitter,
                ) {
                    AfterFailure::RetryAt(at) => {
                        update.col_expr(webhook_delivery::Column::NextAttemptAtMs, Expr::value(at))
                    }
                    AfterFailure::GiveUp => update.col_expr(
                        webhook_delivery::Column::Status,
                        Expr::value(WebhookDeliveryStatus::Failed),
                    ),
                };
            }
        }
        let done = update
            .filter(webhook_delivery::Column::Id.eq(delivery.id.as_str()))
            .filter(webhook_delivery::Column::Status.eq(WebhookDeliveryStatus::Pending))
            .filter(webhook_delivery::Column::LeasedBy.eq(self.instance.as_ref()))
            .filter(webhook_delivery::Column::LeaseToken.eq(delivery.lease_token))
            .exec(&self.db.conn)
            .await?;
        if done.rows_affected != 1 {
            metrics::counter!("onsale_leases_lost_total", "lease" => "webhook").increment(1);
            tracing::warn!(webhook.delivery = %delivery.id, "webhook lease lost before the attempt was recorded");
            return Ok(());
        }
        match outcome {
            Outcome::Delivered(code) => {
                metrics::counter!("onsale_webhooks_delivered_total").increment(1);
                tracing::info!(webhook.delivery = %delivery.id, attempts, status = code, "webhook delivered");
            }
            Outcome::Failed { status, error } => {
                metrics::counter!("onsale_webhook_attempts_failed_total").increment(1);
                tracing::warn!(webhook.delivery = %delivery.id, attempts, status, error = %error, "webhook attempt failed; will retry unless given up");
            }
        }
        Ok(())
    }

    /// An endpoint's deliveries, newest first (admin only).
    pub async fn deliveries(
        &self,
        caller: &Caller,
        endpoint_id: &str,
        page: PageArgs,
    ) -> Result<Page<DeliveryView>, AppError> {
        caller.admin()?;
        let conn = &self.db.conn;
        webhook_endpoint::Entity::find_by_id(endpoint_id.to_owned())
            .one(conn)
            .await?
            .ok_or_else(|| {
                AppError::NotFound(format!("webhook endpoint {endpoint_id} does not exist"))
            })?;
        let size = page.size()?;
        let query = format!("webhook-deliveries:{endpoint_id}");
        let cursor = page
            .after
            .as_deref()
            .map(|c| Cursor::decode(c, &query))
            .transpose()?;
        let select = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::EndpointId.eq(endpoint_id));
        let (rows, cursors, has_next_page, total_count) = fetch_page(
            conn,
            select,
            (
                webhook_delivery::Column::CreatedAtMs,
                webhook_delivery::Column::Id,
            ),
            cursor,
            size,
            |d| Cursor {
                created_at_ms: d.created_at_ms,
                id: d.id.clone(),
            },
            &query,
        )
        .await?;
        Ok(Page {
            edges: cursors
                .into_iter()
                .zip(rows.into_iter().map(DeliveryView::from))
                .collect(),
            has_next_page,
            total_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_base_with_bounded_jitter_up_to_an_hour() {
        let base = Duration::from_secs(10);
        assert_eq!(retry_delay_ms(base, 1, 0.0), 10_000);
        assert_eq!(retry_delay_ms(base, 2, 0.0), 20_000);
        assert_eq!(retry_delay_ms(base, 4, 1.0), 100_000);
        assert_eq!(retry_delay_ms(base, 40, 0.0), 3_600_000);
        assert_eq!(retry_delay_ms(base, 0, 0.0), 10_000);
    }

    #[test]
    fn a_delivery_is_retried_for_a_day_then_given_up() {
        let base = Duration::from_secs(10);
        let day = millis(RETRY_FOR);
        assert_eq!(
            after_failure(0, 1_000, 1, base, 0.0),
            AfterFailure::RetryAt(11_000)
        );
        assert!(matches!(
            after_failure(0, day - 1, 30, base, 0.0),
            AfterFailure::RetryAt(_)
        ));
        assert_eq!(after_failure(0, day, 30, base, 0.0), AfterFailure::GiveUp);
        // The retries over that day: about thirty attempts, never more than an hour apart.
        let (mut now, mut attempts) = (0_i64, 0);
        while let AfterFailure::RetryAt(at) = after_failure(0, now, attempts + 1, base, 0.5) {
            assert!(at - now <= millis(MAX_RETRY_DELAY) * 5 / 4);
            now = at;
            attempts += 1;
        }
        assert!(now >= day && (20..60).contains(&attempts), "{attempts}");
    }
}
