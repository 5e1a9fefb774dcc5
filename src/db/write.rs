//! Write transactions: short, with bounded lock waits, and retried with backoff while the
//! database says "try again" — one skeleton for every write of the service.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
};
use tokio::sync::OwnedSemaphorePermit;

use super::Db;
use crate::error::AppError;

/// How often a transiently failing write is tried before the client is told to retry.
const ATTEMPTS: u32 = 4;
/// First backoff between attempts; it grows fourfold per attempt, with jitter.
const FIRST_BACKOFF_MS: u64 = 10;
/// What the client is told to wait after the last attempt: this plus up to
/// [`RETRY_AFTER_JITTER_MS`] at random, so retries spread out.
const RETRY_AFTER_BASE_MS: u64 = 100;
const RETRY_AFTER_JITTER_MS: u64 = 200;
/// What a request is told when it waited too long for a writer slot.
const WRITER_QUEUE_RETRY_AFTER_MS: u64 = 100;

/// A write transaction and the writer slot it holds.
pub struct WriteTx {
    pub txn: DatabaseTransaction,
    /// PostgreSQL's id of the transaction (`txid_current()`): if the answer to its COMMIT is
    /// lost, `txid_status` tells whether it committed. `None` on SQLite, where a COMMIT's
    /// outcome is never unknown (no connection to lose).
    pub xid: Option<i64>,
    _slot: OwnedSemaphorePermit,
}

/// The transaction [`Db::write`] hands its operation: `&*tx` is the `DatabaseTransaction`.
pub struct Tx(Arc<DatabaseTransaction>);

impl Tx {
    pub(super) fn new(txn: Arc<DatabaseTransaction>) -> Self {
        Self(txn)
    }
}

impl std::ops::Deref for Tx {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.0
    }
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }
}

impl Db {
    /// Starts a short write transaction. On PostgreSQL row-lock and statement waits are
    /// bounded, so nobody queues long behind a lock; on SQLite the transaction takes the write
    /// lock at `BEGIN` (no upgrade deadlocks).
    pub async fn begin_write(&self) -> Result<WriteTx, AppError> {
        let slot =
            tokio::time::timeout(self.lock_timeout * 3, self.writers.clone().acquire_owned())
                .await
                .map_err(|_| {
                    AppError::retry_later(
                        WRITER_QUEUE_RETRY_AFTER_MS,
                        "too many writers; try again shortly",
                    )
                })?
                .map_err(|_| AppError::Internal("the writer queue is closed".into()))?;
        if self.is_postgres() {
            let txn = self.conn.begin().await?;
            let lock_ms = self.lock_timeout.as_millis().max(1);
            // One round trip: the transaction's id (to find out what became of it should the
            // COMMIT's answer be lost) and its lock and statement bounds (SET LOCAL).
            let row = txn
                .query_one_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    format!(
                        "SELECT txid_current() AS xid, \
                         set_config('lock_timeout', '{lock_ms}ms', true), \
                         set_config('statement_timeout', '{}ms', true)",
                        lock_ms * 5
                    ),
                ))
                .await?
                .ok_or_else(|| AppError::Internal("txid_current() returned no row".into()))?;
            let xid: i64 = row.try_get("", "xid")?;
            Ok(WriteTx {
                txn,
                xid: Some(xid),
                _slot: slot,
            })
        } else {
            let txn = self
                .conn
                .begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..Default::default()
                })
                .await?;
            Ok(WriteTx {
                txn,
                xid: None,
                _slot: slot,
            })
        }
    }

    /// Runs `op` in a write transaction and commits it; the whole is tried again (a new
    /// transaction) while it fails with a transient error. What `op` returns early without
    /// an error is committed too; an error rolls everything back.
    ///
    /// `op` gets the transaction as a [`Tx`] (`&*tx` is the `DatabaseTransaction`) and must
    /// not keep it beyond its future.
    pub async fn write<T, F, Fut>(&self, mut op: F) -> Result<T, AppError>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<T, AppError>>,
    {
        let mut backoff = Backoff::default();
        loop {
            let attempt = async {
                let WriteTx { txn, xid, _slot } = self.begin_write().await?;
                let shared = Arc::new(txn);
                let out = op(Tx(shared.clone())).await.map_err(Failed::Before)?;
                let txn = Arc::try_unwrap(shared).map_err(|_| {
                    AppError::Internal("a write transaction outlived its operation".into())
                })?;
                match txn.commit().await {
                    Ok(()) => Ok(out),
                    Err(err) => Err(Failed::InCommit {
                        err: err.into(),
                        xid,
                        out,
                    }),
                }
            };
            match attempt.await {
                Err(Failed::Before(err)) => backoff.after(err).await?,
                // The COMMIT's answer was lost: ask PostgreSQL what became of the transaction
                // and answer that, instead of running the operation again (which would see
                // its own committed work as someone else's) or telling the client to retry.
                Err(Failed::InCommit { err, xid, out }) => match self.commit_outcome(xid).await {
                    CommitOutcome::Committed => return Ok(out),
                    CommitOutcome::RolledBack => backoff.after(err).await?,
                    // Still unknown: keep trying longer, so that the operation can find out
                    // itself (an operation that may commit twice checks first, e.g. by the id
                    // it writes) instead of the client being told to retry.
                    CommitOutcome::Unknown => backoff.after_uncertain_commit(err).await?,
                },
                Ok(out) => return Ok(out),
            }
        }
    }

    /// Runs `op` and retries it a few times with exponential backoff and jitter while it fails
    /// with a transient error; then answers `RETRY_LATER` with a suggested wait.
    pub async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, AppError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AppError>>,
    {
        let mut backoff = Backoff::default();
        loop {
            match op().await {
                Err(err) => backoff.after(err).await?,
                done => return done,
            }
        }
    }
}

