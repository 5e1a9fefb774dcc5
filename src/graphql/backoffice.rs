//! The organizer's back office (admin only): an event's bookings and holds as connections,
//! and its sales report.

use async_graphql::{Context, ID, Object, Result, SimpleObject};

use super::errors::GqlResultExt;
use super::types::{Booking, BookingStatus, Hold, HoldStatus, int};
use super::{booking, caller};
use crate::backoffice::connections::{Page, PageArgs};
use crate::backoffice::report::{CategorySalesView, SalesReportView};
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
pub(super) fn parts<V, E>(page: Page<V>, edge: impl Fn(String, V) -> E) -> (Vec<E>, PageInfo, i32) {
    let end_cursor = page.edges.last().map(|(c, _)| c.clone());
    let edges = page.edges.into_iter().map(|(c, v)| edge(c, v)).collect();
    let info = PageInfo {
        has_next_page: page.has_next_page,
        end_cursor,
    };
    (edges, info, int(page.total_count as i64))
}

/// Counts and money of one category's seats (`categoryId` null: seats without a category).
#[derive(SimpleObject, Clone, Debug)]
pub struct CategorySales {
    pub category_id: Option<ID>,
    pub name: String,
    pub booked: i32,
    pub held: i32,
    pub available: i32,
    pub blocked: i32,
    pub checked_in: i32,
    /// Prices of its seats in CONFIRMED and REFUNDED bookings.
    pub gross_cents: i32,
    /// Prices of its seats in REFUNDED bookings.
    pub refunded_cents: i32,
}

impl From<CategorySalesView> for CategorySales {
    fn from(c: CategorySalesView) -> Self {
        let s = c.sales;
        Self {
            category_id: c.category_id.map(|id| ID(id.to_string())),
            name: c.name,
            booked: int(s.booked),
            held: int(s.held),
            available: int(s.available),
            blocked: int(s.blocked),
            checked_in: int(s.checked_in),
            gross_cents: int(s.gross_cents),
            refunded_cents: int(s.refunded_cents),
        }
    }
}

/// An event's sales, consistent with its seat map at `seq`.
#[derive(SimpleObject, Clone, Debug)]
pub struct SalesReport {
    pub event_id: ID,
    pub seq: i32,
    pub booked: i32,
    pub held: i32,
    pub available: i32,
    pub blocked: i32,
    pub checked_in: i32,
    /// Totals of CONFIRMED and REFUNDED bookings.
    pub gross_cents: i32,
    /// Totals of REFUNDED bookings.
    pub refunded_cents: i32,
    pub by_category: Vec<CategorySales>,
}

impl From<SalesReportView> for SalesReport {
    fn from(r: SalesReportView) -> Self {
        let s = r.total;
        Self {
            event_id: ID(r.event_id.to_string()),
            seq: int(r.seq),
            booked: int(s.booked),
            held: int(s.held),
            available: int(s.available),
            blocked: int(s.blocked),
            checked_in: int(s.checked_in),
            gross_cents: int(s.gross_cents),
            refunded_cents: int(s.refunded_cents),
            by_category: r.by_category.into_iter().map(Into::into).collect(),
        }
    }
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

    /// An event's sales report, read in one snapshot (admin only).
    async fn sales_report(&self, ctx: &Context<'_>, event_id: ID) -> Result<SalesReport> {
        let event_id = parse_numeric_id(&event_id, "event").gql()?;
        Ok(booking(ctx)
            .sales_report(caller(ctx), event_id)
            .await
            .gql()?
            .into())
    }
}
