//! Idempotency records: (user, operation, key) → the id of what the first call produced,
//! written in the same transaction as the effect.

use sea_orm::{ConnectionTrait, EntityTrait, Set};

use crate::domain::clock::now_ms;
use crate::domain::input::IdempotencyKey;
use crate::error::AppError;
use entity::idempotency_key;

/// The operations that take an idempotency key.
#[derive(Clone, Copy, Debug)]
pub enum Operation {
    HoldSeats,
    HoldBestAvailable,
    ConfirmHold,
    StartCheckout,
    RequestSeats,
    ExtendHold,
    CheckIn,
}

impl Operation {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HoldSeats => "holdSeats",
            Self::HoldBestAvailable => "holdBestAvailable",
            Self::ConfirmHold => "confirmHold",
            Self::StartCheckout => "startCheckout",
            Self::RequestSeats => "requestSeats",
            Self::ExtendHold => "extendHold",
            Self::CheckIn => "checkIn",
        }
    }
}

/// The resource id stored for this key, if the operation already succeeded once.
pub async fn lookup<C: ConnectionTrait>(
    conn: &C,
    user: &str,
    op: Operation,
    key: &IdempotencyKey,
) -> Result<Option<String>, AppError> {
    let found = idempotency_key::Entity::find_by_id((
        user.to_owned(),
        op.as_str().to_owned(),
        key.as_str().to_owned(),
    ))
    .one(conn)
    .await?;
    Ok(found.map(|r| r.resource_id))
}

/// With a key the same user already used for `op`: what the first call made, loaded by
/// `load` from its id. `None` without a key or for a key not used yet.
pub async fn replay<C, V, F, Fut>(
    conn: &C,
    user: &str,
    op: Operation,
    key: Option<&IdempotencyKey>,
    load: F,
) -> Result<Option<V>, AppError>
where
    C: ConnectionTrait,
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<V, AppError>>,
{
    let Some(key) = key else { return Ok(None) };
    match lookup(conn, user, op, key).await? {
        Some(id) => Ok(Some(load(id).await?)),
        None => Ok(None),
    }
}

/// Records the result; a concurrent duplicate fails on the primary key and rolls back.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    user: &str,
    op: Operation,
    key: &IdempotencyKey,
    resource_id: &str,
) -> Result<(), AppError> {
    idempotency_key::Entity::insert(idempotency_key::ActiveModel {
        user_id: Set(user.to_owned()),
        operation: Set(op.as_str().to_owned()),
        key: Set(key.as_str().to_owned()),
        resource_id: Set(resource_id.to_owned()),
        created_at_ms: Set(now_ms()),
    })
    .exec(conn)
    .await?;
    Ok(())
}

/// Records the result if there is a key.
pub async fn record_if<C: ConnectionTrait>(
    conn: &C,
    user: &str,
    op: Operation,
    key: Option<&IdempotencyKey>,
    resource_id: &str,
) -> Result<(), AppError> {
    match key {
        Some(key) => record(conn, user, op, key, resource_id).await,
        None => Ok(()),
    }
}
