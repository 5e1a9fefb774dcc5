use sea_orm::entity::prelude::*;

pub use crate::status::SeatStatus;

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
    /// A `Held` seat whose `hold_expires_at_ms` has passed counts as available. Never
    /// `Blocked`: that is the `blocked` flag.
    pub status: SeatStatus,
    pub hold_id: Option<String>,
    pub hold_expires_at_ms: Option<i64>,
    pub booking_id: Option<String>,
    pub version: i64,
    /// The price category (the seat's price is its category's); `None`: priced by its row.
    pub category_id: Option<i64>,
    /// An accessible place (wheelchair space or companion seat).
    pub accessible: bool,
    /// Taken off sale by the organizer: shown BLOCKED, never claimed. The claim columns
    /// stay AVAILABLE meanwhile.
    pub blocked: bool,
    /// Why (admins only).
    pub blocked_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
