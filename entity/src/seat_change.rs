use sea_orm::entity::prelude::*;

pub use crate::status::SeatStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "seat_changes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub event_id: i64,
    /// Strictly increasing per event, assigned in the transaction that made the change.
    pub seq: i64,
    pub seat_id: i64,
    pub status: SeatStatus,
    pub hold_expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
