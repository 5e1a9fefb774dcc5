//! A name for this database's deployment, shared by every instance on it. It prefixes every
//! Redis key and channel, so deployments sharing one Redis never see each other's seats.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000005_deployment"
    }
}

#[derive(DeriveIden)]
enum Deployment {
    Table,
    Id,
    Namespace,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deployment::Table)
                    .col(
                        ColumnDef::new(Deployment::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Deployment::Namespace).string().not_null())
                    .check(("ck_deployment_single_row", Expr::col(Deployment::Id).eq(1)))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Deployment::Table).to_owned())
            .await
    }
}
