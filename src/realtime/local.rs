//! In-process fan-out: one broadcast channel per event.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{AreaChange, SUBSCRIBER_BUFFER, SeatChange, SeatChangeBus};

/// How many changes the all-events channel buffers (it feeds process-wide caches).
const ALL_EVENTS_BUFFER: usize = 16 * 1024;

/// Delivers changes to subscribers of this process only.
pub struct LocalBus {
    channels: Mutex<HashMap<i64, broadcast::Sender<SeatChange>>>,
    all: broadcast::Sender<SeatChange>,
    /// Area counts, one channel per event, apart from seat changes.
    areas: Mutex<HashMap<i64, broadcast::Sender<AreaChange>>>,
    all_areas: broadcast::Sender<AreaChange>,
}

impl Default for LocalBus {
    fn default() -> Self {
        Self {
            channels: Mutex::default(),
            all: broadcast::channel(ALL_EVENTS_BUFFER).0,
            areas: Mutex::default(),
            all_areas: broadcast::channel(ALL_EVENTS_BUFFER).0,
        }
    }
}

impl LocalBus {
    /// Sends to this process's subscribers (used by the Redis bus for what it receives too).
    pub fn deliver(&self, changes: Vec<SeatChange>) {
        let Some(first) = changes.first() else { return };
        let sender = {
            let mut channels = self
                .channels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            channels.retain(|_, tx| tx.receiver_count() > 0);
            channels.get(&first.event_id).cloned()
        };
        for change in changes {
            // An error only means nobody listens right now.
            if let Some(tx) = &sender {
                let _ = tx.send(change.clone());
            }
            let _ = self.all.send(change);
        }
    }
}

impl LocalBus {
    /// Sends area counts to this process's subscribers of their event.
    pub fn deliver_areas(&self, changes: Vec<AreaChange>) {
        let Some(first) = changes.first() else { return };
        let sender = {
            let mut areas = self
                .areas
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            areas.retain(|_, tx| tx.receiver_count() > 0);
            areas.get(&first.event_id).cloned()
        };
        for change in changes {
            // An error only means nobody listens right now.
            if let Some(tx) = &sender {
                let _ = tx.send(change.clone());
            }
            let _ = self.all_areas.send(change);
        }
    }
}

#[async_trait]
impl SeatChangeBus for LocalBus {
    async fn publish(&self, changes: Vec<SeatChange>) {
        self.deliver(changes);
    }

    fn subscribe(&self, event_id: i64) -> broadcast::Receiver<SeatChange> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        channels
            .entry(event_id)
            .or_insert_with(|| broadcast::channel(SUBSCRIBER_BUFFER).0)
            .subscribe()
    }

    fn subscribe_all(&self) -> broadcast::Receiver<SeatChange> {
        self.all.subscribe()
    }

    fn healthy(&self) -> bool {
        true
    }

    async fn publish_areas(&self, changes: Vec<AreaChange>) {
        self.deliver_areas(changes);
    }

    fn subscribe_areas(&self, event_id: i64) -> broadcast::Receiver<AreaChange> {
        let mut areas = self
            .areas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        areas
            .entry(event_id)
            .or_insert_with(|| broadcast::channel(SUBSCRIBER_BUFFER).0)
            .subscribe()
    }

    fn subscribe_all_areas(&self) -> broadcast::Receiver<AreaChange> {
        self.all_areas.subscribe()
    }
}
