//! Rate limits on mutations, per user and per client address, answering `RETRY_LATER` with
//! `retryAfterMs`.
//!
//! With Redis, a limit is counted once for all instances: a GCRA bucket per user or address
//! in Redis (`gcra.lua`, one script call per limit, on Redis's clock), so N instances allow
//! what one does. While Redis does not answer (within `RATE_LIMIT_REDIS_TIMEOUT_MS`), each
//! instance counts on its own (a warning is logged, at most every [`WARN_EVERY`]) and tries
//! Redis again after [`RETRY_REDIS_AFTER`]. Without Redis (the embedded default) the
//! instance counts alone.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{ServerError, ServerResult, Variables};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::extensions::ClientIp;
use crate::auth::Caller;

const GCRA_LUA: &str = include_str!("gcra.lua");
/// After Redis failed to answer, how long the instance counts alone before asking it again.
const RETRY_REDIS_AFTER: Duration = Duration::from_secs(2);
/// How often a Redis outage is logged at most.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// A burst may be this many times the rate.
const BURST_FACTOR: u32 = 3;

/// The limits to enforce. A rate of 0 turns that limit off.
#[derive(Clone)]
pub struct RateLimitSettings {
    /// Mutations per `period` per user.
    pub user_rate: u32,
    /// Mutations per `period` per client address.
    pub address_rate: u32,
    pub period: Duration,
    /// Where limits are counted for all instances (`None`: this instance alone).
    pub shared: Option<SharedStore>,
}

/// Redis, where every instance's requests are counted together.
#[derive(Clone)]
pub struct SharedStore {
    pub conn: crate::redis_client::RedisConn,
    /// The deployment's Redis namespace.
    pub namespace: String,
    /// How long one check may wait for Redis before the instance counts alone.
    pub timeout: Duration,
}

impl std::fmt::Debug for RateLimitSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitSettings")
            .field("user_rate", &self.user_rate)
            .field("address_rate", &self.address_rate)
            .field("period", &self.period)
            .field("shared", &self.shared.as_ref().map(|s| &s.namespace))
            .finish()
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            user_rate: 0,
            address_rate: 0,
            period: Duration::from_secs(1),
            shared: None,
        }
    }
}

impl RateLimitSettings {
    pub fn is_on(&self) -> bool {
        self.user_rate > 0 || self.address_rate > 0
    }
}

/// One limit: its GCRA parameters and the per-instance fallback counter.
struct Limit<K: std::hash::Hash + Eq + Clone> {
    /// Who is limited, as named in errors, metrics and Redis keys.
    who: &'static str,
    interval_ms: f64,
    burst: u32,
    local: DefaultKeyedRateLimiter<K>,
}

impl<K: std::hash::Hash + Eq + Clone> Limit<K> {
    fn new(who: &'static str, rate: u32, period: Duration) -> Option<Self> {
        let rate = NonZeroU32::new(rate)?;
        let burst = NonZeroU32::new(rate.get().saturating_mul(BURST_FACTOR)).unwrap_or(rate);
        let interval = (period / rate.get()).max(Duration::from_micros(1));
        let quota = Quota::with_period(interval)?.allow_burst(burst);
        Some(Self {
            who,
            interval_ms: interval.as_secs_f64() * 1_000.0,
            burst: burst.get(),
            local: RateLimiter::keyed(quota),
        })
    }

    /// `Err(ms to wait)` when this instance's own count is over the limit.
    fn check_local(&self, key: &K) -> Result<(), u64> {
        let now = DefaultClock::default().now();
        self.local.check_key(key).map_err(|not_until| {
            u64::try_from(not_until.wait_time_from(now).as_millis()).unwrap_or(u64::MAX)
        })
    }

    fn forget_idle(&self) {
        self.local.retain_recent();
        self.local.shrink_to_fit();
    }
}

struct Limits {
    per_user: Option<Limit<String>>,
    per_address: Option<Limit<IpAddr>>,
    shared: Option<Shared>,
}

struct Shared {
    store: SharedStore,
    script: redis::Script,
    /// Redis failed to answer: count locally until then.
    local_until: Mutex<Option<Instant>>,
    last_warning: Mutex<Option<Instant>>,
}

impl Shared {
    fn counting_locally(&self) -> bool {
        let until = *self.local_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|until| Instant::now() < until)
    }

    /// One GCRA step in Redis: `Some(Ok)` may go, `Some(Err(ms))` must wait, `None`: Redis
    /// did not answer.
    async fn check(
        &self,
        who: &str,
        key: &str,
        interval_ms: f64,
        burst: u32,
    ) -> Option<Result<(), u64>> {
        let bucket = format!("onsale:{}:rate:{who}:{key}", self.store.namespace);
        let mut conn = self.store.conn.clone();
        let mut call = self.script.key(bucket);
        call.arg(format!("{interval_ms:.3}")).arg(burst);
        let answer = tokio::time::timeout(
            self.store.timeout,
            call.invoke_async::<(i64, i64)>(&mut conn),
        )
        .await;
        match answer {
            Ok(Ok((1, _))) => {
                self.recovered();
                Some(Ok(()))
            }
            Ok(Ok((_, wait_ms))) => {
                self.recovered();
                Some(Err(u64::try_from(wait_ms).unwrap_or(0)))
            }
            Ok(Err(err)) => {
                self.unreachable(&err.to_string());
                None
            }
            Err(_) => {
                self.unreachable("no answer in time");
                None
            }
        }
    }

    fn recovered(&self) {
        let mut until = self.local_until.lock().unwrap_or_else(|e| e.into_inner());
        if until.take().is_some() {
            tracing::info!("rate limits are counted in Redis again, for all instances");
        }
    }

    fn unreachable(&self, cause: &str) {
        let now = Instant::now();
        *self.local_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(now + RETRY_REDIS_AFTER);
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *last = Some(now);
            tracing::warn!(
                %cause,
                "Redis does not answer: rate limits are counted per instance until it does"
            );
        }
    }
}