/// Where an attempt of [`Db::write`] failed.
enum Failed<T> {
    /// Beginning or running the operation: nothing was committed.
    Before(AppError),
    /// The COMMIT itself: the outcome is unknown. `out` is what the operation answered, to
    /// be given if the transaction turns out committed.
    InCommit {
        err: AppError,
        xid: Option<i64>,
        out: T,
    },
}

impl<T> From<AppError> for Failed<T> {
    fn from(err: AppError) -> Self {
        Failed::Before(err)
    }
}

/// What became of a transaction whose COMMIT got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    RolledBack,
    /// PostgreSQL could not be asked in time (or there is no transaction id to ask about).
    Unknown,
}

impl CommitOutcome {
    fn label(self) -> &'static str {
        match self {
            CommitOutcome::Committed => "committed",
            CommitOutcome::RolledBack => "rolled_back",
            CommitOutcome::Unknown => "unknown",
        }
    }
}

/// How long [`Db::commit_outcome`] keeps asking (PostgreSQL may be restarting).
const OUTCOME_ASK_FOR: Duration = Duration::from_secs(5);
const OUTCOME_ASK_EVERY: Duration = Duration::from_millis(100);

impl Db {
    /// Finds out whether transaction `xid` committed, on another connection, asking again
    /// while PostgreSQL cannot answer or the transaction is still ending (its backend may
    /// not have noticed the lost connection yet), for at most [`OUTCOME_ASK_FOR`].
    pub async fn commit_outcome(&self, xid: Option<i64>) -> CommitOutcome {
        let Some(xid) = xid else {
            return CommitOutcome::Unknown;
        };
        let started = tokio::time::Instant::now();
        let outcome = loop {
            let asked = self
                .conn
                .query_one_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Postgres,
                    "SELECT txid_status($1) AS status",
                    [xid.into()],
                ))
                .await;
            let status = asked
                .ok()
                .flatten()
                .and_then(|row| row.try_get::<Option<String>>("", "status").ok())
                .flatten();
            match status.as_deref() {
                Some("committed") => break CommitOutcome::Committed,
                Some("aborted") => break CommitOutcome::RolledBack,
                // "in progress", or no answer yet.
                _ if started.elapsed() < OUTCOME_ASK_FOR => {
                    tokio::time::sleep(OUTCOME_ASK_EVERY).await;
                }
                _ => break CommitOutcome::Unknown,
            }
        };
        metrics::counter!("onsale_commit_outcome_checks_total", "outcome" => outcome.label())
            .increment(1);
        tracing::warn!(
            xid,
            outcome = outcome.label(),
            "a COMMIT's answer was lost; asked PostgreSQL what became of the transaction"
        );
        outcome
    }
}

/// Attempts after a COMMIT with an unknown outcome (the connection was lost during it).
const UNCERTAIN_ATTEMPTS: u32 = 10;
/// Longest wait between them.
const UNCERTAIN_BACKOFF_MAX_MS: u64 = 500;

/// The retry policy: exponential backoff with jitter for transient failures, a bounded
/// number of attempts, then `RETRY_LATER` with a spread-out suggested wait.
pub(super) struct Backoff {
    attempt: u32,
    backoff_ms: u64,
    /// A COMMIT's outcome was unknown: every later failure gets the longer budget.
    uncertain: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempt: 1,
            backoff_ms: FIRST_BACKOFF_MS,
            uncertain: false,
        }
    }
}

impl Backoff {
    /// After a failed attempt: waits and returns `Ok` if it is worth another, else the error
    /// to answer with.
    pub(super) async fn after(&mut self, err: AppError) -> Result<(), AppError> {
        if !err.is_transient() {
            return Err(err);
        }
        let budget = if self.uncertain {
            UNCERTAIN_ATTEMPTS
        } else {
            ATTEMPTS
        };
        if self.attempt >= budget {
            let wait = RETRY_AFTER_BASE_MS + rand::rng().random_range(0..RETRY_AFTER_JITTER_MS);
            return Err(AppError::retry_later(
                wait,
                format!("the seats are busy right now; try again in {wait} ms"),
            ));
        }
        if self.uncertain {
            self.backoff_ms = self.backoff_ms.min(UNCERTAIN_BACKOFF_MAX_MS);
        }
        let jitter = rand::rng().random_range(0..=self.backoff_ms);
        tokio::time::sleep(Duration::from_millis(self.backoff_ms + jitter)).await;
        self.backoff_ms *= 4;
        self.attempt += 1;
        Ok(())
    }

    /// After a COMMIT whose outcome is unknown: from now on [`Backoff::after`] allows
    /// [`UNCERTAIN_ATTEMPTS`] attempts (the database is likely restarting), each wait at most
    /// [`UNCERTAIN_BACKOFF_MAX_MS`], so that the operation can find out what happened.
    pub(super) async fn after_uncertain_commit(&mut self, err: AppError) -> Result<(), AppError> {
        self.uncertain = true;
        self.after(err).await
    }
}
