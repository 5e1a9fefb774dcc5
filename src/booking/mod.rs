//! The booking rules: events, seat maps, holds, confirmations, cancellations and expiry.
//! Resolvers call into [`BookingService`]; nothing else decides about seats.

pub mod bookings;
pub mod changes;
pub mod db;
pub mod events;
pub mod holds;
pub mod idempotency;
pub mod model;
pub mod seed;
pub mod sweeper;
mod views;

use std::sync::Arc;
use std::time::Duration;

use crate::realtime::SeatChangeBus;
use db::Db;

/// Limits and timings of the booking rules.
#[derive(Clone, Debug)]
pub struct BookingSettings {
    pub hold_ttl: Duration,
    pub max_seats_per_hold: usize,
    /// With payments on, holds with a price must go through checkout.
    pub payments_enabled: bool,
}

/// The service layer: every rule about seats lives behind this type.
#[derive(Clone)]
pub struct BookingService {
    pub(crate) db: Db,
    pub(crate) bus: Arc<dyn SeatChangeBus>,
    pub(crate) settings: BookingSettings,
}

impl BookingService {
    pub fn new(db: Db, bus: Arc<dyn SeatChangeBus>, settings: BookingSettings) -> Self {
        Self { db, bus, settings }
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
