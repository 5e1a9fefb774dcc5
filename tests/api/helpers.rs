//! Starting the real application for a test, each on its own fresh database.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use onsale::config::Config;
use onsale::startup::Application;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Declares one async test per backend: `name::postgres` and `name::sqlite`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                ($body)($crate::helpers::Backend::Postgres).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                ($body)($crate::helpers::Backend::Sqlite).await;
            }
        }
    };
}

fn raise_fd_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rlimit::increase_nofile_limit(65_536);
        onsale::payment::install_crypto_provider();
    });
}

/// The admin URL of the test PostgreSQL server.
pub fn pg_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run the tests with ./scripts/test.sh, which starts PostgreSQL and Redis",
    )
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").expect(
        "TEST_REDIS_URL is not set: run the tests with ./scripts/test.sh, which starts PostgreSQL and Redis",
    )
}

/// A fresh, empty PostgreSQL database; returns its URL.
pub async fn fresh_pg_database() -> String {
    use sea_orm::{ConnectionTrait, Database};
    let admin = pg_admin_url();
    let name = format!("onsale_test_{}", uuid::Uuid::new_v4().simple());
    let conn = Database::connect(admin.as_str())
        .await
        .expect("connect to TEST_DATABASE_URL");
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let (base, _) = admin.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

/// A fresh SQLite file; returns its URL.
pub fn fresh_sqlite_database() -> String {
    let path =
        std::env::temp_dir().join(format!("onsale-test-{}.db", uuid::Uuid::new_v4().simple()));
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Settings a test may change; everything else is the production default.
#[derive(Clone, Debug)]
pub struct Options {
    pub env: HashMap<&'static str, String>,
}

impl Default for Options {
    fn default() -> Self {
        let mut env = HashMap::new();
        env.insert("SEED_DEMO", "false".to_owned());
        Self { env }
    }
}

impl Options {
    pub fn set(mut self, key: &'static str, value: impl ToString) -> Self {
        self.env.insert(key, value.to_string());
        self
    }
}

/// A running onsale on its own port and database.
pub struct TestApp {
    pub base: String,
    pub database_url: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, Options::default()).await
    }

    pub async fn spawn_with(backend: Backend, options: Options) -> Self {
        let database_url = match backend {
            Backend::Postgres => fresh_pg_database().await,
            Backend::Sqlite => fresh_sqlite_database(),
        };
        Self::spawn_on(&database_url, options).await
    }

    /// Another instance on an existing database (several instances, restarts).
    pub async fn spawn_on(database_url: &str, options: Options) -> Self {
        raise_fd_limit();
        let mut env = options.env.clone();
        env.insert("DATABASE_URL", database_url.to_owned());
        env.insert("BIND_ADDR", "127.0.0.1:0".to_owned());
        env.entry("JWT_SECRET")
            .or_insert_with(|| JWT_SECRET.to_owned());
        let config =
            Config::from_lookup(|k| env.get(k).cloned()).expect("valid test configuration");
        let app = Application::build(config)
            .await
            .expect("application starts");
        let base = format!("http://{}", app.addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = app
                .run_until(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build()
            .expect("http client");
        Self {
            base,
            database_url: database_url.to_owned(),
            client,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Stops serving (drains in-flight requests) and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }

    pub fn token(&self, sub: &str) -> String {
        onsale::auth::Jwt::new(JWT_SECRET, 0)
            .issue(sub, false, 3600)
            .expect("token")
    }

    pub fn admin_token(&self) -> String {
        onsale::auth::Jwt::new(JWT_SECRET, 0)
            .issue("admin", true, 3600)
            .expect("token")
    }

    /// POSTs a GraphQL request; returns the HTTP status and the JSON body.
    pub async fn post(&self, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body read");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// Runs a GraphQL operation and returns the JSON body; panics on a non-200 answer.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let (status, body) = self
            .post(token, &json!({"query": query, "variables": variables}))
            .await;
        assert_eq!(status, 200, "HTTP status for {query}: {body}");
        body
    }

    /// Creates an event of `rows` rows × `per_row` seats; returns its id and seat ids.
    pub async fn create_event(&self, rows: usize, per_row: usize) -> (String, Vec<String>) {
        let labels: Vec<Value> = (0..rows)
            .map(|i| json!({"label": format!("R{}", i + 1), "seats": per_row, "priceCents": 1000 + i * 100}))
            .collect();
        let body = self
            .gql(
                Some(&self.admin_token()),
                "mutation($input: CreateEventInput!) { createEvent(input: $input) { id seatCount } }",
                json!({"input": {
                    "name": "Test Night",
                    "venue": "Test Hall",
                    "startsAt": "2030-01-01T20:00:00Z",
                    "sections": [{"name": "Main", "rows": labels}]
                }}),
            )
            .await;
        let event_id = body["data"]["createEvent"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("createEvent failed: {body}"))
            .to_owned();
        let ids = self.seat_ids(&event_id).await;
        (event_id, ids)
    }

    /// The event's seat ids in layout order.
    pub async fn seat_ids(&self, event_id: &str) -> Vec<String> {
        self.seat_map(event_id).await["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .map(|s| s["id"].as_str().expect("seat id").to_owned())
            .collect()
    }

    /// Waits (bounded) until `token`'s hold `hold_id` shows `status`.
    pub async fn wait_for_hold_status(&self, token: &str, hold_id: &str, status: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let body = self
                .gql(
                    Some(token),
                    "query($id: ID!) { hold(id: $id) { status } }",
                    json!({"id": hold_id}),
                )
                .await;
            if data(&body, "hold")["status"] == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "hold {hold_id} never became {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn seat_map(&self, event_id: &str) -> Value {
        let body = self
            .gql(
                None,
                "query($e: ID!) { seatMap(eventId: $e) { seq event { id seatCount available held booked } seats { id section row number priceCents status holdExpiresAt } } }",
                json!({"e": event_id}),
            )
            .await;
        body["data"]["seatMap"].clone()
    }

    /// Status of each seat, by id.
    pub async fn seat_statuses(&self, event_id: &str) -> HashMap<String, String> {
        self.seat_map(event_id).await["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().expect("id").to_owned(),
                    s["status"].as_str().expect("status").to_owned(),
                )
            })
            .collect()
    }

    pub async fn hold_seats(&self, token: &str, event_id: &str, seat_ids: &[&str]) -> Value {
        self.gql(
            Some(token),
            HOLD_SEATS,
            json!({"e": event_id, "s": seat_ids}),
        )
        .await
    }
}

pub const HOLD_SEATS: &str = "mutation($e: ID!, $s: [ID!]!, $k: String) { holdSeats(eventId: $e, seatIds: $s, idempotencyKey: $k) { id eventId status expiresAt totalCents seats { id status holdExpiresAt } } }";
pub const CONFIRM_HOLD: &str = "mutation($h: ID!, $k: String) { confirmHold(holdId: $h, idempotencyKey: $k) { id holdId eventId status totalCents paymentIntentId createdAt seats { id status } } }";
pub const RELEASE_HOLD: &str =
    "mutation($h: ID!) { releaseHold(holdId: $h) { id status seats { id status } } }";

/// The `extensions.code` of the first error, if any.
pub fn error_code(body: &Value) -> Option<String> {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned)
}

/// The error code, panicking with the body if there is none.
pub fn expect_error(body: &Value) -> String {
    error_code(body).unwrap_or_else(|| panic!("expected an error, got {body}"))
}

/// `data.<field>`, panicking with the body if the operation failed.
pub fn data<'a>(body: &'a Value, field: &str) -> &'a Value {
    assert!(body["errors"].is_null(), "unexpected errors: {body}");
    &body["data"][field]
}

/// A Redis of the test's own, so stopping it disturbs no other test.
pub struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start(port: u16) -> Self {
        let bin = std::env::var("TEST_REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let own = Self {
            port,
            child: Some(child),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return own;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not listen on {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Counts answers by `extensions.code` ("OK" for success); panics on a non-200 answer.
pub fn tally(results: &[(u16, Value)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (status, body) in results {
        assert_eq!(*status, 200, "every answer is HTTP 200: {body}");
        *counts
            .entry(error_code(body).unwrap_or_else(|| "OK".into()))
            .or_default() += 1;
    }
    counts
}

/// The Redis namespace of the app's deployment (prefixes its gate keys and channels).
pub async fn redis_namespace(app: &TestApp) -> String {
    let db = onsale::db::Db::connect(&app.database_url, Some(1), Duration::from_secs(1), 1)
        .await
        .expect("connect");
    db.redis_namespace().await.expect("namespace")
}
