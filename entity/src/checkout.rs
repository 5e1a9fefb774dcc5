use sea_orm::entity::prelude::*;

pub use crate::status::CheckoutState;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "checkouts")]
pub struct Model {
    /// One checkout per hold.
    #[sea_orm(primary_key, auto_increment = false)]
    pub hold_id: String,
    pub user_id: String,
    pub event_id: i64,
    pub payment_intent_id: String,
    pub client_secret: String,
    pub amount_cents: i64,
    pub currency: String,
    pub state: CheckoutState,
    pub booking_id: Option<String>,
    pub attempts: i32,
    /// When the worker may next act on this checkout (also a lease while it does).
    pub next_attempt_at_ms: i64,
    /// Drawn afresh by each taking of that lease; the holder's finishing write needs it.
    pub lease_token: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
