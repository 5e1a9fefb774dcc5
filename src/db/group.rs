//! Group commit per event: the writes of one event that arrive together run as the members
//! of one batch transaction, each in its own savepoint, one after another in arrival order,
//! and the batch commits once — one transaction and one WAL flush for all of them. (The
//! event's `seq` is not part of it on PostgreSQL: the sequencer numbers committed changes
//! after the commit, batch or not; see `realtime::sequencer`.)
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
use super::write::{Backoff, CommitOutcome, Tx, WriteTx};
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
    /// Why the batch cannot go on; later members fail fast with it (and try again in a new
    /// batch), and a begun transaction is rolled back instead of committed.
    failed: Option<String>,
    /// A member's savepoint was neither released nor rolled back: its request was dropped
    /// mid-way, or the rollback failed. What it did cannot be told apart from the rest, so
    /// the whole batch is rolled back.
    unsettled: bool,
    /// A member failed with a transient error (the database is in trouble, or a lock wait
    /// ran out): the members after it try again in a new batch at once instead of each
    /// waiting out the same trouble in turn. What the batch did before is still committed.
    stopped: Option<String>,
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
    let (tx, spoilt) = {
        let mut turn = batch.turn.lock().await;
        turn.previous = None;
        let spoilt = turn.unsettled || turn.failed.is_some();
        (turn.tx.take(), spoilt)
    };
    let outcome = match tx {
        // Nobody got as far as beginning a transaction: nothing to commit.
        None => Outcome::Committed,
        Some(tx) if spoilt => {
            let _ = tx.txn.rollback().await;
            Outcome::Failed {
                transient: true,
                message: "the batch this write ran in was rolled back; try again".into(),
            }
        }
        Some(tx) => {
            let xid = tx.xid;
            match commit_checked(tx).await {
                Ok(()) => Outcome::Committed,
                // The COMMIT's answer was lost: PostgreSQL says whether it happened.
                Err(_) if db.commit_outcome(xid).await == CommitOutcome::Committed => {
                    Outcome::Committed
                }
                Err(err) => {
                    let err = AppError::from(err);
                    Outcome::Failed {
                        transient: err.is_transient(),
                        message: err.to_string(),
                    }
                }
            }
        }
    };
    metrics::histogram!("onsale_group_commit_members")
        .record(batch.joined.load(Ordering::Acquire) as f64);
    let _ = batch.outcome.send(Some(outcome));
    db.groups.forget_if_idle(event_id);
}

impl Db {
    /// With group commit on (`GROUP_COMMIT=on`; off: a transaction of its own, as
    /// [`Db::write`]), runs `op` as a member of the event's current batch (see the module
    /// documentation) and
    /// answers once the batch has committed; tried again, in a new batch, while it or the
    /// batch's commit fails with a transient error. Use it for writes that change the
    /// event's seats; `op` gets its savepoint as a [`Tx`].
    pub async fn write_event<T, F, Fut>(&self, event_id: i64, mut op: F) -> Result<T, AppError>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<T, AppError>>,
    {
        if !self.group_commit {
            return self.write(op).await;
        }
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
            // Bounded, like every wait of a write: a batch stuck behind a database in trouble
            // sends its later members to try again rather than queue for ever.
            let mut turn = tokio::time::timeout(self.lock_timeout * 4, batch.turn.lock())
                .await
                .map_err(|_| {
                    AppError::retry_later(0, "the event's writes are queued too long; try again")
                })?;
            if turn.unsettled {
                turn.failed = Some("an earlier write of this batch did not finish".into());
            }
            if let Some(why) = turn.failed.as_ref().or(turn.stopped.as_ref()) {
                return Err(AppError::retry_later(0, why.clone()));
            }
            if turn.tx.is_none() {
                if let Some(previous) = turn.previous.take() {
                    // Then the event's row lock decides, within the lock timeout.
                    let mut ended = previous.outcome.subscribe();
                    let _ = tokio::time::timeout(
                        self.lock_timeout * 3,
                        ended.wait_for(Option::is_some),
                    )
                    .await;
                }
                match self.begin_batch().await {
                    Ok(tx) => turn.tx = Some(tx),
                    Err(err) => {
                        turn.failed = Some(err.to_string());
                        return Err(err);
                    }
                }
            }
            // Stays set if this future is dropped before its savepoint is settled.
            turn.unsettled = true;
            let txn = &turn.tx.as_ref().expect("begun above").txn;
            let (answer, settled) = run_in_savepoint(txn, op).await;
            turn.unsettled = !settled;
            if let Err(err) = &answer
                && err.is_transient()
            {
                turn.stopped = Some(err.to_string());
            }
            answer
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
    /// A batch's transaction. Each member takes the event-row lock it needs itself (a
    /// shared one on PostgreSQL, so batches of several instances run side by side; SQLite
    /// has one writer, so the transaction already excludes every other).
    async fn begin_batch(&self) -> Result<WriteTx, AppError> {
        self.begin_write().await
    }
}

/// Commits, after checking that the transaction is still alive: PostgreSQL answers
/// `COMMIT` of a transaction aborted by an error with a silent `ROLLBACK`.
async fn commit_checked(tx: WriteTx) -> Result<(), sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    tx.txn.execute_unprepared("SELECT 1").await?;
    tx.commit().await
}

/// `op` in a savepoint of `txn`: released if it succeeds, rolled back if it fails. The flag
/// says whether the savepoint was settled either way.
async fn run_in_savepoint<T, F, Fut>(
    txn: &DatabaseTransaction,
    op: &mut F,
) -> (Result<T, AppError>, bool)
where
    F: FnMut(Tx) -> Fut,
    Fut: Future<Output = Result<T, AppError>>,
{
    let savepoint = match txn.begin().await {
        Ok(savepoint) => Arc::new(savepoint),
        Err(err) => return (Err(err.into()), false),
    };
    let answer = op(Tx::new(savepoint.clone())).await;
    let Ok(savepoint) = Arc::try_unwrap(savepoint) else {
        let err = AppError::Internal("a savepoint outlived its operation".into());
        return (Err(err), false);
    };
    match answer {
        Ok(value) => match savepoint.commit().await {
            Ok(()) => (Ok(value), true),
            Err(err) => (Err(err.into()), false),
        },
        Err(err) => match savepoint.rollback().await {
            Ok(()) => (Err(err), true),
            Err(rollback) => (Err(rollback.into()), false),
        },
    }
}
