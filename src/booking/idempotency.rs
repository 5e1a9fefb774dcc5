//! Idempotency records: (user, operation, key) → the id of what the first call produced,
//! written in the same transaction as the effect.

use sea_orm::{ConnectionTrait, EntityTrait, Set};

use crate::booking::model::{IdempotencyKey, now_ms};
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
}

impl Operation {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HoldSeats => "holdSeats",
            Self::HoldBestAvailable => "holdBestAvailable",
            Self::ConfirmHold => "confirmHold",
            Self::StartCheckout => "startCheckout",
            Self::RequestSeats => "requestSeats",
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
