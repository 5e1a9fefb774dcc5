//! The booking rules: events, seat maps, holds, confirmations, cancellations and expiry.
//! Resolvers call into [`BookingService`]; nothing else decides about seats.

pub mod bookings;
pub mod changes;
pub mod checkout;
pub mod db;
pub mod events;
pub mod gate;
pub mod holds;
pub mod idempotency;
pub mod model;
pub mod seat_map_cache;
pub mod seed;
pub mod sweeper;
mod views;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::AppError;
use crate::realtime::SeatChangeBus;
use db::Db;
use gate::SeatGate;

/// Limits and timings of the booking rules.
#[derive(Clone, Debug)]
pub struct BookingSettings {
    pub hold_ttl: Duration,
    pub max_seats_per_hold: usize,
    /// With payments on, holds with a price must go through checkout.
    pub payments_enabled: bool,
    /// Mutations in flight beyond this are refused at once with `RETRY_LATER`.
    pub max_inflight_mutations: usize,
    /// Serve seat maps from memory, kept current from the change stream.
    pub seat_map_cache: bool,
    /// How long seat-change log rows are kept for `afterSeq` replay.
    pub change_retention: Duration,
    /// Active holds one user may have per event.
    pub max_holds_per_user: usize,
    /// How far `startCheckout` extends a hold (once), so a buyer typing card details keeps it.
    pub checkout_grace: Duration,
    /// How long a checkout may wait before the worker asks Stripe about it itself.
    pub checkout_reconcile_after: Duration,
}

/// The service layer: every rule about seats lives behind this type.
#[derive(Clone)]
pub struct BookingService {
    pub(crate) db: Db,
    pub(crate) bus: Arc<dyn SeatChangeBus>,
    pub(crate) settings: BookingSettings,
    pub(crate) gate: SeatGate,
    /// `None` serves every seat map straight from the database (`SEATMAP_CACHE=off`).
    pub(crate) seat_maps: Option<seat_map_cache::SeatMapCache>,
    /// `None`: payments off.
    pub(crate) stripe: Option<crate::payment::StripeClient>,
    inflight: Arc<Semaphore>,
}

impl BookingService {
    pub fn new(
        db: Db,
        bus: Arc<dyn SeatChangeBus>,
        gate: SeatGate,
        settings: BookingSettings,
    ) -> Self {
        let inflight = Arc::new(Semaphore::new(settings.max_inflight_mutations));
        let seat_maps = settings
            .seat_map_cache
            .then(|| seat_map_cache::SeatMapCache::following(&bus));
        Self {
            db,
            bus,
            settings,
            gate,
            seat_maps,
            stripe: None,
            inflight,
        }
    }

    /// Turns payments on.
    pub fn with_stripe(mut self, stripe: crate::payment::StripeClient) -> Self {
        self.stripe = Some(stripe);
        self
    }

    /// Load shedding: a slot for one mutation, or `RETRY_LATER` at once when all are taken.
    pub(crate) fn admit_mutation(&self) -> Result<OwnedSemaphorePermit, AppError> {
        self.inflight.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("onsale_load_shed_total").increment(1);
            AppError::retry_later(200, "the server is at capacity; try again shortly")
        })
    }

    pub fn gate(&self) -> &SeatGate {
        &self.gate
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn bus(&self) -> &Arc<dyn SeatChangeBus> {
        &self.bus
    }

    pub fn settings(&self) -> &BookingSettings {
        &self.settings
    }
}
