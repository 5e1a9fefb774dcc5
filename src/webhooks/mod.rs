//! Signed outbound webhooks.
//!
//! 1. A change that integrators care about (a booking confirmed, cancelled or refunded, an
//!    event's status changed, a ticket checked in) calls [`record`] inside its own
//!    transaction: the event and one PENDING delivery per subscribed, enabled endpoint are
//!    committed with the change or not at all (the durable outbox).
//! 2. The delivery worker runs on every instance. It leases due deliveries (`FOR UPDATE SKIP
//!    LOCKED` on PostgreSQL, the single writer on SQLite), so one delivery — one event for one
//!    endpoint — has at most one attempt in flight; a lease left by a killed instance runs out
//!    and another instance takes the delivery over.
//! 3. Each attempt POSTs the stored body, signed (`signature`), with a timeout and without
//!    following redirects, to an address checked against server-side request forgery
//!    (`address`). Anything but a 2xx is retried with exponential backoff and jitter for at
//!    least [`RETRY_FOR`], then the delivery is FAILED; after a 2xx it is DELIVERED and never
//!    sent again.

pub mod address;
mod deliveries;
mod endpoints;
mod event;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use crate::config::WebhookConfig;
use crate::db::Db;
pub use deliveries::DeliveryView;
pub use endpoints::EndpointView;
pub use event::{AreaLine, BookingData, EventType, WebhookEvent, record};

/// How long a failing delivery is retried before it is FAILED (at least this long).
pub const RETRY_FOR: Duration = Duration::from_secs(24 * 3600);

/// Webhook endpoints, deliveries and the worker that sends them; cheap to clone.
#[derive(Clone)]
pub struct WebhookService {
    db: Db,
    http: reqwest::Client,
    settings: WebhookConfig,
    /// This instance, as it signs its leases.
    instance: Arc<str>,
}

impl WebhookService {
    /// The service and its delivery client: no redirects, no proxies, a timeout per attempt,
    /// and (unless private addresses are allowed) a resolver that refuses non-public ones.
    pub fn new(db: Db, settings: WebhookConfig) -> Result<Self, reqwest::Error> {
        crate::payment::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .pool_max_idle_per_host(4)
            .user_agent(concat!("onsale-webhooks/", env!("CARGO_PKG_VERSION")));
        if !settings.allow_private {
            builder = builder.dns_resolver(Arc::new(address::PublicOnly));
        }
        Ok(Self {
            db,
            http: builder.build()?,
            settings,
            instance: uuid::Uuid::new_v4().to_string().into(),
        })
    }
}
