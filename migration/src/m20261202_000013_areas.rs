//! General-admission areas: a capacity sold by count next to numbered seats. The area row
//! holds its own counters (held, booked, blocked) and a version; the named check constraint
//! `ck_areas_counts` makes over-selling impossible on both backends whatever the code does.
//! Holds and bookings name their places in `hold_areas` / `booking_areas`. New tables only,
//! so every existing row stays.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000013_areas"
    }
}

#[derive(DeriveIden)]
enum Areas {
    Table,
    Id,
    EventId,
    Name,
    CategoryId,
    Capacity,
    Held,
    Booked,
    Blocked,
    Version,
}

#[derive(DeriveIden)]
enum HoldAreas {
    Table,
    HoldId,
    AreaId,
    Quantity,
    PriceCents,
    Active,
}

#[derive(DeriveIden)]
enum BookingAreas {
    Table,
    BookingId,
    AreaId,
    Quantity,
    PriceCents,
    Active,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Categories {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Holds {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Bookings {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let counts = Expr::col(Areas::Held)
            .gte(0)
            .and(Expr::col(Areas::Booked).gte(0))
            .and(Expr::col(Areas::Blocked).gte(0))
            .and(
                Expr::col(Areas::Held)
                    .add(Expr::col(Areas::Booked))
                    .add(Expr::col(Areas::Blocked))
                    .lte(Expr::col(Areas::Capacity)),
            );
        manager
            .create_table(
                Table::create()
                    .table(Areas::Table)
                    .col(
                        ColumnDef::new(Areas::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Areas::EventId).big_integer().not_null())
                    .col(ColumnDef::new(Areas::Name).string().not_null())
                    .col(ColumnDef::new(Areas::CategoryId).big_integer().not_null())
                    .col(ColumnDef::new(Areas::Capacity).big_integer().not_null())
                    .col(
                        ColumnDef::new(Areas::Held)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Areas::Booked)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Areas::Blocked)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Areas::Version)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_areas_event")
                            .from(Areas::Table, Areas::EventId)
                            .to(Events::Table, Events::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_areas_category")
                            .from(Areas::Table, Areas::CategoryId)
                            .to(Categories::Table, Categories::Id),
                    )
                    .check(("ck_areas_capacity", Expr::col(Areas::Capacity).gte(0)))
                    .check(("ck_areas_counts", counts))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_areas_name")
                    .table(Areas::Table)
                    .col(Areas::EventId)
                    .col(Areas::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HoldAreas::Table)
                    .col(ColumnDef::new(HoldAreas::HoldId).string().not_null())
                    .col(ColumnDef::new(HoldAreas::AreaId).big_integer().not_null())
                    .col(ColumnDef::new(HoldAreas::Quantity).big_integer().not_null())
                    .col(
                        ColumnDef::new(HoldAreas::PriceCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(HoldAreas::Active).boolean().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_hold_areas")
                            .col(HoldAreas::HoldId)
                            .col(HoldAreas::AreaId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_hold_areas_hold")
                            .from(HoldAreas::Table, HoldAreas::HoldId)
                            .to(Holds::Table, Holds::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_hold_areas_area")
                            .from(HoldAreas::Table, HoldAreas::AreaId)
                            .to(Areas::Table, Areas::Id),
                    )
                    .check((
                        "ck_hold_areas_quantity",
                        Expr::col(HoldAreas::Quantity).gte(1),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_hold_areas_area_active")
                    .table(HoldAreas::Table)
                    .col(HoldAreas::AreaId)
                    .col(HoldAreas::Active)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BookingAreas::Table)
                    .col(ColumnDef::new(BookingAreas::BookingId).string().not_null())
                    .col(
                        ColumnDef::new(BookingAreas::AreaId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(BookingAreas::Quantity)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(BookingAreas::PriceCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(BookingAreas::Active).boolean().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_booking_areas")
                            .col(BookingAreas::BookingId)
                            .col(BookingAreas::AreaId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_booking_areas_booking")
                            .from(BookingAreas::Table, BookingAreas::BookingId)
                            .to(Bookings::Table, Bookings::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_booking_areas_area")
                            .from(BookingAreas::Table, BookingAreas::AreaId)
                            .to(Areas::Table, Areas::Id),
                    )
                    .check((
                        "ck_booking_areas_quantity",
                        Expr::col(BookingAreas::Quantity).gte(1),
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            BookingAreas::Table.into_iden(),
            HoldAreas::Table.into_iden(),
            Areas::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
