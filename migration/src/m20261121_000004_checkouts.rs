//! Payments: one checkout per hold (a state machine whose pending Stripe calls form the
//! outbox the worker drains) and the Stripe events already processed.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000004_checkouts"
    }
}

#[derive(DeriveIden)]
enum Checkouts {
    Table,
    HoldId,
    UserId,
    EventId,
    PaymentIntentId,
    ClientSecret,
    AmountCents,
    Currency,
    State,
    BookingId,
    Attempts,
    NextAttemptAtMs,
    LastError,
    CreatedAtMs,
    UpdatedAtMs,
}

#[derive(DeriveIden)]
enum Holds {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum StripeEvents {
    Table,
    Id,
    EventType,
    ReceivedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Checkouts::Table)
                    .col(
                        ColumnDef::new(Checkouts::HoldId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Checkouts::UserId).string().not_null())
                    .col(ColumnDef::new(Checkouts::EventId).big_integer().not_null())
                    .col(
                        ColumnDef::new(Checkouts::PaymentIntentId)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Checkouts::ClientSecret).string().not_null())
                    .col(
                        ColumnDef::new(Checkouts::AmountCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Checkouts::Currency).string().not_null())
                    .col(ColumnDef::new(Checkouts::State).string().not_null())
                    .col(ColumnDef::new(Checkouts::BookingId).string())
                    .col(
                        ColumnDef::new(Checkouts::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Checkouts::NextAttemptAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Checkouts::LastError).string())
                    .col(
                        ColumnDef::new(Checkouts::CreatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Checkouts::UpdatedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_checkouts_hold")
                            .from(Checkouts::Table, Checkouts::HoldId)
                            .to(Holds::Table, Holds::Id),
                    )
                    .check((
                        "ck_checkouts_state",
                        Expr::col(Checkouts::State).is_in([
                            "PENDING",
                            "BOOKED",
                            "CAPTURED",
                            "CANCELLING",
                            "CANCELLED",
                            "REFUNDING",
                            "REFUNDED",
                            "FAILED",
                        ]),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_checkouts_payment_intent")
                    .table(Checkouts::Table)
                    .col(Checkouts::PaymentIntentId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_checkouts_state_next")
                    .table(Checkouts::Table)
                    .col(Checkouts::State)
                    .col(Checkouts::NextAttemptAtMs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StripeEvents::Table)
                    .col(
                        ColumnDef::new(StripeEvents::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(StripeEvents::EventType).string().not_null())
                    .col(
                        ColumnDef::new(StripeEvents::ReceivedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(StripeEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Checkouts::Table).to_owned())
            .await
    }
}
