use sea_orm::entity::prelude::*;

/// Places of an area in a booking.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "booking_areas")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub booking_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub area_id: i64,
    pub quantity: i64,
    /// The price of one place.
    pub price_cents: i64,
    /// True while these places count in the area's `booked`.
    pub active: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
