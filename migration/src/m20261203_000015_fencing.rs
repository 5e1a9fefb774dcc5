//! Fencing tokens for the workers' leases. `queue_fences` keeps, per event, the newest token
//! of the request-queue lease (taken in Redis) that applied a request: a holder with an older
//! token is refused. Checkouts and webhook deliveries, whose leases are their own rows, get a
//! `lease_token` drawn afresh by each acquisition, which the holder's finishing write must
//! still find. No foreign key on `queue_fences`: checking the fence must never wait on the
//! event's row. Only a table and columns are added, so every row stays.

use sea_orm_migration::prelude::*;

use crate::columns::{add_columns, drop_columns};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000015_fencing"
    }
}

#[derive(DeriveIden)]
enum QueueFences {
    Table,
    EventId,
    Token,
}

#[derive(DeriveIden)]
enum Checkouts {
    Table,
    LeaseToken,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    LeaseToken,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(QueueFences::Table)
                    .col(
                        ColumnDef::new(QueueFences::EventId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(QueueFences::Token).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        let token = ColumnDef::new(Checkouts::LeaseToken)
            .big_integer()
            .to_owned();
        add_columns(manager, Checkouts::Table, [token]).await?;
        let token = ColumnDef::new(WebhookDeliveries::LeaseToken)
            .big_integer()
            .to_owned();
        add_columns(manager, WebhookDeliveries::Table, [token]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(
            manager,
            WebhookDeliveries::Table,
            [WebhookDeliveries::LeaseToken],
        )
        .await?;
        drop_columns(manager, Checkouts::Table, [Checkouts::LeaseToken]).await?;
        manager
            .drop_table(Table::drop().table(QueueFences::Table).to_owned())
            .await
    }
}
