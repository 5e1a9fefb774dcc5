//! An index for pruning the seat-change log by age.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000002_seat_change_retention"
    }
}

#[derive(DeriveIden)]
enum SeatChanges {
    Table,
    CreatedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_seat_changes_created")
                    .table(SeatChanges::Table)
                    .col(SeatChanges::CreatedAtMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_seat_changes_created")
                    .table(SeatChanges::Table)
                    .to_owned(),
            )
            .await
    }
}
