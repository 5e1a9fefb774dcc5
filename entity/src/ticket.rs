use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tickets")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unguessable, letters and digits only; unique.
    pub code: String,
    pub booking_id: String,
    pub event_id: i64,
    /// Set for a seat; exactly one of `seat_id` and `area_id` is.
    pub seat_id: Option<i64>,
    /// Set for a general-admission place.
    pub area_id: Option<i64>,
    /// When it was redeemed at the door; set once.
    pub checked_in_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
