//! Numbering seat changes after their commit (PostgreSQL).
//!
//! A write transaction logs its seat changes without a `seq` (`seat_change_pending`) and takes
//! no lock of its event's, so the writers of one event commit side by side, their WAL
//! flushes shared. Right after a writer's commit, before it answers, the event's sequencer
//! numbers every committed change still waiting, in one short transaction:
//!
//! 1. `SELECT … FROM events … FOR NO KEY UPDATE` — the one lock of a numbering run. It
//!    orders the runs of one event on every instance; writers take only `FOR KEY SHARE` of
//!    the event row (which this lock does not conflict with), status changes `FOR UPDATE`.
//! 2. One statement, whose snapshot is taken after that lock: delete the event's pending
//!    rows, insert them into `seat_changes` with `seq` = the counter + 1, 2, … in pending-id
//!    order, and move the counter on.
//! 3. COMMIT: the whole batch becomes visible at once, with its numbers.
//!
//! Why the numbers keep the contract's promises:
//! - Strictly increasing by one, no gap or duplicate: runs of one event are serialised by the
//!   row lock, each starts from the counter the previous one committed, and a pending row is
//!   deleted by exactly one run.
//! - No change appears later below a seq already seen: a change has a seq only once its run
//!   committed, and every later run numbers above it.
//! - Order of one seat's changes: a later change of a seat is written under that seat's row
//!   lock after the earlier one committed, so it draws a higher pending id and a higher seq.
//! - Read-your-writes: a writer answers after a run that began after its commit (its
//!   *ticket*), so its changes are numbered (and the counter moved) before its answer. Runs
//!   batch: while one runs, the writers that commit meanwhile wait for the next, which
//!   numbers all of them.
//! - A process that dies between a commit and its run leaves pending rows; any instance's
//!   next run of that event, or the sweep ([`SequencedBus::sweep`]) numbers them.
//!
//! The technique is PgQ's (changes numbered by a separate step once their transactions are
//! known to be committed), with a row lock instead of transaction-id snapshots deciding what
//! is safe to number: a run sees exactly the writes committed before its statement began.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, TryGetable,
};
use tokio::sync::broadcast;

use super::{AreaChange, Published, SeatChange, SeatChangeBus};
use crate::error::AppError;
use crate::tasks::{self, Shutdown};
use entity::status::SeatStatus;

/// Tries of one numbering run before the writer answers without waiting for it (its changes
/// are committed; the sweep numbers them).
const RUN_ATTEMPTS: u32 = 3;

/// Numbers one event's committed pending changes after the counter; returns them in order.
const NUMBER: &str = "\
WITH moved AS (
    DELETE FROM seat_change_pending WHERE event_id = $1
    RETURNING id, seat_id, status, hold_expires_at_ms, created_at_ms
), numbered AS (
    INSERT INTO seat_changes (event_id, seq, seat_id, status, hold_expires_at_ms, created_at_ms)
    SELECT $1, $2 + row_number() OVER (ORDER BY id), seat_id, status, hold_expires_at_ms,
           created_at_ms
    FROM moved
    RETURNING seq, seat_id, status, hold_expires_at_ms
), counted AS (
    UPDATE events SET seq = $2 + (SELECT count(*) FROM numbered)
    WHERE id = $1 AND EXISTS (SELECT 1 FROM numbered)
)
SELECT seq, seat_id, status, hold_expires_at_ms FROM numbered ORDER BY seq";

/// One event's numbering turn in this process.
#[derive(Default)]
struct Turn {
    /// Tickets handed out: one per writer that committed and waits for its numbers.
    asked: AtomicU64,
    /// Every ticket up to this one is covered by a finished run.
    covered: AtomicU64,
    /// Held by the run in progress (and while it publishes, so runs publish in order).
    run: tokio::sync::Mutex<()>,
}

/// The bus services publish on: a transport (in-process or Redis) plus the sequencer, which
/// numbers a transaction's waiting changes before they are published.
pub struct SequencedBus {
    inner: Arc<dyn SeatChangeBus>,
    conn: DatabaseConnection,
    turns: Mutex<HashMap<i64, Arc<Turn>>>,
}

impl SequencedBus {
    pub fn new(conn: DatabaseConnection, inner: Arc<dyn SeatChangeBus>) -> Self {
        Self {
            inner,
            conn,
            turns: Mutex::default(),
        }
    }

    fn turn(&self, event_id: i64) -> Arc<Turn> {
        self.turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(event_id)
            .or_default()
            .clone()
    }

