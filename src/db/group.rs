//! Group commit per event: the writes of one event that arrive together run as the members
//! of one batch transaction, each in its own savepoint, one after another in arrival order,
//! and the batch commits once — one event-counter lock and one WAL flush for all of them.
//!
//! Each member is still all-or-nothing and gets its own answer: a member that fails rolls
//! back to its savepoint and leaves the others untouched. Members answer only after the
//! batch has committed (so nobody is told "taken" because of a change that then does not
//! commit); if the commit fails, every member tries again in a new batch. A batch is open
//! for joining until its members are done; the next batch forms while it commits. The
//! commit is made by a task of its own, so a member whose request is dropped mid-way
//! (a timeout, a closed connection) holds nobody up.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sea_orm::{DatabaseTransaction, TransactionTrait};
use tokio::sync::{Notify, watch};

use super::Db;
use super::write::{Backoff, Tx, WriteTx};
use crate::error::AppError;

/// Most members in one batch; later arrivals start the next one.
pub const MAX_BATCH_MEMBERS: usize = 64;

/// The open batch of each event, per process.
#[derive(Default)]
pub struct Groups {
    events: Mutex<HashMap<i64, EventBatches>>,
}

/// How a batch ended, as its members see it.
#[derive(Clone, Debug)]
enum Outcome {
    Committed,
    /// The commit (or the batch's transaction) failed; transient failures are tried again.
    Failed {
        transient: bool,
        message: String,
    },
}

struct Batch {
    /// The batch's transaction, begun by the first member to take its turn; the turn is this
    /// lock (tokio's mutex is fair: first come, first served).
    turn: tokio::sync::Mutex<Turn>,
    joined: AtomicUsize,
    finished: AtomicUsize,
    changed: Notify,
    outcome: watch::Sender<Option<Outcome>>,
}

#[derive(Default)]
struct Turn {
    tx: Option<WriteTx>,
    /// The event's batch before this one, until it has ended: this one begins after it, so
    /// the batches of one process never queue on the event's row lock.
    previous: Option<Arc<Batch>>,
    /// Why the transaction could not be begun; later members fail fast with it (and try
    /// again in a new batch).
    failed: Option<String>,
}

/// The event's open batch, and the latest one (it may be committing).
#[derive(Default)]
struct EventBatches {
    open: Option<Arc<Batch>>,
    latest: std::sync::Weak<Batch>,
}

/// Marks a member finished when it is done or dropped.
struct Membership(Arc<Batch>);

impl Drop for Membership {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

impl Groups {
    /// Joins the event's open batch, or opens one (and starts its committer).
    fn join(&self, db: &Db, event_id: i64) -> Membership {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let batches = events.entry(event_id).or_default();
        if let Some(batch) = &batches.open
            && batch.joined.load(Ordering::Acquire) < MAX_BATCH_MEMBERS
        {
            batch.joined.fetch_add(1, Ordering::AcqRel);
            return Membership(batch.clone());
        }
        let previous = batches
            .latest
            .upgrade()
            .filter(|b| b.outcome.borrow().is_none());
        let batch = Arc::new(Batch {
            turn: tokio::sync::Mutex::new(Turn {
                previous,
                ..Turn::default()
            }),
            joined: AtomicUsize::new(1),
            finished: AtomicUsize::new(0),
            changed: Notify::new(),
            outcome: watch::channel(None).0,
        });
        batches.open = Some(batch.clone());
        batches.latest = Arc::downgrade(&batch);
        tokio::spawn(commit_when_done(db.clone(), event_id, batch.clone()));
        Membership(batch)
    }

    /// Closes `batch` for joining if every member that joined is done.
    fn close_if_done(&self, event_id: i64, batch: &Arc<Batch>) -> bool {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if batch.finished.load(Ordering::Acquire) < batch.joined.load(Ordering::Acquire) {
            return false;
        }
        if let Some(batches) = events.get_mut(&event_id)
            && batches.open.as_ref().is_some_and(|b| Arc::ptr_eq(b, batch))
        {
            batches.open = None;
        }
        true
    }

    /// Forgets the event once its latest batch has ended and none is open.
    fn forget_if_idle(&self, event_id: i64) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(batches) = events.get(&event_id)
            && batches.open.is_none()
            && batches
                .latest
                .upgrade()
                .is_none_or(|b| b.outcome.borrow().is_some())
        {
            events.remove(&event_id);
        }
    }
}

