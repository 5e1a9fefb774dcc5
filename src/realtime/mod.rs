//! Live seat changes. Every change is written to the change log (`log`) in its own
//! transaction and published on the bus after that transaction commits; subscribers receive
//! the changes of one event. Two transports sit behind one interface: an in-process broadcast
//! (one instance) and Redis pub/sub (any number). A subscriber's ordered, gap-free stream is a
//! [`SeatChangeFeed`].

pub mod feed;
pub mod local;
pub mod log;
pub mod redis_bus;
pub mod sequencer;

use async_trait::async_trait;
use tokio::sync::broadcast;

pub use crate::domain::area::AreaChange;
pub use crate::domain::seat_change::SeatChange;
pub use feed::SeatChangeFeed;

/// What one committed transaction changed, published after its commit: seat changes (with
/// their `seq`) and area counts (with their `version`), on separate channels. On PostgreSQL a
/// transaction's seat changes get their `seq` only after its commit (`sequencer`): then
/// `unnumbered` names their event, and publishing numbers them first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub seats: Vec<SeatChange>,
    pub areas: Vec<AreaChange>,
    /// The event whose changes from this transaction still wait for their `seq`.
    pub unnumbered: Option<i64>,
}

impl Published {
    pub fn is_empty(&self) -> bool {
        self.seats.is_empty() && self.areas.is_empty() && self.unnumbered.is_none()
    }

    /// Adds what another step of the same transaction changed.
    pub fn and(mut self, other: Published) -> Self {
        self.seats.extend(other.seats);
        self.areas.extend(other.areas);
        self.unnumbered = self.unnumbered.or(other.unnumbered);
        self
    }

    /// The same, with the area counts the transaction changed.
    pub fn with_areas(mut self, areas: Vec<AreaChange>) -> Self {
        self.areas.extend(areas);
        self
    }
}

impl From<Vec<SeatChange>> for Published {
    fn from(seats: Vec<SeatChange>) -> Self {
        Self {
            seats,
            ..Self::default()
        }
    }
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

    /// Publishes committed area counts (all of one event). No replay: subscribers load the
    /// seat map's areas first and apply only higher versions.
    async fn publish_areas(&self, changes: Vec<AreaChange>);

    /// Live area counts of one event, from now on.
    fn subscribe_areas(&self, event_id: i64) -> broadcast::Receiver<AreaChange>;

    /// Live area counts of every event (for the seat gate's sold-out areas).
    fn subscribe_all_areas(&self) -> broadcast::Receiver<AreaChange>;

    /// Publishes everything one transaction changed. Changes still waiting for their `seq`
    /// are numbered first by the bus services publish on ([`sequencer::SequencedBus`]); a
    /// transport on its own publishes only what is numbered.
    async fn publish_all(&self, published: Published) {
        self.publish(published.seats).await;
        self.publish_areas(published.areas).await;
    }
}
