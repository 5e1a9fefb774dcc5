//! The seat-change bus: every committed seat change is published here after its transaction
//! commits, and subscribers receive the changes of one event. Two transports sit behind one
//! interface: an in-process broadcast (one instance) and Redis pub/sub (any number).

pub mod feed;
pub mod local;
pub mod redis_bus;

use async_trait::async_trait;
use tokio::sync::broadcast;

/// One committed change of one seat.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeatChange {
    pub event_id: i64,
    pub seat_id: i64,
    pub status: crate::booking::model::SeatStatus,
    pub hold_expires_at_ms: Option<i64>,
    pub seq: i64,
}

/// How many changes one subscriber may fall behind before it is dropped.
pub const SUBSCRIBER_BUFFER: usize = 1024;

#[async_trait]
pub trait SeatChangeBus: Send + Sync {
    /// Publishes committed changes (all of one event, in `seq` order). Never blocks long and
    /// never fails the caller: the change log in the database is the source of truth.
    async fn publish(&self, changes: Vec<SeatChange>);

    /// Live changes of one event, from now on.
    fn subscribe(&self, event_id: i64) -> broadcast::Receiver<SeatChange>;

    /// Live changes of every event (for process-wide caches such as the seat gate's).
    fn subscribe_all(&self) -> broadcast::Receiver<SeatChange>;

    /// Whether the transport is currently connected (always true in-process).
    fn healthy(&self) -> bool;
}
