//! Configuration from environment variables only (a `.env` file is read first if present).
//! Invalid configuration stops the process with one line naming the variable and the problem.

use std::net::SocketAddr;
use std::time::Duration;

use crate::redis_client::RedisTarget;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A configuration variable that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

/// Stripe settings; present only when `STRIPE_SECRET_KEY` is set (payments on).
#[derive(Clone, Debug)]
pub struct StripeConfig {
    pub secret_key: String,
    pub api_base: String,
    pub webhook_secret: Option<String>,
    pub currency: String,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    /// Redis (`REDIS_URL`) or a Redis Cluster (`REDIS_CLUSTER_NODES`); none: in-process.
    pub redis: Option<RedisTarget>,
    pub bind_addr: SocketAddr,
    pub jwt_secret: String,
    /// True when `JWT_SECRET` was unset and a random secret was generated (dev mode).
    pub jwt_secret_generated: bool,
    pub jwt_leeway_secs: u64,
    pub hold_ttl: Duration,
    pub seed_demo: bool,
    pub stripe: Option<StripeConfig>,
    pub db_pool_max: Option<u32>,
    /// Write transactions in flight at once per instance on PostgreSQL (SQLite: always 1).
    pub db_write_concurrency: usize,
    pub log_format: LogFormat,
    /// Longest a transaction waits for a seat row lock before the request is retried.
    pub lock_timeout: Duration,
    /// Most seats one hold may contain.
    pub max_seats_per_hold: usize,
    /// How often the sweeper returns expired holds' seats.
    pub sweep_interval: Duration,
    /// Whether GraphiQL (`GET /`) and introspection are served.
    pub graphiql: bool,
    /// Whether `POST /dev/token` signs in anyone by name (`DEV_SIGNIN`; on by default only
    /// in dev mode, when `JWT_SECRET` is unset).
    pub dev_signin: bool,
    /// The seat gate in front of the database (`SEAT_GATE=off` for the plain database path).
    pub seat_gate: bool,
    /// Mutations in flight beyond this get `RETRY_LATER` at once.
    pub max_inflight_mutations: usize,
    /// Serve seat maps from memory (`SEATMAP_CACHE=off` reads the database every time).
    pub seat_map_cache: bool,
    /// How long the seat-change log keeps rows for `afterSeq` replay.
    pub change_retention: Duration,
    /// Mutations per second per user (0: off); bursts of three times as many are allowed.
    pub rate_limit_user_per_sec: u32,
    /// Mutations per second per client address (0: off).
    pub rate_limit_ip_per_sec: u32,
    /// What the two rates count over (1 s unless set; tests stretch it so refills do not
    /// blur a count).
    pub rate_limit_period: Duration,
    /// How long a rate-limit check waits for Redis before the instance counts alone.
    pub rate_limit_redis_timeout: Duration,
    /// Trust `X-Forwarded-For` for the client address (only behind a proxy you run).
    pub trust_forwarded_for: bool,
    /// Active holds one user may have per event.
    pub max_holds_per_user: usize,
    /// Origins allowed to call the API from a browser (`*` for any); empty: same origin only.
    pub cors_allowed_origins: Vec<String>,
    /// Expected `iss` and `aud` claims, if set.
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// Where the role of a token from the identity provider lives (`JWT_ROLE_CLAIM`, a dotted
    /// path such as `realm_access.roles`; default `role`).
    pub jwt_role_claim: String,
    /// Tokens signed by an identity provider's keys (`JWT_JWKS_URL`, or OIDC discovery).
    pub jwks: Option<JwksConfig>,
    /// How far `startCheckout` extends a hold, once.
    pub checkout_grace: Duration,
    /// How long a checkout may wait before the worker asks Stripe about it itself.
    pub checkout_reconcile_after: Duration,
    /// How often the checkout worker runs.
    pub checkout_worker_interval: Duration,
    /// Longest a GraphQL request may run before it is answered `RETRY_LATER`.
    pub request_timeout: Duration,
    /// How long slow or silent clients may keep a connection.
    pub connections: ConnectionLimits,
    /// Batch the writes of one event into shared transactions (`GROUP_COMMIT`, off by default).
    pub group_commit: bool,
    /// Outbound webhooks: addresses, timeouts and retries.
    pub webhooks: WebhookConfig,
    /// How long a queue worker stalls between taking a request and applying it
    /// (`QUEUE_WORKER_PAUSE_MS`; tests of fencing only, 0 otherwise).
    pub queue_worker_pause: Duration,
}

