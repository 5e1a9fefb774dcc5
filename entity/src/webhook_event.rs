use sea_orm::entity::prelude::*;

/// One change to tell endpoints about, written in the transaction of the change.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_events")]
pub struct Model {
    /// The `id` of the body.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub event_type: String,
    /// The onsale event it belongs to.
    pub event_id: Option<i64>,
    /// The exact JSON body each delivery sends.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub created_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
