//! Notices between instances over Redis pub/sub: new work for the request workers and
//! answered requests for their followers. Notices only make things prompt; everyone who
//! waits on one also rechecks on a timer, so a lost notice delays, never loses, anything.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, watch};

use super::store::NOTIFY_CHANNEL;
use crate::redis_client::RedisTarget;

/// Relays the notice channel into `notices` until `shutdown`, reconnecting as needed.
pub async fn listen(
    redis: RedisTarget,
    notices: broadcast::Sender<Arc<str>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // On a cluster any node delivers the channel: listen on one, move on if it fails.
    let clients = match redis.pubsub_clients() {
        Ok(clients) if !clients.is_empty() => clients,
        Ok(_) => return,
        Err(err) => {
            tracing::warn!(error = %err, "waiting room: invalid Redis URL for notices");
            return;
        }
    };
    let mut backoff = Duration::from_millis(100);
    for client in clients.iter().cycle() {
        if *shutdown.borrow() {
            return;
        }
        let connected =
            tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await;
        match connected {
            Ok(Ok(mut pubsub)) => match pubsub.subscribe(NOTIFY_CHANNEL).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.on_message();
                    loop {
                        tokio::select! {
                            msg = messages.next() => match msg {
                                Some(msg) => {
                                    if let Ok(text) = msg.get_payload::<String>() {
                                        let _ = notices.send(Arc::from(text));
                                    }
                                }
                                None => break,
                            },
                            changed = shutdown.changed() => {
                                if changed.is_err() || *shutdown.borrow() {
                                    return;
                                }
                            }
                        }
                    }
                    tracing::debug!("waiting room: lost the notice subscription; reconnecting");
                }
                Err(err) => {
                    tracing::debug!(error = %err, "waiting room: cannot subscribe to notices")
                }
            },
            _ => tracing::debug!("waiting room: cannot reach Redis for notices; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            changed = shutdown.changed() => if changed.is_err() { return },
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
