//! Price categories of an event, and on each seat its category (none for existing seats, which
//! keep their own price) and whether it is an accessible place (no for existing seats). A new
//! table and new columns only, so every row stays.

use sea_orm_migration::prelude::*;

use crate::columns::{add_columns, drop_columns};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000009_categories"
    }
}

#[derive(DeriveIden)]
enum Categories {
    Table,
    Id,
    EventId,
    Name,
    PriceCents,
    Color,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Seats {
    Table,
    CategoryId,
    Accessible,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Categories::Table)
                    .col(
                        ColumnDef::new(Categories::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Categories::EventId).big_integer().not_null())
                    .col(ColumnDef::new(Categories::Name).string().not_null())
                    .col(
                        ColumnDef::new(Categories::PriceCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Categories::Color).string())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_categories_event")
                            .from(Categories::Table, Categories::EventId)
                            .to(Events::Table, Events::Id),
                    )
                    .check((
                        "ck_categories_price",
                        Expr::col(Categories::PriceCents).gte(0),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_categories_name")
                    .table(Categories::Table)
                    .col(Categories::EventId)
                    .col(Categories::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        let columns = [
            ColumnDef::new(Seats::CategoryId).big_integer().to_owned(),
            ColumnDef::new(Seats::Accessible)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
        ];
        add_columns(manager, Seats::Table, columns).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(
            manager,
            Seats::Table,
            [Seats::Accessible, Seats::CategoryId],
        )
        .await?;
        manager
            .drop_table(Table::drop().table(Categories::Table).to_owned())
            .await
    }
}