/// Where the identity provider's public keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// `JWT_JWKS_URL`: the key set itself.
    Url(String),
    /// OIDC discovery: `{issuer}/.well-known/openid-configuration` names the `jwks_uri`.
    Discovery(String),
}

/// Tokens from an identity provider: RS256, ES256 or EdDSA, with keys from its JWKS.
#[derive(Clone, Debug)]
pub struct JwksConfig {
    pub source: JwksSource,
    /// An unknown `kid` fetches the keys again at most this often (`JWT_JWKS_MIN_REFRESH_MS`).
    pub min_refresh: Duration,
    /// The keys are fetched again this often once they have been used, so that a removed key
    /// stops working (`JWT_JWKS_REFRESH_SECS`).
    pub refresh_every: Duration,
}

impl JwksConfig {
    /// JWKS mode: `JWT_JWKS_URL`, or `JWT_ISSUER` as an http(s) URL with `JWT_AUDIENCE` and
    /// no `JWT_JWKS_URL` (discovery). `iss` and `aud` are required in this mode.
    fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Option<Self>, ConfigError> {
        let is_url = |v: &str| v.starts_with("https://") || v.starts_with("http://");
        let source = match (lookup("JWT_JWKS_URL"), issuer, audience) {
            (Some(url), _, _) if !is_url(&url) => {
                return Err(ConfigError {
                    var: "JWT_JWKS_URL",
                    problem: "must start with https:// or http://".into(),
                });
            }
            (Some(_), None, _) => {
                return Err(ConfigError {
                    var: "JWT_ISSUER",
                    problem: "is required with JWT_JWKS_URL".into(),
                });
            }
            (Some(_), _, None) => {
                return Err(ConfigError {
                    var: "JWT_AUDIENCE",
                    problem: "is required with JWT_JWKS_URL".into(),
                });
            }
            (Some(url), Some(_), Some(_)) => JwksSource::Url(url),
            (None, Some(iss), Some(_)) if is_url(iss) => JwksSource::Discovery(iss.to_owned()),
            (None, _, _) => return Ok(None),
        };
        let min_refresh_ms: u64 = parse(lookup, "JWT_JWKS_MIN_REFRESH_MS", Some(5_000))?;
        let refresh_secs: u64 = parse(lookup, "JWT_JWKS_REFRESH_SECS", Some(300))?;
        if refresh_secs == 0 {
            return Err(ConfigError {
                var: "JWT_JWKS_REFRESH_SECS",
                problem: "must be at least 1".into(),
            });
        }
        Ok(Some(Self {
            source,
            min_refresh: Duration::from_millis(min_refresh_ms),
            refresh_every: Duration::from_secs(refresh_secs),
        }))
    }
}

/// How outbound webhooks are sent.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Allow `http` and loopback or private addresses (`WEBHOOK_ALLOW_PRIVATE`; tests only).
    pub allow_private: bool,
    /// The first retry delay; it doubles per failed attempt (`WEBHOOK_RETRY_BASE_MS`).
    pub retry_base: Duration,
    /// Longest one attempt may take (`WEBHOOK_TIMEOUT_MS`).
    pub timeout: Duration,
    /// How often each instance looks for due deliveries (`WEBHOOK_WORKER_INTERVAL_MS`).
    pub worker_interval: Duration,
}

