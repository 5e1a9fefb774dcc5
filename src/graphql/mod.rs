//! The GraphQL schema: one query/mutation/subscription object per domain, merged.

pub mod booking;
pub mod event;
pub mod hold;
pub mod seat_changes;
pub mod types;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema};

use crate::auth::{Caller, User};
use crate::booking::BookingService;
use crate::error::AppError;

#[derive(MergedObject, Default)]
pub struct Query(event::EventQuery, hold::HoldQuery, booking::BookingQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(
    event::EventMutation,
    hold::HoldMutation,
    booking::BookingMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(seat_changes::SeatChangeSubscription);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Limits that keep hostile queries cheap.
pub const MAX_DEPTH: usize = 12;
pub const MAX_COMPLEXITY: usize = 5_000;

/// Builds the schema around the service.
pub fn build_schema(service: Option<BookingService>, introspection: bool) -> AppSchema {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(64)
    .limit_directives(20);
    if let Some(service) = service {
        builder = builder.data(service);
    }
    if !introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The GraphQL SDL (what `schema.graphql` holds).
pub fn sdl() -> String {
    build_schema(None, true).sdl()
}

pub(crate) fn service<'a>(ctx: &Context<'a>) -> &'a BookingService {
    ctx.data_unchecked::<BookingService>()
}

pub(crate) fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous)
}

pub(crate) fn user<'a>(ctx: &Context<'a>) -> Result<&'a User, AppError> {
    caller(ctx).user()
}
