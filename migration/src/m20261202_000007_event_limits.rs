//! Limits per event against scalpers: seats (and places) per hold and per buyer. Both unset
//! means the server's defaults, as before; only columns are added, so every row stays.

use sea_orm_migration::prelude::*;

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
        // One column per statement: SQLite alters one thing at a time.
        let columns = [
            ColumnDef::new(Events::MaxSeatsPerOrder)
                .integer()
                .to_owned(),
            ColumnDef::new(Events::MaxSeatsPerBuyer)
                .integer()
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
        for column in [Events::MaxSeatsPerBuyer, Events::MaxSeatsPerOrder] {
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