impl WebhookConfig {
    fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let ms = |var, default: u64| -> Result<Duration, ConfigError> {
            let value: u64 = parse(lookup, var, Some(default))?;
            if value == 0 {
                return Err(ConfigError {
                    var,
                    problem: "must be at least 1".into(),
                });
            }
            Ok(Duration::from_millis(value))
        };
        Ok(Self {
            allow_private: parse_bool(lookup, "WEBHOOK_ALLOW_PRIVATE", false)?,
            retry_base: ms("WEBHOOK_RETRY_BASE_MS", 10_000)?,
            timeout: ms("WEBHOOK_TIMEOUT_MS", 10_000)?,
            worker_interval: ms("WEBHOOK_WORKER_INTERVAL_MS", 1_000)?,
        })
    }
}

/// Bounds on what one connection may take: slow clients are cut, sockets capped.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// A request's headers must arrive within this (`HTTP_HEADER_TIMEOUT_MS`).
    pub header_timeout: Duration,
    /// A request's body must arrive within this (`HTTP_BODY_TIMEOUT_MS`), else 408.
    pub body_timeout: Duration,
    /// A WebSocket must send `connection_init` within this (`WS_INIT_TIMEOUT_MS`), else 4408.
    pub ws_init_timeout: Duration,
    /// Subscriptions one WebSocket may run at once (`WS_MAX_SUBSCRIPTIONS`).
    pub ws_max_subscriptions: usize,
    /// WebSockets one client address may hold open at once (`WS_MAX_PER_ADDRESS`).
    pub ws_max_per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            ws_init_timeout: Duration::from_secs(5),
            ws_max_subscriptions: 100,
            ws_max_per_address: 2_000,
        }
    }
}

