//! Signed outbound webhooks: the endpoints admins register, the events written in the same
//! transaction as the change they describe (the durable outbox), and one delivery per event
//! and subscribed endpoint, which the delivery worker leases, attempts and retries.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000012_webhooks"
    }
}

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    Url,
    /// A JSON array of event types; `[]` subscribes to every type.
    Events,
    Secret,
    Enabled,
    CreatedAtMs,
    UpdatedAtMs,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Id,
    EventType,
    /// The onsale event the change belongs to.
    EventId,
    /// The exact JSON body every delivery of this event sends.
    Payload,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    EndpointId,
    WebhookEventId,
    EventType,
    Status,
    Attempts,
    LastStatusCode,
    LastError,
    NextAttemptAtMs,
    LeaseUntilMs,
    LeasedBy,
    CreatedAtMs,
    UpdatedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(
                        ColumnDef::new(WebhookEndpoints::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(WebhookEndpoints::Url).string().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Events).string().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Secret).string().not_null())
                    .col(
                        ColumnDef::new(WebhookEndpoints::Enabled)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .col(
                        ColumnDef::new(WebhookEndpoints::CreatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookEndpoints::UpdatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookEvents::Table)
                    .col(
                        ColumnDef::new(WebhookEvents::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(WebhookEvents::EventType).string().not_null())
                    .col(ColumnDef::new(WebhookEvents::EventId).big_integer())
                    .col(ColumnDef::new(WebhookEvents::Payload).text().not_null())
                    .col(
                        ColumnDef::new(WebhookEvents::CreatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .check((
                        "ck_webhook_events_type",
                        Expr::col(WebhookEvents::EventType).is_in([
                            "booking.confirmed",
                            "booking.cancelled",
                            "booking.refunded",
                            "event.status_changed",
                            "ticket.checked_in",
                        ]),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(
                        ColumnDef::new(WebhookDeliveries::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::EndpointId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::WebhookEventId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::EventType)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::Status)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(WebhookDeliveries::LastStatusCode).integer())
                    .col(ColumnDef::new(WebhookDeliveries::LastError).string())
                    .col(
                        ColumnDef::new(WebhookDeliveries::NextAttemptAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(WebhookDeliveries::LeaseUntilMs).big_integer())
                    .col(ColumnDef::new(WebhookDeliveries::LeasedBy).string())
                    .col(
                        ColumnDef::new(WebhookDeliveries::CreatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::UpdatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_deliveries_endpoint")
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_deliveries_event")
                            .from(WebhookDeliveries::Table, WebhookDeliveries::WebhookEventId)
                            .to(WebhookEvents::Table, WebhookEvents::Id),
                    )
                    .check((
                        "ck_webhook_deliveries_status",
                        Expr::col(WebhookDeliveries::Status).is_in([
                            "PENDING",
                            "DELIVERED",
                            "FAILED",
                        ]),
                    ))
                    .to_owned(),
            )
            .await?;
        // One delivery per event and endpoint: its lease is what keeps one attempt in flight.
        manager
            .create_index(
                Index::create()
                    .name("uq_webhook_deliveries_endpoint_event")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::EndpointId)
                    .col(WebhookDeliveries::WebhookEventId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_deliveries_status_next")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::Status)
                    .col(WebhookDeliveries::NextAttemptAtMs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_deliveries_endpoint_created")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::EndpointId)
                    .col(WebhookDeliveries::CreatedAtMs)
                    .col(WebhookDeliveries::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(WebhookEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(WebhookEndpoints::Table).to_owned())
            .await
    }
}
