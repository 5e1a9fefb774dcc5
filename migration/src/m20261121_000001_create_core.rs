//! The core booking schema: events, seats, holds, bookings, idempotency records and the
//! append-only seat-change log.
//!
//! Times are stored as Unix epoch milliseconds (`BIGINT`) so that comparisons behave the
//! same on PostgreSQL and SQLite. Ids of holds and bookings are UUID strings.
//!
//! The database itself makes a double hold or double booking impossible: `hold_seats` and
//! `booking_seats` carry partial unique indexes that only one *active* row per seat can satisfy.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000001_create_core"
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    Name,
    Venue,
    StartsAtMs,
    Seq,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum Seats {
    Table,
    Id,
    EventId,
    Section,
    RowLabel,
    Number,
    PriceCents,
    Position,
    Status,
    HoldId,
    HoldExpiresAtMs,
    BookingId,
    Version,
}

#[derive(DeriveIden)]
enum Holds {
    Table,
    Id,
    EventId,
    UserId,
    Status,
    ExpiresAtMs,
    TotalCents,
    CreatedAtMs,
    UpdatedAtMs,
}

#[derive(DeriveIden)]
enum HoldSeats {
    Table,
    HoldId,
    SeatId,
    Active,
}

#[derive(DeriveIden)]
enum Bookings {
    Table,
    Id,
    EventId,
    HoldId,
    UserId,
    Status,
    TotalCents,
    PaymentIntentId,
    CreatedAtMs,
    UpdatedAtMs,
}

