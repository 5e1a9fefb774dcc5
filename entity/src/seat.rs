use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "seats")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub event_id: i64,
    pub section: String,
    pub row_label: String,
    pub number: i32,
    pub price_cents: i64,
    /// Order of the seat within its event (section, row, number as created).
    pub position: i32,
    /// `AVAILABLE`, `HELD` or `BOOKED`. A `HELD` seat whose `hold_expires_at_ms` has passed
    /// counts as available.
    pub status: String,
    pub hold_id: Option<String>,
    pub hold_expires_at_ms: Option<i64>,
    pub booking_id: Option<String>,
    pub version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
