use sea_orm::entity::prelude::*;

pub use crate::status::SeatStatus;

/// A committed seat change waiting for its `seq` (PostgreSQL only; see
/// `migration/src/m20261202_000014_seat_change_pending.rs`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "seat_change_pending")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub event_id: i64,
    pub seat_id: i64,
    pub status: SeatStatus,
    pub hold_expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
