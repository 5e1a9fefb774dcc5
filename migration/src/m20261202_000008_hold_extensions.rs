//! Hold extensions: how often `extendHold` may be used on one hold of an event (1 for
//! existing events) and how often each hold has been extended (0 for existing holds). Only
//! columns are added, so every row stays.

use sea_orm_migration::prelude::*;

use crate::columns::{add_columns, drop_columns};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000008_hold_extensions"
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    MaxHoldExtensions,
}

#[derive(DeriveIden)]
enum Holds {
    Table,
    ExtensionsUsed,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let allowed = ColumnDef::new(Events::MaxHoldExtensions)
            .integer()
            .not_null()
            .default(1)
            .to_owned();
        add_columns(manager, Events::Table, [allowed]).await?;
        let used = ColumnDef::new(Holds::ExtensionsUsed)
            .integer()
            .not_null()
            .default(0)
            .to_owned();
        add_columns(manager, Holds::Table, [used]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(manager, Holds::Table, [Holds::ExtensionsUsed]).await?;
        drop_columns(manager, Events::Table, [Events::MaxHoldExtensions]).await
    }
}
