//! Adding and dropping columns one statement at a time: SQLite alters one thing per
//! `ALTER TABLE`, so the migrations that only add columns share these.

use sea_orm_migration::prelude::*;

/// Adds `columns` to `table`, one `ALTER TABLE` each.
pub(crate) async fn add_columns(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    columns: impl IntoIterator<Item = ColumnDef>,
) -> Result<(), DbErr> {
    let table = table.into_iden();
    for mut column in columns {
        manager
            .alter_table(
                Table::alter()
                    .table(table.clone())
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}

/// Drops `columns` of `table`, one `ALTER TABLE` each.
pub(crate) async fn drop_columns<C: IntoIden>(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    columns: impl IntoIterator<Item = C>,
) -> Result<(), DbErr> {
    let table = table.into_iden();
    for column in columns {
        manager
            .alter_table(
                Table::alter()
                    .table(table.clone())
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}