impl ConnectionLimits {
    fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let ms = |var, default: Duration| -> Result<Duration, ConfigError> {
            let value: u64 = parse(lookup, var, Some(default.as_millis() as u64))?;
            if value == 0 {
                return Err(ConfigError {
                    var,
                    problem: "must be at least 1".into(),
                });
            }
            Ok(Duration::from_millis(value))
        };
        let count = |var, default: usize| -> Result<usize, ConfigError> {
            let value: usize = parse(lookup, var, Some(default))?;
            if value == 0 {
                return Err(ConfigError {
                    var,
                    problem: "must be at least 1".into(),
                });
            }
            Ok(value)
        };
        Ok(Self {
            header_timeout: ms("HTTP_HEADER_TIMEOUT_MS", d.header_timeout)?,
            body_timeout: ms("HTTP_BODY_TIMEOUT_MS", d.body_timeout)?,
            ws_init_timeout: ms("WS_INIT_TIMEOUT_MS", d.ws_init_timeout)?,
            ws_max_subscriptions: count("WS_MAX_SUBSCRIPTIONS", d.ws_max_subscriptions)?,
            ws_max_per_address: count("WS_MAX_PER_ADDRESS", d.ws_max_per_address)?,
        })
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let database_url =
            lookup("DATABASE_URL").unwrap_or_else(|| "sqlite://onsale.db?mode=rwc".to_owned());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError {
                var: "DATABASE_URL",
                problem: "must start with sqlite:, postgres:// or postgresql://".into(),
            });
        }
        let redis = redis_target(&lookup)?;
        let bind_addr = parse(&lookup, "BIND_ADDR", "127.0.0.1:8080".parse().ok())?;
        let (jwt_secret, jwt_secret_generated) = match lookup("JWT_SECRET") {
            Some(secret) if secret.len() < 16 => {
                return Err(ConfigError {
                    var: "JWT_SECRET",
                    problem: "must be at least 16 characters".into(),
                });
            }
            Some(secret) => (secret, false),
            None => (random_secret(), true),
        };
        let hold_ttl_secs: u64 = parse(&lookup, "HOLD_TTL_SECS", Some(600))?;
        if hold_ttl_secs == 0 || hold_ttl_secs > 86_400 {
            return Err(ConfigError {
                var: "HOLD_TTL_SECS",
                problem: "must be between 1 and 86400".into(),
            });
        }
        let stripe = match lookup("STRIPE_SECRET_KEY") {
            None => None,
            Some(key) if !key.starts_with("sk_") && !key.starts_with("rk_") => {
                return Err(ConfigError {
                    var: "STRIPE_SECRET_KEY",
                    problem: "must start with sk_ or rk_".into(),
                });
            }
            Some(secret_key) => Some(StripeConfig {
                secret_key,
                api_base: lookup("STRIPE_API_BASE")
                    .unwrap_or_else(|| "https://api.stripe.com".into())
                    .trim_end_matches('/')
                    .to_owned(),
                webhook_secret: lookup("STRIPE_WEBHOOK_SECRET"),
                currency: lookup("STRIPE_CURRENCY").unwrap_or_else(|| "usd".into()),
            }),
        };
        let db_pool_max: Option<u32> = match lookup("DB_POOL_MAX") {
            None => None,
            Some(_) => Some(parse(&lookup, "DB_POOL_MAX", None)?),
        };
        if db_pool_max == Some(0) {
            return Err(ConfigError {
                var: "DB_POOL_MAX",
                problem: "must be at least 1".into(),
            });
        }
        let log_format = match lookup("LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    var: "LOG_FORMAT",
                    problem: format!("must be pretty or json, not {other:?}"),
                });
            }
        };
        let max_seats_per_hold: usize = parse(&lookup, "MAX_SEATS_PER_HOLD", Some(10))?;
        if max_seats_per_hold == 0 {
            return Err(ConfigError {
                var: "MAX_SEATS_PER_HOLD",
                problem: "must be at least 1".into(),
            });
        }
        let max_inflight_mutations: usize = parse(&lookup, "MAX_INFLIGHT_MUTATIONS", Some(512))?;
        if max_inflight_mutations == 0 {
            return Err(ConfigError {
                var: "MAX_INFLIGHT_MUTATIONS",
                problem: "must be at least 1".into(),
            });
        }
        let jwt_issuer = lookup("JWT_ISSUER");
        let jwt_audience = lookup("JWT_AUDIENCE");
        let jwks =
            JwksConfig::from_lookup(&lookup, jwt_issuer.as_deref(), jwt_audience.as_deref())?;
        let jwt_role_claim = lookup("JWT_ROLE_CLAIM").unwrap_or_else(|| "role".to_owned());
        if jwt_role_claim.split('.').any(str::is_empty) {
            return Err(ConfigError {
                var: "JWT_ROLE_CLAIM",
                problem: "must be a dotted path of claim names, such as realm_access.roles".into(),
            });
        }
        Ok(Self {
            database_url,
            redis,
            bind_addr,
            jwt_secret,
            jwt_secret_generated,
            jwt_leeway_secs: parse(&lookup, "JWT_LEEWAY_SECS", Some(0))?,
            hold_ttl: Duration::from_secs(hold_ttl_secs),
            seed_demo: parse_bool(&lookup, "SEED_DEMO", true)?,
            stripe,
            db_pool_max,
            db_write_concurrency: parse(&lookup, "DB_WRITE_CONCURRENCY", Some(8))?,
            log_format,
            lock_timeout: Duration::from_millis(parse(&lookup, "LOCK_TIMEOUT_MS", Some(500))?),
            max_seats_per_hold,
            sweep_interval: Duration::from_millis(parse(&lookup, "SWEEP_INTERVAL_MS", Some(1000))?),
            graphiql: parse_bool(&lookup, "GRAPHIQL", true)?,
            dev_signin: parse_bool(&lookup, "DEV_SIGNIN", jwt_secret_generated)?,
            seat_gate: parse_bool(&lookup, "SEAT_GATE", true)?,
            seat_map_cache: parse_bool(&lookup, "SEATMAP_CACHE", true)?,
            change_retention: Duration::from_secs(parse(
                &lookup,
                "SEAT_CHANGE_RETENTION_SECS",
                Some(86_400),
            )?),
            max_inflight_mutations,
            rate_limit_user_per_sec: parse(&lookup, "RATE_LIMIT_USER_PER_SEC", Some(50))?,
            rate_limit_ip_per_sec: parse(&lookup, "RATE_LIMIT_IP_PER_SEC", Some(0))?,
            rate_limit_period: Duration::from_secs(
                parse::<u64>(&lookup, "RATE_LIMIT_PERIOD_SECS", Some(1))?.max(1),
            ),
            rate_limit_redis_timeout: Duration::from_millis(parse(
                &lookup,
                "RATE_LIMIT_REDIS_TIMEOUT_MS",
                Some(200),
            )?),
            trust_forwarded_for: parse_bool(&lookup, "TRUST_FORWARDED_FOR", false)?,
            max_holds_per_user: parse(&lookup, "MAX_HOLDS_PER_USER", Some(20))?,
            cors_allowed_origins: lookup("CORS_ALLOWED_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            jwt_issuer,
            jwt_audience,
            jwt_role_claim,
            jwks,
            checkout_grace: Duration::from_secs(parse(&lookup, "CHECKOUT_GRACE_SECS", Some(300))?),
            checkout_reconcile_after: Duration::from_secs(parse(
                &lookup,
                "CHECKOUT_RECONCILE_AFTER_SECS",
                Some(120),
            )?),
            checkout_worker_interval: Duration::from_millis(parse(
                &lookup,
                "CHECKOUT_WORKER_INTERVAL_MS",
                Some(1000),
            )?),
            request_timeout: Duration::from_millis(parse(
                &lookup,
                "REQUEST_TIMEOUT_MS",
                Some(10_000),
            )?),
            connections: ConnectionLimits::from_lookup(&lookup)?,
            group_commit: parse_bool(&lookup, "GROUP_COMMIT", false)?,
            webhooks: WebhookConfig::from_lookup(&lookup)?,
            queue_worker_pause: Duration::from_millis(parse(
                &lookup,
                "QUEUE_WORKER_PAUSE_MS",
                Some(0),
            )?),
        })
    }
}

