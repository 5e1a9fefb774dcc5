//! An event's life and its sales window: a status (existing events are on sale, as they were)
//! and an optional opening and closing instant. Only columns are added, so every row stays.

use sea_orm_migration::prelude::*;

use crate::columns::{add_columns, drop_columns};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000006_event_lifecycle"
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Status,
    SalesStartAtMs,
    SalesEndAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            ColumnDef::new(Events::Status)
                .string()
                .not_null()
                .default("ON_SALE")
                .to_owned(),
            ColumnDef::new(Events::SalesStartAtMs)
                .big_integer()
                .to_owned(),
            ColumnDef::new(Events::SalesEndAtMs)
                .big_integer()
                .to_owned(),
        ];
        add_columns(manager, Events::Table, columns).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(
            manager,
            Events::Table,
            [Events::SalesEndAtMs, Events::SalesStartAtMs, Events::Status],
        )
        .await
    }
}
