use sea_orm::entity::prelude::*;

pub use crate::status::WebhookDeliveryStatus;

/// One webhook event for one endpoint: attempted under a lease until delivered or failed.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub endpoint_id: String,
    pub webhook_event_id: String,
    pub event_type: String,
    pub status: WebhookDeliveryStatus,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    /// When the next attempt is due (while `Pending`).
    pub next_attempt_at_ms: i64,
    /// Until when the instance `leased_by` owns the attempt in flight.
    pub lease_until_ms: Option<i64>,
    pub leased_by: Option<String>,
    /// Drawn afresh by each lease; recording the attempt needs it still to be there.
    pub lease_token: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