fn parse<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: Option<T>,
) -> Result<T, ConfigError> {
    match lookup(var) {
        Some(raw) => raw.trim().parse().map_err(|_| ConfigError {
            var,
            problem: format!("cannot parse {raw:?}"),
        }),
        None => default.ok_or(ConfigError {
            var,
            problem: "is required".into(),
        }),
    }
}

fn parse_bool(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match lookup(var).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError {
            var,
            problem: format!("must be true or false, not {other:?}"),
        }),
    }
}

fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `REDIS_URL` (one Redis) or `REDIS_CLUSTER_NODES` (comma-separated nodes of a cluster).
fn redis_target(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<RedisTarget>, ConfigError> {
    let is_redis_url = |url: &str| url.starts_with("redis://") || url.starts_with("rediss://");
    let url = lookup("REDIS_URL").filter(|u| !u.trim().is_empty());
    let nodes = lookup("REDIS_CLUSTER_NODES").filter(|n| !n.trim().is_empty());
    match (url, nodes) {
        (Some(_), Some(_)) => Err(ConfigError {
            var: "REDIS_CLUSTER_NODES",
            problem:
                "set either REDIS_URL (one Redis) or REDIS_CLUSTER_NODES (a cluster), not both"
                    .into(),
        }),
        (Some(url), None) => {
            let url = url.trim().to_owned();
            if !is_redis_url(&url) {
                return Err(ConfigError {
                    var: "REDIS_URL",
                    problem: "must start with redis:// or rediss://".into(),
                });
            }
            Ok(Some(RedisTarget::Node(url)))
        }
        (None, Some(nodes)) => {
            let nodes: Vec<String> = nodes
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(bad) = nodes.iter().find(|n| !is_redis_url(n)) {
                return Err(ConfigError {
                    var: "REDIS_CLUSTER_NODES",
                    problem: format!("{bad:?} must start with redis:// or rediss://"),
                });
            }
            Ok(Some(RedisTarget::Cluster(nodes)))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn redis_is_one_node_or_a_cluster_never_both() {
        assert_eq!(config(&[]).expect("valid").redis, None);
        assert_eq!(
            config(&[("REDIS_URL", "redis://127.0.0.1:6379")])
                .expect("valid")
                .redis,
            Some(RedisTarget::Node("redis://127.0.0.1:6379".into()))
        );
        assert_eq!(
            config(&[("REDIS_CLUSTER_NODES", " redis://a:7000, redis://b:7001,")])
                .expect("valid")
                .redis,
            Some(RedisTarget::Cluster(vec![
                "redis://a:7000".into(),
                "redis://b:7001".into()
            ]))
        );
        let both = config(&[
            ("REDIS_URL", "redis://a:6379"),
            ("REDIS_CLUSTER_NODES", "redis://b:7000"),
        ])
        .expect_err("not both");
        assert_eq!(both.var, "REDIS_CLUSTER_NODES");
        let bad = config(&[("REDIS_CLUSTER_NODES", "redis://a:7000,b:7001")]).expect_err("bad");
        assert!(bad.problem.contains("b:7001"), "{}", bad.problem);
        let bad = config(&[("REDIS_URL", "http://a")]).expect_err("bad");
        assert_eq!(bad.var, "REDIS_URL");
    }

    #[test]
    fn jwks_mode_needs_issuer_and_audience() {
        let url = ("JWT_JWKS_URL", "https://idp.example/jwks");
        let iss = ("JWT_ISSUER", "https://idp.example");
        let aud = ("JWT_AUDIENCE", "onsale");
        assert_eq!(
            config(&[url, aud]).map(|_| ()).expect_err("refused").var,
            "JWT_ISSUER"
        );
        assert_eq!(
            config(&[url, iss]).map(|_| ()).expect_err("refused").var,
            "JWT_AUDIENCE"
        );
        let bad = ("JWT_JWKS_URL", "idp.example/jwks");
        assert_eq!(
            config(&[bad, iss, aud])
                .map(|_| ())
                .expect_err("refused")
                .var,
            "JWT_JWKS_URL"
        );
        let jwks = config(&[url, iss, aud])
            .expect("valid")
            .jwks
            .expect("jwks mode");
        assert_eq!(jwks.source, JwksSource::Url(url.1.to_owned()));
        assert_eq!(jwks.min_refresh, Duration::from_secs(5));
    }

    #[test]
    fn discovery_needs_an_issuer_url_and_an_audience() {
        let aud = ("JWT_AUDIENCE", "onsale");
        let jwks = config(&[("JWT_ISSUER", "https://idp.example/realms/x"), aud])
            .expect("valid")
            .jwks
            .expect("discovery");
        assert_eq!(
            jwks.source,
            JwksSource::Discovery("https://idp.example/realms/x".to_owned())
        );
        // An issuer that is not a URL, or one without an audience: HS256 only, as before.
        assert!(
            config(&[("JWT_ISSUER", "onsale"), aud])
                .expect("valid")
                .jwks
                .is_none()
        );
        assert!(
            config(&[("JWT_ISSUER", "https://idp.example")])
                .expect("valid")
                .jwks
                .is_none()
        );
        assert!(config(&[]).expect("valid").jwks.is_none());
    }

    #[test]
    fn the_queue_worker_pause_is_off_unless_set() {
        assert_eq!(
            config(&[]).expect("valid").queue_worker_pause,
            Duration::ZERO
        );
        let paused = config(&[("QUEUE_WORKER_PAUSE_MS", "250")]).expect("valid");
        assert_eq!(paused.queue_worker_pause, Duration::from_millis(250));
        assert_eq!(
            config(&[("QUEUE_WORKER_PAUSE_MS", "-1")])
                .map(|_| ())
                .expect_err("refused")
                .var,
            "QUEUE_WORKER_PAUSE_MS"
        );
    }

    #[test]
    fn the_role_claim_is_a_dotted_path() {
        assert_eq!(config(&[]).expect("valid").jwt_role_claim, "role");
        for bad in ["", "realm_access.", ".roles", "a..b"] {
            assert_eq!(
                config(&[("JWT_ROLE_CLAIM", bad)])
                    .map(|_| ())
                    .expect_err("refused")
                    .var,
                "JWT_ROLE_CLAIM",
                "{bad:?}"
            );
        }
    }
}
