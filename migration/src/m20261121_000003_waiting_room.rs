//! Per-event waiting rooms: whether the room is on, when it opens, how fast people are let
//! in and how long an admission lasts. The live queue itself lives in Redis, under a random
//! `queue_key` chosen once per event, so that databases sharing one Redis never mix queues.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000003_waiting_room"
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum WaitingRooms {
    Table,
    EventId,
    QueueKey,
    Enabled,
    OpensAtMs,
    AdmitPerSec,
    AdmissionTtlSecs,
    CreatedAtMs,
    UpdatedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WaitingRooms::Table)
                    .col(
                        ColumnDef::new(WaitingRooms::EventId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(WaitingRooms::QueueKey).string().not_null())
                    .col(ColumnDef::new(WaitingRooms::Enabled).boolean().not_null())
                    .col(
                        ColumnDef::new(WaitingRooms::OpensAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WaitingRooms::AdmitPerSec)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WaitingRooms::AdmissionTtlSecs)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WaitingRooms::CreatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WaitingRooms::UpdatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_waiting_rooms_event")
                            .from(WaitingRooms::Table, WaitingRooms::EventId)
                            .to(Events::Table, Events::Id),
                    )
                    .check((
                        "ck_waiting_rooms_rate",
                        Expr::col(WaitingRooms::AdmitPerSec).gt(0),
                    ))
                    .check((
                        "ck_waiting_rooms_ttl",
                        Expr::col(WaitingRooms::AdmissionTtlSecs).gt(0),
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WaitingRooms::Table).to_owned())
            .await
    }
}