    /// Returns once every change of `event_id` committed before this call has its `seq`
    /// (and is published): runs the event's numbering itself, or waits for the run that
    /// covers it.
    pub async fn settle(&self, event_id: i64) -> Result<(), AppError> {
        let turn = self.turn(event_id);
        let ticket = turn.asked.fetch_add(1, Ordering::AcqRel) + 1;
        let _run = turn.run.lock().await;
        if turn.covered.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        // Every ticket handed out by now belongs to a writer that committed before this run.
        let upto = turn.asked.load(Ordering::Acquire);
        let numbered = self.number_with_retries(event_id).await?;
        turn.covered.fetch_max(upto, Ordering::AcqRel);
        if !numbered.is_empty() {
            metrics::histogram!("onsale_sequencer_batch_changes").record(numbered.len() as f64);
            self.inner.publish(numbered).await;
        }
        Ok(())
    }

    async fn number_with_retries(&self, event_id: i64) -> Result<Vec<SeatChange>, AppError> {
        let mut attempt = 1;
        loop {
            match number(&self.conn, event_id).await {
                Ok(numbered) => return Ok(numbered),
                Err(err) if attempt < RUN_ATTEMPTS && err.is_transient() => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Numbers the changes a writer left without a `seq` (it died, or its run failed).
    pub async fn sweep(&self) -> Result<(), AppError> {
        let rows = self
            .conn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT DISTINCT event_id FROM seat_change_pending",
            ))
            .await?;
        for row in rows {
            let event_id: i64 = row.try_get("", "event_id")?;
            self.settle(event_id).await?;
        }
        Ok(())
    }

    /// Runs [`Self::sweep`] every `interval` until shutdown (PostgreSQL only).
    pub async fn run_sweeper(self: Arc<Self>, interval: Duration, shutdown: Shutdown) {
        tasks::every(interval, shutdown, || async {
            if let Err(err) = self.sweep().await {
                tracing::warn!(error = %err, "numbering left-over seat changes failed");
            }
        })
        .await;
    }
}

/// One numbering run of `event_id`: its own short transaction.
async fn number(conn: &DatabaseConnection, event_id: i64) -> Result<Vec<SeatChange>, AppError> {
    let txn = conn.begin().await?;
    txn.execute_unprepared("SET LOCAL lock_timeout = '2s'; SET LOCAL statement_timeout = '5s'")
        .await?;
    let Some(row) = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT seq FROM events WHERE id = $1 FOR NO KEY UPDATE",
            [event_id.into()],
        ))
        .await?
    else {
        return Ok(Vec::new());
    };
    let base: i64 = row.try_get("", "seq")?;
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            NUMBER,
            [event_id.into(), base.into()],
        ))
        .await?;
    if rows.is_empty() {
        txn.rollback().await?;
        return Ok(Vec::new());
    }
    let mut numbered = Vec::with_capacity(rows.len());
    for row in rows {
        numbered.push(SeatChange {
            event_id,
            seq: row.try_get("", "seq")?,
            seat_id: row.try_get("", "seat_id")?,
            status: SeatStatus::try_get_by(&row, "status")
                .map_err(|e| AppError::Internal(format!("a pending change's status: {e:?}")))?,
            hold_expires_at_ms: row.try_get("", "hold_expires_at_ms")?,
        });
    }
    txn.commit().await?;
    Ok(numbered)
}

#[async_trait]
impl SeatChangeBus for SequencedBus {
    async fn publish(&self, changes: Vec<SeatChange>) {
        self.inner.publish(changes).await;
    }

    fn subscribe(&self, event_id: i64) -> broadcast::Receiver<SeatChange> {
        self.inner.subscribe(event_id)
    }

    fn subscribe_all(&self) -> broadcast::Receiver<SeatChange> {
        self.inner.subscribe_all()
    }

    fn healthy(&self) -> bool {
        self.inner.healthy()
    }

    async fn publish_areas(&self, changes: Vec<AreaChange>) {
        self.inner.publish_areas(changes).await;
    }

    fn subscribe_areas(&self, event_id: i64) -> broadcast::Receiver<AreaChange> {
        self.inner.subscribe_areas(event_id)
    }

    fn subscribe_all_areas(&self) -> broadcast::Receiver<AreaChange> {
        self.inner.subscribe_all_areas()
    }

    /// Numbers the transaction's waiting changes (and publishes them with the run that
    /// numbers them), then publishes what was already numbered and the area counts.
    async fn publish_all(&self, published: Published) {
        if let Some(event_id) = published.unnumbered
            && let Err(err) = self.settle(event_id).await
        {
            // The changes are committed; they get their numbers from a later run or the sweep.
            tracing::warn!(event.id = event_id, error = %err, "numbering seat changes failed; the sweep will");
        }
        self.inner.publish(published.seats).await;
        self.inner.publish_areas(published.areas).await;
    }
}
