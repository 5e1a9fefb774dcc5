//! An event's life and its sales window: a status (existing events are on sale, as they were)
//! and an optional opening and closing instant. Only columns are added, so every row stays.

use sea_orm_migration::prelude::*;

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
        // One column per statement: SQLite alters one thing at a time.
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
        for column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Events::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Events::SalesEndAtMs, Events::SalesStartAtMs, Events::Status] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Events::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
