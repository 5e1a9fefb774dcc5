//! Redis connections: the one builder every part that talks to Redis uses (the seat gate and
//! the bus's publisher, the waiting room). A connection reconnects by itself and bounds how
//! long a call may wait, so a dead Redis fails fast instead of hanging requests.

use std::time::Duration;

use redis::RedisError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long connecting and each answer may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

/// Longest wait between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// A reconnecting connection to `url`.
pub async fn connect(url: &str, timeouts: Timeouts) -> Result<ConnectionManager, RedisError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response))
        .set_number_of_retries(1)
        .set_max_delay(MAX_RECONNECT_DELAY);
    ConnectionManager::new_with_config(client, config).await
}
