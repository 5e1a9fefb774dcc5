//! The GraphQL schema: one query/mutation/subscription object per domain, merged.

pub mod areas;
pub mod backoffice;
pub mod booking;
pub mod cache_hint;
pub mod checkout;
pub mod door;
pub mod errors;
pub mod event;
pub mod extensions;
pub mod guard;
pub mod hold;
pub mod limits;
pub mod queue;
pub mod rate_limit;
pub mod seat_changes;
pub mod types;
pub mod webhooks;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema};

use crate::auth::{Caller, User};
use crate::booking::BookingService;
use crate::checkout::CheckoutService;
use crate::error::AppError;
use crate::realtime::SeatChangeFeed;
use crate::waiting_room::WaitingRoomService;
use crate::webhooks::WebhookService;

#[derive(MergedObject, Default)]
pub struct Query(
    event::EventQuery,
    hold::HoldQuery,
    booking::BookingQuery,
    queue::QueueQuery,
    backoffice::BackofficeQuery,
    door::DoorQuery,
    webhooks::WebhookQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    event::EventMutation,
    hold::HoldMutation,
    checkout::CheckoutMutation,
    booking::BookingMutation,
    queue::QueueMutation,
    door::DoorMutation,
    webhooks::WebhookMutation,
    areas::AreaMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(
    seat_changes::SeatChangeSubscription,
    queue::QueueSubscription,
    areas::AreaSubscription,
);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Limits that keep hostile queries cheap.
pub const MAX_DEPTH: usize = 12;
pub const MAX_COMPLEXITY: usize = 5_000;
/// What one seat map costs against [`MAX_COMPLEXITY`]: it may hold tens of thousands of
/// seats, so only a few fit in one request.
pub const SEAT_MAP_COMPLEXITY: usize = 1_000;
/// Most operations in one batched request.
pub const MAX_BATCH: usize = 10;

/// Schema-wide settings.
#[derive(Clone, Debug)]
pub struct SchemaSettings {
    pub introspection: bool,
    /// Mutation rate limits per user and per client address.
    pub rate_limits: rate_limit::RateLimitSettings,
}

impl Default for SchemaSettings {
    fn default() -> Self {
        Self {
            introspection: true,
            rate_limits: rate_limit::RateLimitSettings::default(),
        }
    }
}

/// The services resolvers call, handed to the schema once.
#[derive(Clone)]
pub struct Services {
    pub booking: BookingService,
    pub checkout: CheckoutService,
    pub feed: SeatChangeFeed,
    pub waiting_room: WaitingRoomService,
    pub webhooks: WebhookService,
}

/// Builds the schema around the services (`None`: a schema for printing only).
pub fn build_schema(services: Option<Services>, settings: &SchemaSettings) -> AppSchema {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(64)
    .limit_directives(20)
    .extension(extensions::ErrorCodes)
    .extension(extensions::Metrics);
    if settings.rate_limits.is_on() {
        builder = builder.extension(rate_limit::MutationRateLimit::new(&settings.rate_limits));
    }
    if let Some(services) = services {
        builder = builder
            .data(services.booking)
            .data(services.checkout)
            .data(services.feed)
            .data(services.waiting_room)
            .data(services.webhooks);
    }
    if !settings.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The GraphQL SDL (what `schema.graphql` holds).
pub fn sdl() -> String {
    build_schema(None, &SchemaSettings::default()).sdl()
}

pub(crate) fn booking<'a>(ctx: &Context<'a>) -> &'a BookingService {
    ctx.data_unchecked::<BookingService>()
}

pub(crate) fn checkout<'a>(ctx: &Context<'a>) -> &'a CheckoutService {
    ctx.data_unchecked::<CheckoutService>()
}

pub(crate) fn feed<'a>(ctx: &Context<'a>) -> &'a SeatChangeFeed {
    ctx.data_unchecked::<SeatChangeFeed>()
}

pub(crate) fn waiting_room<'a>(ctx: &Context<'a>) -> &'a WaitingRoomService {
    ctx.data_unchecked::<WaitingRoomService>()
}

pub(crate) fn webhooks<'a>(ctx: &Context<'a>) -> &'a WebhookService {
    ctx.data_unchecked::<WebhookService>()
}

pub(crate) fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous)
}

pub(crate) fn user<'a>(ctx: &Context<'a>) -> Result<&'a User, AppError> {
    caller(ctx).user()
}