impl Limits {
    /// `Err(ms to wait)` when `key` is over `limit`: in Redis for all instances, or on this
    /// instance alone while Redis does not answer (or when there is none).
    async fn check<K>(&self, limit: &Limit<K>, key: &K, redis_key: &str) -> Result<(), u64>
    where
        K: std::hash::Hash + Eq + Clone,
    {
        if let Some(shared) = &self.shared
            && !shared.counting_locally()
            && let Some(answer) = shared
                .check(limit.who, redis_key, limit.interval_ms, limit.burst)
                .await
        {
            metrics::counter!("onsale_rate_limit_checks_total", "counted" => "shared").increment(1);
            return answer;
        }
        if self.shared.is_some() {
            metrics::counter!("onsale_rate_limit_checks_total", "counted" => "instance_fallback")
                .increment(1);
        }
        limit.check_local(key)
    }
}

/// The schema extension factory.
pub struct MutationRateLimit {
    limits: Arc<Limits>,
}

impl MutationRateLimit {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let limits = Arc::new(Limits {
            per_user: Limit::new("user", settings.user_rate, settings.period),
            per_address: Limit::new("address", settings.address_rate, settings.period),
            shared: settings.shared.clone().map(|store| Shared {
                store,
                script: redis::Script::new(GCRA_LUA),
                local_until: Mutex::new(None),
                last_warning: Mutex::new(None),
            }),
        });
        // Forget idle keys of the local counters now and then, so memory stays bounded.
        let weak = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(limits) = weak.upgrade() else { return };
                if let Some(l) = &limits.per_user {
                    l.forget_idle();
                }
                if let Some(l) = &limits.per_address {
                    l.forget_idle();
                }
            }
        });
        Self { limits }
    }
}

impl ExtensionFactory for MutationRateLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RateLimitExtension {
            limits: self.limits.clone(),
        })
    }
}

struct RateLimitExtension {
    limits: Arc<Limits>,
}

fn is_mutation(doc: &ExecutableDocument) -> bool {
    doc.operations
        .iter()
        .any(|(_, op)| op.node.ty == OperationType::Mutation)
}

fn too_many(wait_ms: u64, who: &str) -> ServerError {
    metrics::counter!("onsale_rate_limited_total", "by" => who.to_owned()).increment(1);
    let retry_after_ms = wait_ms.max(1);
    let mut err = ServerError::new(
        format!("too many requests from this {who}; try again in {retry_after_ms} ms"),
        None,
    );
    let mut ext = async_graphql::ErrorExtensionValues::default();
    ext.set("code", "RETRY_LATER");
    ext.set("retryAfterMs", retry_after_ms);
    err.extensions = Some(ext);
    err
}

#[async_trait::async_trait]
impl Extension for RateLimitExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        if !is_mutation(&doc) {
            return Ok(doc);
        }
        let limits = &self.limits;
        if let (Some(limit), Some(Caller::User(user))) =
            (&limits.per_user, ctx.data_opt::<Caller>())
            && let Err(wait) = limits.check(limit, &user.id, &user.id).await
        {
            return Err(too_many(wait, limit.who));
        }
        if let (Some(limit), Some(ClientIp(ip))) = (&limits.per_address, ctx.data_opt::<ClientIp>())
            && let Err(wait) = limits.check(limit, ip, &ip.to_string()).await
        {
            return Err(too_many(wait, limit.who));
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_local_bucket_lets_a_burst_of_three_times_the_rate_through() {
        let limit = Limit::<String>::new("user", 2, Duration::from_secs(60)).expect("a limit");
        assert_eq!(limit.burst, 6);
        assert!((limit.interval_ms - 30_000.0).abs() < 1e-6);
        let key = "alice".to_owned();
        let passed = (0..20).filter(|_| limit.check_local(&key).is_ok()).count();
        assert_eq!(passed, 6);
        let wait = limit.check_local(&key).expect_err("over the limit");
        assert!(wait > 20_000 && wait <= 30_000, "wait {wait} ms");
    }

    #[test]
    fn a_rate_of_zero_is_no_limit() {
        assert!(Limit::<String>::new("user", 0, Duration::from_secs(1)).is_none());
        assert!(!RateLimitSettings::default().is_on());
    }
}
