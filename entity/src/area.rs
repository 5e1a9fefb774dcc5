use sea_orm::entity::prelude::*;

/// A general-admission area of an event: a capacity, not numbered seats. The counters are
/// the lock that decides: `held + booked + blocked <= capacity` (`ck_areas_counts`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "areas")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub event_id: i64,
    pub name: String,
    pub category_id: i64,
    pub capacity: i64,
    pub held: i64,
    pub booked: i64,
    pub blocked: i64,
    /// +1 per committed change of the counts.
    pub version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
