//! Seats taken off sale by the organizer (sponsors, wheelchair places, the sound desk): a flag
//! and an optional reason beside the seat's claim. A blocked seat keeps its stored claim
//! status AVAILABLE, so the status check of the seats table stays as it is on both backends;
//! readers show it BLOCKED and no hold may claim it. Columns only, so every row stays.

use sea_orm_migration::prelude::*;

use crate::columns::{add_columns, drop_columns};

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
        let columns = [
            ColumnDef::new(Seats::Blocked)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
            ColumnDef::new(Seats::BlockedReason).string().to_owned(),
        ];
        add_columns(manager, Seats::Table, columns).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(
            manager,
            Seats::Table,
            [Seats::BlockedReason, Seats::Blocked],
        )
        .await
    }
}