/// The committer of one batch: waits until its members are done, closes it, commits.
async fn commit_when_done(db: Db, event_id: i64, batch: Arc<Batch>) {
    loop {
        let changed = batch.changed.notified();
        if db.groups.close_if_done(event_id, &batch) {
            break;
        }
        changed.await;
    }
    let tx = {
        let mut turn = batch.turn.lock().await;
        turn.previous = None;
        turn.tx.take()
    };
    let outcome = match tx {
        // Nobody got as far as beginning a transaction: nothing to commit.
        None => Outcome::Committed,
        Some(tx) => match tx.commit().await {
            Ok(()) => Outcome::Committed,
            Err(err) => {
                let err = AppError::from(err);
                Outcome::Failed {
                    transient: err.is_transient(),
                    message: err.to_string(),
                }
            }
        },
    };
    metrics::histogram!("onsale_group_commit_members")
        .record(batch.joined.load(Ordering::Acquire) as f64);
    let _ = batch.outcome.send(Some(outcome));
    db.groups.forget_if_idle(event_id);
}

impl Db {
    /// Runs `op` as a member of the event's current batch (see the module documentation) and
    /// answers once the batch has committed; tried again, in a new batch, while it or the
    /// batch's commit fails with a transient error. Use it for writes that change the
    /// event's seats; `op` gets its savepoint as a [`Tx`].
    pub async fn write_event<T, F, Fut>(&self, event_id: i64, mut op: F) -> Result<T, AppError>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<T, AppError>>,
    {
        let mut backoff = Backoff::default();
        loop {
            match self.member_once(event_id, &mut op).await {
                Err(err) => backoff.after(err).await?,
                done => return done,
            }
        }
    }

    async fn member_once<T, F, Fut>(&self, event_id: i64, op: &mut F) -> Result<T, AppError>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<T, AppError>>,
    {
        let member = self.groups.join(self, event_id);
        let batch = member.0.clone();
        let mut outcome = batch.outcome.subscribe();
        let answer = {
            let mut turn = batch.turn.lock().await;
            if let Some(why) = &turn.failed {
                return Err(AppError::retry_later(0, why.clone()));
            }
            if turn.tx.is_none() {
                if let Some(previous) = turn.previous.take() {
                    let _ = previous.outcome.subscribe().wait_for(Option::is_some).await;
                }
                match self.begin_batch(event_id).await {
                    Ok(tx) => turn.tx = Some(tx),
                    Err(err) => {
                        turn.failed = Some(err.to_string());
                        return Err(err);
                    }
                }
            }
            let txn = &turn.tx.as_ref().expect("begun above").txn;
            run_in_savepoint(txn, op).await
        };
        drop(member);
        let ended = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| AppError::Internal("a batch ended without an outcome".into()))?
            .clone();
        match ended {
            Some(Outcome::Committed) | None => answer,
            Some(Outcome::Failed { transient, message }) => Err(if transient {
                AppError::retry_later(0, message)
            } else {
                AppError::Internal(message)
            }),
        }
    }
}

impl Db {
    /// A batch's transaction, holding the event's row lock from the start: its members then
    /// never wait for it one by one, and a batch of another instance waits once, as a whole.
    async fn begin_batch(&self, event_id: i64) -> Result<WriteTx, AppError> {
        let tx = self.begin_write().await?;
        if self.is_postgres() {
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
            entity::event::Entity::find()
                .select_only()
                .column(entity::event::Column::Id)
                .filter(entity::event::Column::Id.eq(event_id))
                .lock(sea_orm::sea_query::LockType::Update)
                .into_tuple::<i64>()
                .all(&tx.txn)
                .await?;
        }
        Ok(tx)
    }
}

/// `op` in a savepoint of `txn`: released if it succeeds, rolled back if it fails.
async fn run_in_savepoint<T, F, Fut>(txn: &DatabaseTransaction, op: &mut F) -> Result<T, AppError>
where
    F: FnMut(Tx) -> Fut,
    Fut: Future<Output = Result<T, AppError>>,
{
    let savepoint = Arc::new(txn.begin().await?);
    let answer = op(Tx::new(savepoint.clone())).await;
    let savepoint = Arc::try_unwrap(savepoint)
        .map_err(|_| AppError::Internal("a savepoint outlived its operation".into()))?;
    match answer {
        Ok(value) => {
            savepoint.commit().await?;
            Ok(value)
        }
        Err(err) => {
            savepoint.rollback().await?;
            Err(err)
        }
    }
}
