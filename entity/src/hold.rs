use sea_orm::entity::prelude::*;

pub use crate::status::HoldStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "holds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub event_id: i64,
    pub user_id: String,
    /// An `Active` hold past `expires_at_ms` is expired even before the sweeper records it.
    pub status: HoldStatus,
    pub expires_at_ms: i64,
    pub total_cents: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// How often `extendHold` has moved this hold's expiry.
    pub extensions_used: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
