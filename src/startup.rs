//! Building and running the application: the one place that wires config, database, bus,
//! service, schema and router together. Tests start the real app through [`Application`].

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, TransactionTrait};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Jwt;
use crate::booking::gate::SeatGate;
use crate::booking::{BookingService, BookingSettings};
use crate::checkout::{CheckoutService, CheckoutSettings};
use crate::config::Config;
use crate::db::Db;
use crate::graphql::Services;
use crate::http::{AppState, AppStateInner, router};
use crate::realtime::local::LocalBus;
use crate::realtime::sequencer::SequencedBus;
use crate::realtime::{SeatChangeBus, SeatChangeFeed};
use crate::waiting_room::WaitingRoomService;
use crate::webhooks::WebhookService;

/// The PostgreSQL advisory lock that lets one instance migrate at a time.
const MIGRATION_LOCK_KEY: i64 = 7_318_040_501;

/// A built application, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    router: axum::Router,
    booking: BookingService,
    feed: SeatChangeFeed,
    shutdown: watch::Sender<bool>,
    header_timeout: std::time::Duration,
}

impl Application {
    /// Connects, migrates, seeds (if asked and empty), binds the listener and starts the
    /// background workers.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = Db::connect(
            &config.database_url,
            config.db_pool_max,
            config.lock_timeout,
            config.db_write_concurrency,
        )
        .await
        .context("cannot connect to DATABASE_URL")?
        .with_group_commit(config.group_commit);
        migrate(&db).await.context("database migrations failed")?;
        let namespace = db
            .redis_namespace()
            .await
            .context("cannot read the deployment's Redis namespace")?;

        let redis = match &config.redis {
            None => None,
            Some(target) => Some(crate::realtime::redis_bus::connect(target).await?),
        };
        let transport: Arc<dyn SeatChangeBus> = match &config.redis {
            None => Arc::new(LocalBus::default()),
            Some(target) => Arc::new(
                crate::realtime::redis_bus::RedisBus::start(target, &namespace, redis.clone())
                    .await?,
            ),
        };
        // Services publish through the sequencer, which numbers changes after their commit.
        let sequenced = Arc::new(SequencedBus::new(db.conn.clone(), transport));
        let bus: Arc<dyn SeatChangeBus> = sequenced.clone();
        let gate = if config.seat_gate {
            SeatGate::new(redis.clone().map(|c| (c, namespace.clone())), &bus)
        } else {
            SeatGate::off()
        };
        let booking = BookingService::new(
            db,
            bus.clone(),
            gate,
            BookingSettings {
                hold_ttl: config.hold_ttl,
                max_seats_per_hold: config.max_seats_per_hold,
                payments_enabled: config.stripe.is_some(),
                max_inflight_mutations: config.max_inflight_mutations,
                seat_map_cache: config.seat_map_cache,
                change_retention: config.change_retention,
                max_holds_per_user: config.max_holds_per_user,
            },
        );
        let stripe = match &config.stripe {
            Some(stripe) => Some(crate::payment::StripeClient::new(stripe).map_err(|e| {
                anyhow::anyhow!("STRIPE_SECRET_KEY: cannot set up the Stripe client: {e}")
            })?),
            None => None,
        };
        let webhooks = WebhookService::new(booking.db().clone(), config.webhooks.clone())
            .context("cannot set up the webhook client")?;
        let checkout = CheckoutService::new(
            booking.clone(),
            stripe,
            CheckoutSettings {
                grace: config.checkout_grace,
                reconcile_after: config.checkout_reconcile_after,
            },
        );
        if config.seed_demo {
            booking
                .seed_demo_if_empty()
                .await
                .map_err(|e| anyhow::anyhow!("seeding the demo event failed: {e}"))?;
        }

        let jwt = Arc::new(
            Jwt::from_config(&config).context("JWT_JWKS_URL: cannot use the identity provider")?,
        );
        let waiting_room = WaitingRoomService::connect(
            booking.clone(),
            config.redis.clone(),
            &namespace,
            &config.jwt_secret,
        )
        .await
        .context(
            "cannot connect to Redis (REDIS_URL / REDIS_CLUSTER_NODES) for the waiting room",
        )?;
        booking.set_admission_policy(Arc::new(waiting_room.clone()));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let feed = SeatChangeFeed::new(booking.db().clone(), bus);
        let services = Services {
            booking: booking.clone(),
            checkout: checkout.clone(),
            feed: feed.clone(),
            waiting_room: waiting_room.clone(),
            webhooks: webhooks.clone(),
        };
        let state = AppState::new(AppStateInner {
            schema: crate::graphql::guard::GuardedSchema(crate::graphql::build_schema(
                Some(services),
                &crate::graphql::SchemaSettings {
                    introspection: config.graphiql,
                    rate_limits: crate::graphql::rate_limit::RateLimitSettings {
                        user_rate: config.rate_limit_user_per_sec,
                        address_rate: config.rate_limit_ip_per_sec,
                        period: config.rate_limit_period,
                        shared: redis
                            .clone()
                            .map(|conn| crate::graphql::rate_limit::SharedStore {
                                conn,
                                namespace: namespace.clone(),
                                timeout: config.rate_limit_redis_timeout,
                            }),
                    },
                },
            )),
            jwt: jwt.clone(),
            booking: booking.clone(),
            checkout: checkout.clone(),
            metrics: crate::telemetry::metrics_handle(),
            graphiql: config.graphiql,
            dev_signin: config.dev_signin,
            redis,
            trust_forwarded_for: config.trust_forwarded_for,
            stripe_webhook_secret: config
                .stripe
                .as_ref()
                .and_then(|s| s.webhook_secret.clone()),
            shutdown: shutdown_rx.clone(),
            request_timeout: config.request_timeout,
            connections: config.connections.clone(),
            open_sockets: Default::default(),
            read_cache: crate::http::read_cache::ReadCache::new(config.seat_map_cache),
            persisted: Default::default(),
        });
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("cannot listen on BIND_ADDR {}", config.bind_addr))?;
        let addr = listener.local_addr()?;
        tokio::spawn(
            booking
                .clone()
                .run_sweeper(config.sweep_interval, shutdown_rx.clone()),
        );
        tokio::spawn(
            checkout.run_checkout_worker(config.checkout_worker_interval, shutdown_rx.clone()),
        );
        tokio::spawn(webhooks.run_worker(shutdown_rx.clone()));
        if booking.db().is_postgres() {
            tokio::spawn(sequenced.run_sweeper(config.sweep_interval, shutdown_rx.clone()));
        }
        waiting_room.start(addr, config.queue_worker_pause, shutdown_rx);

        tracing::info!(%addr, "onsale listening on http://{addr}/ (GraphiQL) — POST /graphql, WebSocket /graphql/ws");
        tracing::info!(%addr, "live seat-map demo at http://{addr}/demo");
        if !is_local_database(&config.database_url)
            && (config.jwt_secret_generated || config.dev_signin)
        {
            tracing::warn!(
                "DEV DEFAULTS AGAINST A NON-LOCAL DATABASE: {} — set JWT_SECRET and DEV_SIGNIN=false for production",
                if config.jwt_secret_generated {
                    "JWT_SECRET is unset (random secret)"
                } else {
                    "DEV_SIGNIN is on"
                }
            );
        }
        if config.jwt_secret_generated {
            tracing::warn!(
                "JWT_SECRET is unset: using a random secret for this process only (dev mode)"
            );
            let admin = jwt.issue("admin", true, 24 * 3600)?;
            let customer = jwt.issue("customer-1", false, 24 * 3600)?;
            tracing::info!(
                "dev admin token (paste into GraphiQL headers): {{\"Authorization\": \"Bearer {admin}\"}}"
            );
            tracing::info!("dev customer token: {{\"Authorization\": \"Bearer {customer}\"}}");
        }
        Ok(Self {
            listener,
            addr,
            router: router(state, &config.cors_allowed_origins),
            booking,
            feed,
            shutdown,
            header_timeout: config.connections.header_timeout,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The booking rules, for tests that drive the service directly.
    pub fn booking(&self) -> &BookingService {
        &self.booking
    }

    /// Seat-change feeds, for tests that follow one directly.
    pub fn feed(&self) -> &SeatChangeFeed {
        &self.feed
    }

    /// Serves until `stop` completes, then drains in-flight requests and stops the workers.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shutdown = self.shutdown;
        // Tell subscriptions and workers first, so the drain below is not held up by
        // WebSocket connections that would otherwise stay open for ever.
        let stop_and_tell = {
            let shutdown = shutdown.clone();
            async move {
                stop.await;
                let _ = shutdown.send(true);
            }
        };
        let result = crate::http::server::serve(
            self.listener,
            self.router,
            self.header_timeout,
            stop_and_tell,
        )
        .await;
        let _ = shutdown.send(true);
        result
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

/// SQLite, or PostgreSQL on this machine.
fn is_local_database(url: &str) -> bool {
    url.starts_with("sqlite:")
        || [
            "@localhost",
            "@127.0.0.1",
            "@[::1]",
            "://localhost",
            "://127.0.0.1",
            "/var/run/postgresql",
        ]
        .iter()
        .any(|local| url.contains(local))
}

/// Runs the migrations, one instance at a time on PostgreSQL (an advisory lock held for the
/// migration transaction), so several instances can start together.
pub async fn migrate(db: &Db) -> Result<(), sea_orm::DbErr> {
    if db.is_postgres() {
        let txn = db.conn.begin().await?;
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
        ))
        .await?;
        Migrator::up(&txn, None).await?;
        txn.commit().await
    } else {
        Migrator::up(&db.conn, None).await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
