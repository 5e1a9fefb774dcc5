//! Fencing tokens. A lease (in Redis or in a row) can run out while its holder is paused,
//! and the holder does not know it; so work done under a lease carries the lease's token,
//! and the database refuses work whose token is older than the newest one it has seen.

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::error::AppError;

/// Passes the fence of an event's request queue with `token`, the holder's token of the
/// queue lease: the newest token seen is stored, and an older one is refused with
/// [`AppError::LeaseLost`] (roll back: a newer holder works the queue). Run first in the
/// transaction that applies a request: the fence row stays locked until it ends, so two
/// holders never apply requests side by side either.
pub async fn pass_queue_fence<C: ConnectionTrait>(
    txn: &C,
    event_id: i64,
    token: i64,
) -> Result<(), AppError> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO queue_fences (event_id, token) VALUES ($1, $2) \
             ON CONFLICT (event_id) DO UPDATE SET token = excluded.token \
             WHERE queue_fences.token <= excluded.token"
        }
        _ => {
            "INSERT INTO queue_fences (event_id, token) VALUES (?, ?) \
             ON CONFLICT (event_id) DO UPDATE SET token = excluded.token \
             WHERE queue_fences.token <= excluded.token"
        }
    };
    let passed = txn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [event_id.into(), token.into()],
        ))
        .await?;
    if passed.rows_affected() == 0 {
        return Err(AppError::LeaseLost("the request queue"));
    }
    Ok(())
}

/// The newest token that passed an event's queue fence, if any.
pub async fn queue_fence<C: ConnectionTrait>(
    conn: &C,
    event_id: i64,
) -> Result<Option<i64>, AppError> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT token FROM queue_fences WHERE event_id = $1",
        _ => "SELECT token FROM queue_fences WHERE event_id = ?",
    };
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [event_id.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get::<i64>("", "token")?),
        None => None,
    })
}