#[derive(DeriveIden)]
enum BookingSeats {
    Table,
    BookingId,
    SeatId,
    Active,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    UserId,
    Operation,
    Key,
    ResourceId,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum SeatChanges {
    Table,
    Id,
    EventId,
    Seq,
    SeatId,
    Status,
    HoldExpiresAtMs,
    CreatedAtMs,
}

fn id_pk(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(id_pk(Events::Id))
                    .col(ColumnDef::new(Events::Name).string().not_null())
                    .col(ColumnDef::new(Events::Venue).string().not_null())
                    .col(ColumnDef::new(Events::StartsAtMs).big_integer().not_null())
                    .col(
                        ColumnDef::new(Events::Seq)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Events::CreatedAtMs).big_integer().not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Seats::Table)
                    .col(id_pk(Seats::Id))
                    .col(ColumnDef::new(Seats::EventId).big_integer().not_null())
                    .col(ColumnDef::new(Seats::Section).string().not_null())
                    .col(ColumnDef::new(Seats::RowLabel).string().not_null())
                    .col(ColumnDef::new(Seats::Number).integer().not_null())
                    .col(ColumnDef::new(Seats::PriceCents).big_integer().not_null())
                    .col(ColumnDef::new(Seats::Position).integer().not_null())
                    .col(ColumnDef::new(Seats::Status).string().not_null())
                    .col(ColumnDef::new(Seats::HoldId).string())
                    .col(ColumnDef::new(Seats::HoldExpiresAtMs).big_integer())
                    .col(ColumnDef::new(Seats::BookingId).string())
                    .col(
                        ColumnDef::new(Seats::Version)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_seats_event")
                            .from(Seats::Table, Seats::EventId)
                            .to(Events::Table, Events::Id),
                    )
                    .check((
                        "ck_seats_status",
                        Expr::col(Seats::Status).is_in(["AVAILABLE", "HELD", "BOOKED"]),
                    ))
                    .check(("ck_seats_price", Expr::col(Seats::PriceCents).gte(0)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_seats_place")
                    .table(Seats::Table)
                    .col(Seats::EventId)
                    .col(Seats::Section)
                    .col(Seats::RowLabel)
                    .col(Seats::Number)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_seats_event_position")
                    .table(Seats::Table)
                    .col(Seats::EventId)
                    .col(Seats::Position)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Holds::Table)
                    .col(ColumnDef::new(Holds::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Holds::EventId).big_integer().not_null())
                    .col(ColumnDef::new(Holds::UserId).string().not_null())
                    .col(ColumnDef::new(Holds::Status).string().not_null())
                    .col(ColumnDef::new(Holds::ExpiresAtMs).big_integer().not_null())
                    .col(ColumnDef::new(Holds::TotalCents).big_integer().not_null())
                    .col(ColumnDef::new(Holds::CreatedAtMs).big_integer().not_null())
                    .col(ColumnDef::new(Holds::UpdatedAtMs).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_holds_event")
                            .from(Holds::Table, Holds::EventId)
                            .to(Events::Table, Events::Id),
                    )
                    .check((
                        "ck_holds_status",
                        Expr::col(Holds::Status).is_in([
                            "ACTIVE",
                            "CONFIRMED",
                            "RELEASED",
                            "EXPIRED",
                        ]),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_holds_user")
                    .table(Holds::Table)
                    .col(Holds::UserId)
                    .col(Holds::CreatedAtMs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_holds_status_expiry")
                    .table(Holds::Table)
                    .col(Holds::Status)
                    .col(Holds::ExpiresAtMs)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(HoldSeats::Table)
                    .col(ColumnDef::new(HoldSeats::HoldId).string().not_null())
                    .col(ColumnDef::new(HoldSeats::SeatId).big_integer().not_null())
                    .col(ColumnDef::new(HoldSeats::Active).boolean().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_hold_seats")
                            .col(HoldSeats::HoldId)
                            .col(HoldSeats::SeatId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_hold_seats_hold")
                            .from(HoldSeats::Table, HoldSeats::HoldId)
                            .to(Holds::Table, Holds::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_hold_seats_seat")
                            .from(HoldSeats::Table, HoldSeats::SeatId)
                            .to(Seats::Table, Seats::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Bookings::Table)
                    .col(
                        ColumnDef::new(Bookings::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Bookings::EventId).big_integer().not_null())
                    .col(ColumnDef::new(Bookings::HoldId).string().not_null())
                    .col(ColumnDef::new(Bookings::UserId).string().not_null())
                    .col(ColumnDef::new(Bookings::Status).string().not_null())
                    .col(
                        ColumnDef::new(Bookings::TotalCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Bookings::PaymentIntentId).string())
                    .col(
                        ColumnDef::new(Bookings::CreatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Bookings::UpdatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_bookings_event")
                            .from(Bookings::Table, Bookings::EventId)
                            .to(Events::Table, Events::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_bookings_hold")
                            .from(Bookings::Table, Bookings::HoldId)
                            .to(Holds::Table, Holds::Id),
                    )
                    .check((
                        "ck_bookings_status",
                        Expr::col(Bookings::Status).is_in(["CONFIRMED", "CANCELLED", "REFUNDED"]),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_bookings_hold")
                    .table(Bookings::Table)
                    .col(Bookings::HoldId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_bookings_payment_intent")
                    .table(Bookings::Table)
                    .col(Bookings::PaymentIntentId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_bookings_user")
                    .table(Bookings::Table)
                    .col(Bookings::UserId)
                    .col(Bookings::CreatedAtMs)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BookingSeats::Table)
                    .col(ColumnDef::new(BookingSeats::BookingId).string().not_null())
                    .col(
                        ColumnDef::new(BookingSeats::SeatId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(BookingSeats::Active).boolean().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_booking_seats")
                            .col(BookingSeats::BookingId)
                            .col(BookingSeats::SeatId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_booking_seats_booking")
                            .from(BookingSeats::Table, BookingSeats::BookingId)
                            .to(Bookings::Table, Bookings::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_booking_seats_seat")
                            .from(BookingSeats::Table, BookingSeats::SeatId)
                            .to(Seats::Table, Seats::Id),
                    )
                    .to_owned(),
            )
            .await?;

        // The last word on double holds and double bookings: partial unique indexes that only
        // one active row per seat can satisfy. Same SQL on PostgreSQL and SQLite.
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE UNIQUE INDEX uq_hold_seats_active_seat ON hold_seats (seat_id) WHERE active",
        )
        .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX uq_booking_seats_active_seat ON booking_seats (seat_id) WHERE active",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX ix_hold_seats_seat ON hold_seats (seat_id)")
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(ColumnDef::new(IdempotencyKeys::UserId).string().not_null())
                    .col(
                        ColumnDef::new(IdempotencyKeys::Operation)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IdempotencyKeys::Key).string().not_null())
                    .col(
                        ColumnDef::new(IdempotencyKeys::ResourceId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::CreatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .name("pk_idempotency_keys")
                            .col(IdempotencyKeys::UserId)
                            .col(IdempotencyKeys::Operation)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SeatChanges::Table)
                    .col(id_pk(SeatChanges::Id))
                    .col(
                        ColumnDef::new(SeatChanges::EventId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SeatChanges::Seq).big_integer().not_null())
                    .col(ColumnDef::new(SeatChanges::SeatId).big_integer().not_null())
                    .col(ColumnDef::new(SeatChanges::Status).string().not_null())
                    .col(ColumnDef::new(SeatChanges::HoldExpiresAtMs).big_integer())
                    .col(
                        ColumnDef::new(SeatChanges::CreatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_seat_changes_event")
                            .from(SeatChanges::Table, SeatChanges::EventId)
                            .to(Events::Table, Events::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_seat_changes_event_seq")
                    .table(SeatChanges::Table)
                    .col(SeatChanges::EventId)
                    .col(SeatChanges::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SeatChanges::Table.into_iden(),
            IdempotencyKeys::Table.into_iden(),
            BookingSeats::Table.into_iden(),
            Bookings::Table.into_iden(),
            HoldSeats::Table.into_iden(),
            Holds::Table.into_iden(),
            Seats::Table.into_iden(),
            Events::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
