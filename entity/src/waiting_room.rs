use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "waiting_rooms")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: i64,
    /// Names this event's queue state in Redis; random, set once, never changed.
    pub queue_key: String,
    pub enabled: bool,
    /// When the lottery among early arrivals is drawn and admissions start.
    pub opens_at_ms: i64,
    pub admit_per_sec: i32,
    pub admission_ttl_secs: i32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
