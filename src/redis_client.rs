//! Redis connections: the one builder every part that talks to Redis uses (the seat gate and
//! the bus's publisher, the waiting room, the rate limits). A connection reconnects by itself
//! and bounds how long a call may wait, so a dead Redis fails fast instead of hanging
//! requests.
//!
//! Redis is one node (`REDIS_URL`) or a Redis Cluster (`REDIS_CLUSTER_NODES`). On a cluster
//! every command and script is routed to the master of its keys' slot (every multi-key
//! script keeps its keys in one slot by hash tags), and the client follows failovers and
//! slot moves. Pub/sub uses classic `PUBLISH`, which a cluster delivers to subscribers on
//! every node, so a subscriber listens on any one node and moves to the next if it fails.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

/// Where Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis (`REDIS_URL`).
    Node(String),
    /// A Redis Cluster, by some of its nodes (`REDIS_CLUSTER_NODES`).
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// The nodes pub/sub may listen on, to be tried in turn.
    pub fn pubsub_clients(&self) -> Result<Vec<redis::Client>, RedisError> {
        let urls = match self {
            RedisTarget::Node(url) => std::slice::from_ref(url),
            RedisTarget::Cluster(nodes) => nodes.as_slice(),
        };
        urls.iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect()
    }

    /// The setting it came from, for messages.
    pub fn setting(&self) -> &'static str {
        match self {
            RedisTarget::Node(_) => "REDIS_URL",
            RedisTarget::Cluster(_) => "REDIS_CLUSTER_NODES",
        }
    }
}

/// How long connecting and each answer may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

/// Longest wait between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// How often a cluster command is retried (on `MOVED`, `TRYAGAIN`, a failover under way).
const CLUSTER_RETRIES: u32 = 4;

/// A reconnecting connection to one Redis or to a cluster; cheap to clone (clones share
/// the connection).
#[derive(Clone)]
pub enum RedisConn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Node(conn) => conn.req_packed_command(cmd),
            RedisConn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Node(conn) => conn.get_db(),
            RedisConn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// A reconnecting connection to `target`.
pub async fn connect(target: &RedisTarget, timeouts: Timeouts) -> Result<RedisConn, RedisError> {
    match target {
        RedisTarget::Node(url) => {
            let client = redis::Client::open(url.as_str())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeouts.connect))
                .set_response_timeout(Some(timeouts.response))
                .set_number_of_retries(1)
                .set_max_delay(MAX_RECONNECT_DELAY);
            Ok(RedisConn::Node(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
        RedisTarget::Cluster(nodes) => {
            let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                .connection_timeout(timeouts.connect)
                .response_timeout(timeouts.response)
                .retries(CLUSTER_RETRIES)
                .max_retry_wait(MAX_RECONNECT_DELAY.as_millis() as u64)
                .build()?;
            Ok(RedisConn::Cluster(client.get_async_connection().await?))
        }
    }
}
