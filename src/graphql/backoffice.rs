//! The organizer's back office (admin only): an event's bookings and holds as connections,
//! and its sales report.

use async_graphql::{Context, ID, Object, Result, SimpleObject};

use super::errors::GqlResultExt;
use super::types::{Booking, BookingStatus, Hold, HoldStatus, int};
use super::{booking, caller};
use crate::backoffice::connections::{Page, PageArgs};
use crate::domain::input::parse_numeric_id;

#[derive(SimpleObject, Clone, Debug)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// The cursor of the last edge; pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct BookingEdge {
    pub cursor: String,
    pub node: Booking,
}

/// A page of bookings, newest first.
#[derive(SimpleObject, Clone, Debug)]
pub struct BookingConnection {
    pub edges: Vec<BookingEdge>,
    pub page_info: PageInfo,
    /// How many bookings the filters match now.
    pub total_count: i32,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct HoldEdge {
    pub cursor: String,
    pub node: Hold,
}

/// A page of holds, newest first.
#[derive(SimpleObject, Clone, Debug)]
pub struct HoldConnection {
    pub edges: Vec<HoldEdge>,
    pub page_info: PageInfo,
    /// How many holds the filters match now.
    pub total_count: i32,
}

/// The edges, page info and count of `page`, each node made with `edge`.
fn parts<V, E>(page: Page<V>, edge: impl Fn(String, V) -> E) -> (Vec<E>, PageInfo, i32) {
    let end_cursor = page.edges.last().map(|(c, _)| c.clone());
    let edges = page.edges.into_iter().map(|(c, v)| edge(c, v)).collect();
    let info = PageInfo {
        has_next_page: page.has_next_page,
        end_cursor,
    };
    (edges, info, int(page.total_count as i64))
}

#[derive(Default)]
pub struct BackofficeQuery;

#[Object]
impl BackofficeQuery {
    /// An event's bookings, newest first (admin only). `first` defaults to 50, at most 500.
    async fn event_bookings(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        first: Option<i32>,
        after: Option<String>,
        status: Option<BookingStatus>,
        user_id: Option<String>,
    ) -> Result<BookingConnection> {
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        let page = booking(ctx)
            .event_bookings(
                caller(ctx),
                event_id,
                status.map(Into::into),
                user_id.as_deref(),
                PageArgs {
                    first: first.map(i64::from),
                    after,
                },
            )
            .await
            .gql()?;
        let (edges, page_info, total_count) = parts(page, |cursor, v| BookingEdge {
            cursor,
            node: v.into(),
        });
        Ok(BookingConnection {
            edges,
            page_info,
            total_count,
        })
    }

    /// An event's holds, newest first (admin only). `first` defaults to 50, at most 500.
    async fn event_holds(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        first: Option<i32>,
        after: Option<String>,
        status: Option<HoldStatus>,
    ) -> Result<HoldConnection> {
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        let page = booking(ctx)
            .event_holds(
                caller(ctx),
                event_id,
                status.map(Into::into),
                PageArgs {
                    first: first.map(i64::from),
                    after,
                },
            )
            .await
            .gql()?;
        let (edges, page_info, total_count) = parts(page, |cursor, v| HoldEdge {
            cursor,
            node: v.into(),
        });
        Ok(HoldConnection {
            edges,
            page_info,
            total_count,
        })
    }
}
