//! Tickets: one per booked seat (later one per general-admission place), each with an
//! unguessable code and the time it was redeemed at the door. A ticket names either a seat or
//! an area, never both; the areas table comes with its own migration, so `area_id` has no
//! foreign key here. A booking that is cancelled or refunded keeps its tickets: the booking's
//! status makes them invalid. Existing bookings get their tickets here, so every booked seat
//! has one.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, QueryResult, TryGetable};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000011_tickets"
    }
}

#[derive(DeriveIden)]
enum Tickets {
    Table,
    Id,
    Code,
    BookingId,
    EventId,
    SeatId,
    AreaId,
    CheckedInAtMs,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum Bookings {
    Table,
    Id,
    EventId,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum BookingSeats {
    Table,
    BookingId,
    SeatId,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Seats {
    Table,
    Id,
}

/// Tickets written per statement by the backfill.
const BACKFILL_BATCH: usize = 500;

/// A ticket code as the server makes them: 16 bytes from the OS RNG in RFC 4648 base32
/// without padding (26 characters, letters and digits). The server's own generator lives in
/// `onsale::domain::ticket`; migrations never import the app, so this is a copy.
fn new_code() -> Result<String, DbErr> {
    use rand::TryRngCore;
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| DbErr::Migration(format!("no randomness for ticket codes: {e}")))?;
    let mut out = String::with_capacity(26);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    Ok(out)
}

fn column<T: TryGetable>(row: &QueryResult, name: &str) -> Result<T, DbErr> {
    row.try_get("", name)
}

/// One ticket for every booked seat that has none (every booking made before this migration).
async fn backfill(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let select = Query::select()
        .column((BookingSeats::Table, BookingSeats::BookingId))
        .column((BookingSeats::Table, BookingSeats::SeatId))
        .column((Bookings::Table, Bookings::EventId))
        .column((Bookings::Table, Bookings::CreatedAtMs))
        .from(BookingSeats::Table)
        .inner_join(
            Bookings::Table,
            Expr::col((Bookings::Table, Bookings::Id))
                .equals((BookingSeats::Table, BookingSeats::BookingId)),
        )
        .order_by((BookingSeats::Table, BookingSeats::BookingId), Order::Asc)
        .order_by((BookingSeats::Table, BookingSeats::SeatId), Order::Asc)
        .to_owned();
    let rows = db.query_all(&select).await?;
    for batch in rows.chunks(BACKFILL_BATCH) {
        let mut insert = Query::insert();
        insert.into_table(Tickets::Table).columns([
            Tickets::Code,
            Tickets::BookingId,
            Tickets::EventId,
            Tickets::SeatId,
            Tickets::CreatedAtMs,
        ]);
        for row in batch {
            let booking_id: String = column(row, "booking_id")?;
            let seat_id: i64 = column(row, "seat_id")?;
            let event_id: i64 = column(row, "event_id")?;
            let created_at_ms: i64 = column(row, "created_at_ms")?;
            insert
                .values([
                    new_code()?.into(),
                    booking_id.into(),
                    event_id.into(),
                    seat_id.into(),
                    created_at_ms.into(),
                ])
                .map_err(|e| DbErr::Migration(e.to_string()))?;
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tickets::Table)
                    .col(
                        ColumnDef::new(Tickets::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Tickets::Code).string().not_null())
                    .col(ColumnDef::new(Tickets::BookingId).string().not_null())
                    .col(ColumnDef::new(Tickets::EventId).big_integer().not_null())
                    .col(ColumnDef::new(Tickets::SeatId).big_integer())
                    .col(ColumnDef::new(Tickets::AreaId).big_integer())
                    .col(ColumnDef::new(Tickets::CheckedInAtMs).big_integer())
                    .col(
                        ColumnDef::new(Tickets::CreatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tickets_booking")
                            .from(Tickets::Table, Tickets::BookingId)
                            .to(Bookings::Table, Bookings::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tickets_event")
                            .from(Tickets::Table, Tickets::EventId)
                            .to(Events::Table, Events::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tickets_seat")
                            .from(Tickets::Table, Tickets::SeatId)
                            .to(Seats::Table, Seats::Id),
                    )
                    // A seat or an area, exactly one of them.
                    .check((
                        "ck_tickets_place",
                        Expr::col(Tickets::SeatId)
                            .is_null()
                            .ne(Expr::col(Tickets::AreaId).is_null()),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_tickets_code")
                    .table(Tickets::Table)
                    .col(Tickets::Code)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // One ticket per seat of a booking (NULL seat ids, area tickets, never collide).
        manager
            .create_index(
                Index::create()
                    .name("uq_tickets_booking_seat")
                    .table(Tickets::Table)
                    .col(Tickets::BookingId)
                    .col(Tickets::SeatId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tickets_event_checked_in")
                    .table(Tickets::Table)
                    .col(Tickets::EventId)
                    .col(Tickets::CheckedInAtMs)
                    .to_owned(),
            )
            .await?;
        backfill(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Tickets::Table).to_owned())
            .await
    }
}
