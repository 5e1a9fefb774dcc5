//! Redis pub/sub fan-out: every instance publishes its committed changes on the event's
//! channel and delivers what it receives to its own subscribers. Local subscribers are served
//! at once (no round trip through Redis); the copy that comes back is dropped by `seq`.
//! Publishing never blocks a request on a dead Redis, and the subscriber side reconnects
//! by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use futures::StreamExt;
use redis::AsyncCommands;
use tokio::sync::broadcast;

use super::local::LocalBus;
use super::{AreaChange, SeatChange, SeatChangeBus};
use crate::redis_client::{self, RedisConn, RedisTarget, Timeouts};

/// Longest a publish may take before it is given up (the log still has the change).
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(250);

/// How long the gate's and the publisher's Redis calls may take: never long.
const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_millis(500),
    response: Duration::from_millis(500),
};
/// How long start-up waits for Redis.
const STARTUP_WAIT: Duration = Duration::from_secs(5);

/// The connection the seat gate and the publisher share.
pub async fn connect(target: &RedisTarget) -> anyhow::Result<RedisConn> {
    let setting = target.setting();
    tokio::time::timeout(STARTUP_WAIT, redis_client::connect(target, TIMEOUTS))
        .await
        .with_context(|| format!("{setting}: Redis did not answer within 5 s"))?
        .with_context(|| format!("{setting}: cannot connect to Redis"))
}

pub struct RedisBus {
    /// `onsale:<namespace>:seat-changes:`; the event id follows.
    channel_prefix: String,
    /// `onsale:<namespace>:area-changes:`; the event id follows.
    area_prefix: String,
    local: Arc<LocalBus>,
    publisher: RedisConn,
    connected: Arc<AtomicBool>,
}

impl RedisBus {
    /// Starts the subscriber loop and returns the bus.
    pub async fn start(
        target: &RedisTarget,
        namespace: &str,
        publisher: Option<RedisConn>,
    ) -> anyhow::Result<Self> {
        let publisher = match publisher {
            Some(conn) => conn,
            None => connect(target).await?,
        };
        let clients = target
            .pubsub_clients()
            .with_context(|| format!("{}: invalid URL", target.setting()))?;
        let local = Arc::new(LocalBus::default());
        let connected = Arc::new(AtomicBool::new(false));
        let channel_prefix = format!("onsale:{namespace}:seat-changes:");
        let area_prefix = format!("onsale:{namespace}:area-changes:");
        tokio::spawn(subscribe_loop(
            clients,
            [format!("{channel_prefix}*"), format!("{area_prefix}*")],
            area_prefix.clone(),
            local.clone(),
            connected.clone(),
        ));
        Ok(Self {
            channel_prefix,
            area_prefix,
            local,
            publisher,
            connected,
        })
    }
}

/// Listens on the first node of `clients`, moving to the next whenever a subscription cannot
/// be made or is lost (on a cluster, any node delivers every message).
async fn subscribe_loop(
    clients: Vec<redis::Client>,
    patterns: [String; 2],
    area_prefix: String,
    local: Arc<LocalBus>,
    connected: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(100);
    for client in clients.iter().cycle() {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.psubscribe(&patterns).await {
                Ok(()) => {
                    connected.store(true, Ordering::Relaxed);
                    metrics::gauge!("onsale_redis_pubsub_connected").set(1.0);
                    tracing::info!("subscribed to seat changes on Redis");
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(payload) = msg.get_payload::<Vec<u8>>() else {
                            continue;
                        };
                        if msg.get_channel_name().starts_with(&area_prefix) {
                            deliver_areas(&local, &payload);
                            continue;
                        }
                        match serde_json::from_slice::<Vec<SeatChange>>(&payload) {
                            Ok(changes) => local.deliver(changes),
                            Err(err) => {
                                tracing::warn!(error = %err, "ignored a malformed seat-change message")
                            }
                        }
                    }
                    connected.store(false, Ordering::Relaxed);
                    metrics::gauge!("onsale_redis_pubsub_connected").set(0.0);
                    tracing::warn!("lost the Redis subscription; reconnecting");
                }
                Err(err) => tracing::warn!(error = %err, "cannot subscribe on Redis; retrying"),
            },
            Err(err) => tracing::debug!(error = %err, "cannot reach Redis for pub/sub; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Area counts another instance (or this one) published; this instance's own come back
/// too, and are harmless: subscribers apply only a higher version.
fn deliver_areas(local: &LocalBus, payload: &[u8]) {
    match serde_json::from_slice::<Vec<AreaChange>>(payload) {
        Ok(changes) => local.deliver_areas(changes),
        Err(err) => tracing::warn!(error = %err, "ignored a malformed area-change message"),
    }
}

/// Publishes `payload` on `channel` off the request path: a slow or dead Redis never delays
/// the answer.
fn publish_detached(conn: &RedisConn, channel: String, payload: Vec<u8>) {
    let mut conn = conn.clone();
    tokio::spawn(async move {
        let sent =
            tokio::time::timeout(PUBLISH_TIMEOUT, conn.publish::<_, _, i64>(channel, payload))
                .await;
        if !matches!(sent, Ok(Ok(_))) {
            metrics::counter!("onsale_redis_publish_failures_total").increment(1);
            tracing::debug!("could not publish changes to Redis");
        }
    });
}

#[async_trait]
impl SeatChangeBus for RedisBus {
    async fn publish(&self, changes: Vec<SeatChange>) {
        let Some(first) = changes.first() else { return };
        let channel = format!("{}{}", self.channel_prefix, first.event_id);
        let payload = match serde_json::to_vec(&changes) {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode seat changes");
                return;
            }
        };
        self.local.deliver(changes);
        publish_detached(&self.publisher, channel, payload);
    }

    async fn publish_areas(&self, changes: Vec<AreaChange>) {
        let Some(first) = changes.first() else { return };
        let channel = format!("{}{}", self.area_prefix, first.event_id);
        let payload = match serde_json::to_vec(&changes) {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode area changes");
                return;
            }
        };
        self.local.deliver_areas(changes);
        publish_detached(&self.publisher, channel, payload);
    }

    fn subscribe_areas(&self, event_id: i64) -> broadcast::Receiver<AreaChange> {
        self.local.subscribe_areas(event_id)
    }

    fn subscribe_all_areas(&self) -> broadcast::Receiver<AreaChange> {
        self.local.subscribe_all_areas()
    }

    fn subscribe(&self, event_id: i64) -> broadcast::Receiver<SeatChange> {
        self.local.subscribe(event_id)
    }

    fn subscribe_all(&self) -> broadcast::Receiver<SeatChange> {
        self.local.subscribe_all()
    }

    fn healthy(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}
