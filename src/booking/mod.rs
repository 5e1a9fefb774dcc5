//! The booking rules: events, seat maps, holds, confirmations, cancellations and expiry.
//! Resolvers call into [`BookingService`]; nothing else decides about seats. Paying for a
//! hold is the checkout's concern (`crate::checkout`), on top of the steps here.

pub mod admission;
pub mod areas;
mod best_available;
pub mod blocking;
pub mod bookings;
pub mod event_input;
pub mod events;
pub mod gate;
pub mod holds;
pub mod idempotency;
mod rules;
pub mod seat_map_cache;
mod seats;
pub mod seed;
pub mod sweeper;
pub mod tickets;
pub mod views;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::db::Db;
use crate::domain::limits::{
    SHED_RETRY_AFTER_MS, TICKET_FAILURE_WINDOW, TICKET_FAILURES_PER_WINDOW,
};
use crate::domain::ticket::FailureWindow;
use crate::error::AppError;
use crate::realtime::SeatChangeBus;
use admission::AdmissionPolicy;
use gate::SeatGate;
pub use rules::ensure_active;

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
}

/// The service layer: every rule about seats lives behind this type. Cheap to clone.
#[derive(Clone)]
pub struct BookingService {
    db: Db,
    bus: Arc<dyn SeatChangeBus>,
    settings: BookingSettings,
    gate: SeatGate,
    /// `None` serves every seat map straight from the database (`SEATMAP_CACHE=off`).
    seat_maps: Option<seat_map_cache::SeatMapCache>,
    inflight: Arc<Semaphore>,
    /// Who admits holds while an event's waiting room is on; set once at start-up (the
    /// waiting room is built on top of this service).
    admissions: Arc<OnceLock<Arc<dyn AdmissionPolicy>>>,
    /// Failed ticket look-ups per admin, so that codes cannot be guessed at speed. Per
    /// process: with several instances a guesser gets this budget on each.
    ticket_failures: Arc<Mutex<FailureWindow>>,
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
            inflight,
            admissions: Arc::default(),
            ticket_failures: Arc::new(Mutex::new(FailureWindow::new(
                TICKET_FAILURES_PER_WINDOW,
                TICKET_FAILURE_WINDOW,
            ))),
        }
    }

    /// Puts `policy` in front of every hold (the waiting room). Set once; later calls are
    /// ignored.
    pub fn set_admission_policy(&self, policy: Arc<dyn AdmissionPolicy>) {
        let _ = self.admissions.set(policy);
    }

    /// Load shedding: a slot for one mutation, or `RETRY_LATER` at once when all are taken.
    pub fn admit_mutation(&self) -> Result<OwnedSemaphorePermit, AppError> {
        self.inflight.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("onsale_load_shed_total").increment(1);
            AppError::retry_later(
                SHED_RETRY_AFTER_MS,
                "the server is at capacity; try again shortly",
            )
        })
    }

    /// The failed ticket look-ups window (see [`crate::backoffice::door`]).
    pub(crate) fn ticket_failures(&self) -> std::sync::MutexGuard<'_, FailureWindow> {
        // A panic elsewhere cannot leave the counts half-updated in a harmful way.
        self.ticket_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
