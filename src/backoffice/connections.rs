//! Relay-style connections over an event's bookings and holds: newest first
//! (`created_at_ms` desc, then `id` desc) by keyset cursor, so a row created after the first
//! page sorts before the cursor and never shows on a later page, and no row repeats or is
//! skipped. A cursor names the query it belongs to; one from another query is refused.

use sea_orm::sea_query::Condition;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};

use crate::auth::Caller;
use crate::booking::BookingService;
use crate::booking::views;
use crate::domain::clock::now_ms;
use crate::domain::status::{BookingStatus, HoldStatus};
use crate::domain::views::{BookingView, HoldView};
use crate::error::AppError;
use entity::{booking, hold};

/// `first` when none is given.
pub const DEFAULT_PAGE: u64 = 50;
/// The largest `first` accepted.
pub const MAX_PAGE: u64 = 500;

/// One page of a connection: each node with its cursor.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub edges: Vec<(String, T)>,
    pub has_next_page: bool,
    pub total_count: u64,
}

/// What a connection is asked for.
#[derive(Clone, Debug, Default)]
pub struct PageArgs {
    pub first: Option<i64>,
    pub after: Option<String>,
}

impl PageArgs {
    pub(crate) fn size(&self) -> Result<u64, AppError> {
        match self.first {
            None => Ok(DEFAULT_PAGE),
            Some(n) if n < 0 => Err(AppError::BadInput("first must not be negative".into())),
            Some(n) if n as u64 > MAX_PAGE => Err(AppError::BadInput(format!(
                "first must be at most {MAX_PAGE}"
            ))),
            Some(n) => Ok(n as u64),
        }
    }
}

/// A position in one query's order: the row's `(created_at_ms, id)`, bound to `query`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) created_at_ms: i64,
    pub(crate) id: String,
}

impl Cursor {
    pub(crate) fn encode(&self, query: &str) -> String {
        hex::encode(format!(
            "{query}\u{1f}{}\u{1f}{}",
            self.created_at_ms, self.id
        ))
    }

    pub(crate) fn decode(text: &str, query: &str) -> Result<Self, AppError> {
        let bad = || AppError::BadInput("after is not a cursor of this query".into());
        let bytes = hex::decode(text).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.split('\u{1f}');
        let (Some(q), Some(at), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if q != query {
            return Err(bad());
        }
        Ok(Self {
            created_at_ms: at.parse().map_err(|_| bad())?,
            id: id.to_owned(),
        })
    }
}

/// What identifies one query for its cursors: the connection, the event and the filters.
fn query_key(kind: &str, event_id: i64, filters: &[Option<&str>]) -> String {
    let mut key = format!("{kind}:{event_id}");
    for f in filters {
        key.push(':');
        key.push_str(f.unwrap_or("*"));
    }
    key
}

/// Rows strictly after `cursor` in newest-first order.
fn after<E: EntityTrait, C: ColumnTrait>(
    select: Select<E>,
    created: C,
    id: C,
    cursor: &Cursor,
) -> Select<E> {
    select.filter(
        Condition::any().add(created.lt(cursor.created_at_ms)).add(
            Condition::all()
                .add(created.eq(cursor.created_at_ms))
                .add(id.lt(cursor.id.as_str())),
        ),
    )
}

/// One page of `select` after `cursor`, newest first by `(created, id)`: the rows, their
/// cursors, whether more follow, and how many rows `select` matches in all.
pub(crate) async fn fetch_page<E: EntityTrait>(
    conn: &DatabaseConnection,
    select: Select<E>,
    (created, id): (E::Column, E::Column),
    cursor: Option<Cursor>,
    size: u64,
    position: impl Fn(&E::Model) -> Cursor,
    query: &str,
) -> Result<(Vec<E::Model>, Vec<String>, bool, u64), AppError>
where
    E::Model: Sync,
{
    let total_count = select.clone().count(conn).await?;
    let select = match &cursor {
        Some(cursor) => after(select, created, id, cursor),
        None => select,
    };
    let mut rows = select
        .order_by_desc(created)
        .order_by_desc(id)
        .limit(size + 1)
        .all(conn)
        .await?;
    let has_next_page = rows.len() as u64 > size;
    rows.truncate(size as usize);
    let cursors = rows.iter().map(|r| position(r).encode(query)).collect();
    Ok((rows, cursors, has_next_page, total_count))
}

impl BookingService {
    /// An event's bookings, newest first, optionally of one status or one user (admin only).
    pub async fn event_bookings(
        &self,
        caller: &Caller,
        event_id: i64,
        status: Option<BookingStatus>,
        user_id: Option<&str>,
        page: PageArgs,
    ) -> Result<Page<BookingView>, AppError> {
        self.admin_event(caller, event_id).await?;
        let size = page.size()?;
        let status_key = status.map(|s| format!("{s:?}"));
        let query = query_key("bookings", event_id, &[status_key.as_deref(), user_id]);
        let cursor = page
            .after
            .as_deref()
            .map(|c| Cursor::decode(c, &query))
            .transpose()?;
        let mut select = booking::Entity::find().filter(booking::Column::EventId.eq(event_id));
        if let Some(status) = status {
            select = select.filter(booking::Column::Status.eq(status));
        }
        if let Some(user_id) = user_id {
            select = select.filter(booking::Column::UserId.eq(user_id));
        }
        let conn = &self.db().conn;
        let (rows, cursors, has_next_page, total_count) = fetch_page(
            conn,
            select,
            (booking::Column::CreatedAtMs, booking::Column::Id),
            cursor,
            size,
            |b| Cursor {
                created_at_ms: b.created_at_ms,
                id: b.id.clone(),
            },
            &query,
        )
        .await?;
        let nodes = views::bookings(conn, rows).await?;
        Ok(Page {
            edges: cursors.into_iter().zip(nodes).collect(),
            has_next_page,
            total_count,
        })
    }

