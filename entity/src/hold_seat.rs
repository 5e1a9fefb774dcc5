use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "hold_seats")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub hold_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seat_id: i64,
    /// True while this hold claims the seat; a unique index allows one active row per seat.
    pub active: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
