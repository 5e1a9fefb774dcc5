//! Seat changes waiting for their `seq` (PostgreSQL). A write transaction logs its changes
//! here instead of numbering them itself, so the writers of one event no longer queue on the
//! event's counter row through their commits; right after the commit, the event's sequencer
//! moves the committed rows into `seat_changes`, numbered in one short transaction (see
//! `src/realtime/sequencer.rs`). `id` orders the changes of one seat: a later change of a
//! seat is written under that seat's row lock after the earlier one committed, so it draws a
//! higher id. SQLite keeps numbering inside the write transaction and leaves this table empty.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000014_seat_change_pending"
    }
}

#[derive(DeriveIden)]
enum SeatChangePending {
    Table,
    Id,
    EventId,
    SeatId,
    Status,
    HoldExpiresAtMs,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SeatChangePending::Table)
                    .col(
                        ColumnDef::new(SeatChangePending::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(SeatChangePending::EventId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SeatChangePending::SeatId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SeatChangePending::Status)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SeatChangePending::HoldExpiresAtMs).big_integer())
                    .col(
                        ColumnDef::new(SeatChangePending::CreatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_seat_change_pending_event")
                            .from(SeatChangePending::Table, SeatChangePending::EventId)
                            .to(Events::Table, Events::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_seat_change_pending_event")
                    .table(SeatChangePending::Table)
                    .col(SeatChangePending::EventId)
                    .col(SeatChangePending::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SeatChangePending::Table).to_owned())
            .await
    }
}
