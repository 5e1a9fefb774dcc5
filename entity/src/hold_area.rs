use sea_orm::entity::prelude::*;

/// Places of an area in a hold.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "hold_areas")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub hold_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub area_id: i64,
    pub quantity: i64,
    /// The price of one place when the hold was made.
    pub price_cents: i64,
    /// True while these places count in the area's `held`.
    pub active: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
