//! Seats taken off sale by the organizer (sponsors, wheelchair places, the sound desk): a flag
//! and an optional reason beside the seat's claim. A blocked seat keeps its stored claim
//! status AVAILABLE, so the status check of the seats table stays as it is on both backends;
//! readers show it BLOCKED and no hold may claim it. Columns only, so every row stays.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000010_blocked_seats"
    }
}

#[derive(DeriveIden)]
enum Seats {
    Table,
    Blocked,
    BlockedReason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        let columns = [
            ColumnDef::new(Seats::Blocked)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
            ColumnDef::new(Seats::BlockedReason).string().to_owned(),
        ];
        for column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Seats::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Seats::BlockedReason, Seats::Blocked] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Seats::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
