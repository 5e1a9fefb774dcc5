//! Database access shared by the service: connecting, write transactions with bounded lock
//! waits, the retry policy for transient failures, and error classification.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use sea_orm::sqlx;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, RuntimeErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::AppError;

/// How the database failed, as far as the service cares.
#[derive(Debug, PartialEq, Eq)]
pub enum DbFailure {
    /// Serialization failure, deadlock, lock or statement timeout, lost connection, busy
    /// SQLite: the same operation may succeed if tried again.
    Transient,
    /// A unique index on active seat claims refused the write: the seat is taken.
    SeatTaken,
    /// The database cannot store a value the client sent (e.g. NUL in text).
    BadValue,
    Other,
}

const SEAT_CLAIM_INDEXES: [&str; 2] = ["uq_hold_seats_active_seat", "uq_booking_seats_active_seat"];

/// Classifies a database error once, for the whole service.
pub fn classify(err: &DbErr) -> DbFailure {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => DbFailure::Transient,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            classify_sqlx(e)
        }
        _ => DbFailure::Other,
    }
}

fn classify_sqlx(err: &sqlx::Error) -> DbFailure {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => DbFailure::Transient,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let constraint = db.constraint().unwrap_or_default();
            let message = db.message();
            if SEAT_CLAIM_INDEXES
                .iter()
                .any(|name| constraint == *name || message.contains(name))
                || (message.contains("UNIQUE constraint failed: hold_seats.seat_id")
                    || message.contains("UNIQUE constraint failed: booking_seats.seat_id"))
            {
                return DbFailure::SeatTaken;
            }
            match code.as_ref() {
                // PostgreSQL: serialization, deadlock, lock timeout, statement timeout,
                // shutdown / crash / not yet accepting connections, connection exceptions,
                // too many connections.
                "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "53300"
                | "08000" | "08003" | "08006" | "08001" | "08004" => DbFailure::Transient,
                // PostgreSQL: a character it cannot store, a bad value for a type.
                "22021" | "22P05" | "22003" | "22007" | "22008" => DbFailure::BadValue,
                // SQLite: BUSY, LOCKED and their extended codes.
                "5" | "6" | "261" | "517" | "262" => DbFailure::Transient,
                _ => DbFailure::Other,
            }
        }
        _ => DbFailure::Other,
    }
}

/// The connection pool plus what write transactions need.
#[derive(Clone)]
pub struct Db {
    pub conn: DatabaseConnection,
    /// Write transactions queue here, fairly and for a bounded time, before they start: one
    /// at a time on SQLite (it has one writer; no spinning on `SQLITE_BUSY`), a few at a time
    /// on PostgreSQL, where the writes of one event serialise on its change counter and more
    /// concurrent writers only lengthen PostgreSQL's lock queue (see BENCHMARKS.md).
    writers: Arc<Semaphore>,
    lock_timeout: Duration,
}

/// A write transaction and the writer slot it holds.
pub struct WriteTx {
    pub txn: DatabaseTransaction,
    _slot: OwnedSemaphorePermit,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }
}

impl Db {
    /// Connects and configures the pool for the backend.
    pub async fn connect(
        url: &str,
        pool_max: Option<u32>,
        lock_timeout: Duration,
        write_concurrency: usize,
    ) -> Result<Self, DbErr> {
        let sqlite = url.starts_with("sqlite:");
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(pool_max.unwrap_or(if sqlite { 8 } else { 32 }))
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(3))
            .sqlx_logging(false);
        if sqlite {
            opts.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
                    .create_if_missing(true)
            });
        } else {
            opts.test_before_acquire(false);
        }
        let conn = Database::connect(opts).await?;
        Ok(Self {
            conn,
            writers: Arc::new(Semaphore::new(if sqlite {
                1
            } else {
                write_concurrency.max(1)
            })),
            lock_timeout,
        })
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    pub fn is_postgres(&self) -> bool {
        self.backend() == DbBackend::Postgres
    }

    /// Starts a short write transaction. On PostgreSQL row-lock and statement waits are
    /// bounded, so nobody queues long behind a lock; on SQLite the transaction takes the write
    /// lock at `BEGIN` (no upgrade deadlocks).
    pub async fn begin_write(&self) -> Result<WriteTx, AppError> {
        let slot =
            tokio::time::timeout(self.lock_timeout * 3, self.writers.clone().acquire_owned())
                .await
                .map_err(|_| AppError::retry_later(100, "too many writers; try again shortly"))?
                .map_err(|_| AppError::Internal("the writer queue is closed".into()))?;
        let txn = if self.is_postgres() {
            let txn = self.conn.begin().await?;
            let lock_ms = self.lock_timeout.as_millis().max(1);
            txn.execute_unprepared(&format!(
                "SET LOCAL lock_timeout = '{lock_ms}ms'; SET LOCAL statement_timeout = '{}ms'",
                lock_ms * 5
            ))
            .await?;
            txn
        } else {
            self.conn
                .begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..Default::default()
                })
                .await?
        };
        Ok(WriteTx { txn, _slot: slot })
    }

    /// Runs `op` and retries it a few times with exponential backoff and jitter while it fails
    /// with a transient error; then answers `RETRY_LATER` with a suggested wait.
    pub async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, AppError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AppError>>,
    {
        const ATTEMPTS: u32 = 4;
        let mut backoff_ms = 10u64;
        for attempt in 1..=ATTEMPTS {
            match op().await {
                Err(err) if err.is_transient() && attempt < ATTEMPTS => {
                    let jitter = rand::rng().random_range(0..=backoff_ms);
                    tokio::time::sleep(Duration::from_millis(backoff_ms + jitter)).await;
                    backoff_ms *= 4;
                }
                Err(AppError::RetryLater { .. }) => {
                    let wait = 100 + rand::rng().random_range(0..200);
                    return Err(AppError::retry_later(
                        wait,
                        format!("the seats are busy right now; try again in {wait} ms"),
                    ));
                }
                other => return other,
            }
        }
        unreachable!("the last attempt always returns")
    }
}

impl Db {
    /// This deployment's Redis namespace: made once, at random, by whichever instance starts
    /// first, then read by all.
    pub async fn redis_namespace(&self) -> Result<String, DbErr> {
        use sea_orm::{EntityTrait, Set};
        let fresh = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let _ = entity::deployment::Entity::insert(entity::deployment::ActiveModel {
            id: Set(1),
            namespace: Set(fresh),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(&self.conn)
        .await?;
        entity::deployment::Entity::find_by_id(1)
            .one(&self.conn)
            .await?
            .map(|row| row.namespace)
            .ok_or_else(|| DbErr::RecordNotFound("deployment row".into()))
    }
}
