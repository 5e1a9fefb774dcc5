//! Hold extensions: how often `extendHold` may be used on one hold of an event (1 for
//! existing events) and how often each hold has been extended (0 for existing holds). Only
//! columns are added, so every row stays.

use sea_orm_migration::prelude::*;

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
        manager
            .alter_table(
                Table::alter()
                    .table(Events::Table)
                    .add_column(
                        ColumnDef::new(Events::MaxHoldExtensions)
                            .integer()
                            .not_null()
                            .default(1),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Holds::Table)
                    .add_column(
                        ColumnDef::new(Holds::ExtensionsUsed)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Holds::Table)
                    .drop_column(Holds::ExtensionsUsed)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Events::Table)
                    .drop_column(Events::MaxHoldExtensions)
                    .to_owned(),
            )
            .await
    }
}
