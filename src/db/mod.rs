//! The database layer below the services: the connection pool, short write transactions
//! with bounded lock waits and retries, row locking in one fixed order, and what a database
//! error means (`errors`).

pub mod errors;
pub mod fence;
mod group;
mod write;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::sqlx;
use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use tokio::sync::Semaphore;

use crate::error::AppError;
use entity::seat;
pub use group::MAX_BATCH_MEMBERS;
pub use write::{Tx, WriteTx};

/// How a locking read treats rows another transaction has locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowLock {
    /// Wait for them, up to the transaction's lock timeout.
    Wait,
    /// Leave them out of the result.
    SkipLocked,
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
    /// The open group-commit batch of each event (`group`).
    groups: Arc<group::Groups>,
    /// Whether writes of one event are batched (`GROUP_COMMIT`).
    group_commit: bool,
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
            groups: Arc::default(),
            group_commit: false,
        })
    }

    /// Turns group commit of each event's writes on or off (`src/db/group.rs`).
    pub fn with_group_commit(mut self, on: bool) -> Self {
        self.group_commit = on;
        self
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    pub fn is_postgres(&self) -> bool {
        self.backend() == DbBackend::Postgres
    }

    /// Makes `query` a locking read (`FOR UPDATE`) on PostgreSQL. SQLite needs no row locks:
    /// its single writer already holds the whole database.
    pub fn locking<E: EntityTrait>(&self, query: Select<E>, how: RowLock) -> Select<E> {
        if !self.is_postgres() {
            return query;
        }
        match how {
            RowLock::Wait => query.lock(LockType::Update),
            RowLock::SkipLocked => {
                query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            }
        }
    }

    /// Locks seat rows in ascending id order — the one order every transaction uses, so two
    /// transactions never deadlock on seats — and returns them as they are now.
    pub async fn lock_seats<C: ConnectionTrait>(
        &self,
        txn: &C,
        ids: &[i64],
        how: RowLock,
    ) -> Result<Vec<seat::Model>, AppError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let query = seat::Entity::find()
            .filter(seat::Column::Id.is_in(ids.to_vec()))
            .order_by_asc(seat::Column::Id);
        Ok(self.locking(query, how).all(txn).await?)
    }

    /// Locks the event's row (`FOR UPDATE` on PostgreSQL) and returns it as it is now, `None`
    /// for an unknown id.
    pub async fn lock_event<C: ConnectionTrait>(
        &self,
        txn: &C,
        id: i64,
    ) -> Result<Option<entity::event::Model>, AppError> {
        let query = entity::event::Entity::find_by_id(id);
        Ok(self.locking(query, RowLock::Wait).one(txn).await?)
    }

    /// Reads the event's row as committed now and keeps it from changing status or limits
    /// until this transaction ends (`FOR KEY SHARE` on PostgreSQL: writers of one event share
    /// it, and it does not stop the sequencer moving the event's `seq`; `lock_event` waits for
    /// it). `None` for an unknown id.
    pub async fn share_event<C: ConnectionTrait>(
        &self,
        txn: &C,
        id: i64,
    ) -> Result<Option<entity::event::Model>, AppError> {
        let query = entity::event::Entity::find_by_id(id);
        let query = if self.is_postgres() {
            query.lock(LockType::KeyShare)
        } else {
            query
        };
        Ok(query.one(txn).await?)
    }

    /// Serialises the transactions of one buyer on one event until this transaction ends
    /// (a transaction-scoped advisory lock on PostgreSQL; SQLite has one writer anyway), so
    /// that two holds at once cannot both pass a per-buyer limit. Taken after the seats' row
    /// locks and before any other (the lock order of every hold).
    pub async fn lock_buyer<C: ConnectionTrait>(
        &self,
        txn: &C,
        event_id: i64,
        user_id: &str,
    ) -> Result<(), AppError> {
        if !self.is_postgres() {
            return Ok(());
        }
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (event_id, user_id).hash(&mut hasher);
        // Two keys (class, id): class 1 is "buyer of an event"; collisions only serialise.
        let id = hasher.finish() as i32;
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(1, $1)",
            [id.into()],
        ))
        .await?;
        Ok(())
    }

    /// This deployment's Redis namespace: made once, at random, by whichever instance starts
    /// first, then read by all.
    pub async fn redis_namespace(&self) -> Result<String, DbErr> {
        use sea_orm::Set;
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
