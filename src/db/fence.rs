//! Fencing tokens. A lease (in Redis or in a row) can run out while its holder is paused,
//! and the holder does not know it; so work done under a lease carries the lease's token,
//! and the database refuses work whose token is older than the newest one it has seen.

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::error::AppError;

/// Passes the fence of an event's request queue with `token`, the holder's token of the
/// queue lease: the newest token seen is stored, and an older one is refused with
/// [`AppError::LeaseLost`] (roll back: a newer holder works the queue). Run first in the
/// transaction that applies a request.
///
/// On PostgreSQL the holder's transactions share the fence row (`FOR SHARE`), so the requests
/// of one holder apply side by side and commit together; a newer token raises the row
/// (an exclusive lock), which waits until the older holder's transactions in flight have
/// ended and makes every later one of them see the newer token. So two holders never apply
/// requests side by side. (SQLite has one writer at a time: the upsert alone does it.)
pub async fn pass_queue_fence<C: ConnectionTrait>(
    txn: &C,
    event_id: i64,
    token: i64,
) -> Result<(), AppError> {
    let backend = txn.get_database_backend();
    if backend != DbBackend::Postgres {
        let passed = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO queue_fences (event_id, token) VALUES (?, ?) \
                 ON CONFLICT (event_id) DO UPDATE SET token = excluded.token \
                 WHERE queue_fences.token <= excluded.token",
                [event_id.into(), token.into()],
            ))
            .await?;
        if passed.rows_affected() == 0 {
            return Err(AppError::LeaseLost("the request queue"));
        }
        return Ok(());
    }
    // Twice at most: the second time only after the row appeared or moved meanwhile.
    for _ in 0..2 {
        // A newer holder's first write raises the fence; with the same token nothing is
        // locked here (the row does not match).
        let values = [event_id.into(), token.into()];
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE queue_fences SET token = $2 WHERE event_id = $1 AND token < $2",
            values.clone(),
        ))
        .await?;
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                "SELECT token FROM queue_fences WHERE event_id = $1 FOR SHARE",
                [event_id.into()],
            ))
            .await?;
        match row {
            Some(row) => {
                let seen: i64 = row.try_get("", "token")?;
                if seen > token {
                    return Err(AppError::LeaseLost("the request queue"));
                }
                if seen == token {
                    return Ok(());
                }
            }
            // The event's first queued request: whoever inserts the row passes; the others
            // wait for its commit and read it.
            None => {
                let inserted = txn
                    .execute_raw(Statement::from_sql_and_values(
                        backend,
                        "INSERT INTO queue_fences (event_id, token) VALUES ($1, $2) \
                         ON CONFLICT (event_id) DO NOTHING",
                        values,
                    ))
                    .await?;
                if inserted.rows_affected() == 1 {
                    return Ok(());
                }
            }
        }
    }
    Err(AppError::retry_later(
        0,
        "the request queue's fence moved meanwhile; try again",
    ))
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