    /// An event's holds, newest first, optionally of one status as it shows now (an ACTIVE
    /// hold past its expiry is EXPIRED) (admin only).
    pub async fn event_holds(
        &self,
        caller: &Caller,
        event_id: i64,
        status: Option<HoldStatus>,
        page: PageArgs,
    ) -> Result<Page<HoldView>, AppError> {
        self.admin_event(caller, event_id).await?;
        let size = page.size()?;
        let status_key = status.map(|s| format!("{s:?}"));
        let query = query_key("holds", event_id, &[status_key.as_deref()]);
        let cursor = page
            .after
            .as_deref()
            .map(|c| Cursor::decode(c, &query))
            .transpose()?;
        let now = now_ms();
        let mut select = hold::Entity::find().filter(hold::Column::EventId.eq(event_id));
        select = match status {
            None => select,
            Some(HoldStatus::Active) => select
                .filter(hold::Column::Status.eq(HoldStatus::Active))
                .filter(hold::Column::ExpiresAtMs.gt(now)),
            Some(HoldStatus::Expired) => select.filter(
                Condition::any()
                    .add(hold::Column::Status.eq(HoldStatus::Expired))
                    .add(
                        Condition::all()
                            .add(hold::Column::Status.eq(HoldStatus::Active))
                            .add(hold::Column::ExpiresAtMs.lte(now)),
                    ),
            ),
            Some(other) => select.filter(hold::Column::Status.eq(other)),
        };
        let conn = &self.db().conn;
        let (rows, cursors, has_next_page, total_count) = fetch_page(
            conn,
            select,
            (hold::Column::CreatedAtMs, hold::Column::Id),
            cursor,
            size,
            |h| Cursor {
                created_at_ms: h.created_at_ms,
                id: h.id.clone(),
            },
            &query,
        )
        .await?;
        let nodes = views::holds(conn, rows).await?;
        Ok(Page {
            edges: cursors.into_iter().zip(nodes).collect(),
            has_next_page,
            total_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_only_in_its_own_query() {
        let c = Cursor {
            created_at_ms: 42,
            id: "abc".into(),
        };
        let text = c.encode("bookings:1:*:*");
        assert_eq!(
            Cursor::decode(&text, "bookings:1:*:*").expect("its own cursor"),
            c
        );
        assert!(Cursor::decode(&text, "bookings:2:*:*").is_err());
        assert!(Cursor::decode("zz", "bookings:1:*:*").is_err());
    }
}
