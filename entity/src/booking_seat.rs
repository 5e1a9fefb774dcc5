use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "booking_seats")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub booking_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seat_id: i64,
    /// True while the booking owns the seat; a unique index allows one active row per seat.
    pub active: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
