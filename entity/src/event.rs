use sea_orm::entity::prelude::*;

pub use crate::status::EventStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub venue: String,
    pub starts_at_ms: i64,
    /// The last seat-change sequence number assigned for this event.
    pub seq: i64,
    pub created_at_ms: i64,
    pub status: EventStatus,
    /// Sales open at this instant (inclusive); `None`: open since the event went on sale.
    pub sales_start_at_ms: Option<i64>,
    /// Sales close at this instant (exclusive); `None`: open until closed.
    pub sales_end_at_ms: Option<i64>,
    /// Most seats and places in one hold; `None`: the server's default.
    pub max_seats_per_order: Option<i32>,
    /// Most seats and places across one buyer's active holds and confirmed bookings.
    pub max_seats_per_buyer: Option<i32>,
    /// How often `extendHold` may be used on one hold.
    pub max_hold_extensions: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
