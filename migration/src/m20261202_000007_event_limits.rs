//! Limits per event against scalpers: seats (and places) per hold and per buyer. Both unset
//! means the server's defaults, as before; only columns are added, so every row stays.

use sea_orm_migration::prelude::*;

use crate::columns::{add_columns, drop_columns};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000007_event_limits"
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    MaxSeatsPerOrder,
    MaxSeatsPerBuyer,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            ColumnDef::new(Events::MaxSeatsPerOrder)
                .integer()
                .to_owned(),
            ColumnDef::new(Events::MaxSeatsPerBuyer)
                .integer()
                .to_owned(),
        ];
        add_columns(manager, Events::Table, columns).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(
            manager,
            Events::Table,
            [Events::MaxSeatsPerBuyer, Events::MaxSeatsPerOrder],
        )
        .await
    }
}
