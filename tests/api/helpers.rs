//! Starting the real application for a test, each on its own fresh database.

use std::collections::HashMap;
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use onsale::config::Config;
use onsale::startup::Application;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub use onsale_ops::{
    self as ops, CANCEL_BOOKING, CONFIRM_HOLD, HOLD_SEATS, HOLD_STATUS, RELEASE_HOLD,
};

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
        let input = ops::EventInput::rows(
            "Test Night",
            "Test Hall",
            "2030-01-01T20:00:00Z",
            "Main",
            (0..rows).map(|i| (per_row, 1000 + 100 * i as i64)),
        );
        self.create_event_from(&self.admin_token(), &ops::vars::create_event(&input))
            .await
    }

    /// Runs `createEvent` with `variables` and `token`; returns the event's id and seat ids.
    pub async fn create_event_from(&self, token: &str, variables: &Value) -> (String, Vec<String>) {
        let body = self
            .gql(Some(token), ops::CREATE_EVENT, variables.clone())
            .await;
        let event_id = data(&body, "createEvent")["id"]
            .as_str()
            .unwrap_or_else(|| panic!("createEvent failed: {body}"))
            .to_owned();
        let seats = self.statuses(&event_id).await.order;
        (event_id, seats)
    }

    /// The event's seat ids in layout order.
    pub async fn seat_ids(&self, event_id: &str) -> Vec<String> {
        self.statuses(event_id).await.order
    }

    /// Waits (bounded) until `token`'s hold `hold_id` shows `status`.
    pub async fn wait_for_hold_status(&self, token: &str, hold_id: &str, status: &str) {
        wait_until(
            &format!("hold {hold_id} {status}"),
            Duration::from_secs(10),
            || async { self.hold_status(token, hold_id).await == status },
        )
        .await;
    }

    pub async fn seat_map(&self, event_id: &str) -> Value {
        let body = self
            .gql(None, ops::SEAT_MAP, ops::vars::event(event_id))
            .await;
        body["data"]["seatMap"].clone()
    }

    /// Every seat's status, in seat-map order.
    pub async fn statuses(&self, event_id: &str) -> ops::SeatStatuses {
        let body = self
            .gql(None, ops::SEAT_STATUSES, ops::vars::event(event_id))
            .await;
        ops::SeatStatuses::from_json(data(&body, "seatMap"))
            .unwrap_or_else(|e| panic!("a seat map: {e}: {body}"))
    }

    /// Status of each seat, by id.
    pub async fn seat_statuses(&self, event_id: &str) -> HashMap<String, String> {
        self.statuses(event_id).await.status
    }

    pub async fn hold_seats(&self, token: &str, event_id: &str, seat_ids: &[&str]) -> Value {
        self.gql(
            Some(token),
            HOLD_SEATS,
            ops::vars::seats(event_id, seat_ids),
        )
        .await
    }

    /// `holdBestAvailable` of `count` seats (in `section`, if given) for `token`.
    pub async fn hold_best(
        &self,
        token: &str,
        event_id: &str,
        count: i64,
        section: Option<&str>,
    ) -> Value {
        self.gql(
            Some(token),
            ops::HOLD_BEST_AVAILABLE,
            ops::vars::best_available(event_id, count, section),
        )
        .await
    }

    /// How many items the list `field` of `query` (without variables) answers.
    pub async fn count(&self, token: Option<&str>, query: &str, field: &str) -> usize {
        let body = self.gql(token, query, json!({})).await;
        data(&body, field)
            .as_array()
            .unwrap_or_else(|| panic!("{field} is not a list: {body}"))
            .len()
    }

    /// The status of one of `token`'s holds.
    pub async fn hold_status(&self, token: &str, hold_id: &str) -> String {
        let body = self
            .gql(Some(token), HOLD_STATUS, ops::vars::id(hold_id))
            .await;
        data(&body, "hold")["status"]
            .as_str()
            .unwrap_or_else(|| panic!("hold {hold_id} has no status: {body}"))
            .to_owned()
    }

    /// `GET` of a path of the app (`/healthz`, `/readyz`, `/metrics`, ...).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The HTTP status of `/readyz`.
    pub async fn readiness(&self) -> u16 {
        self.get("/readyz").await.status().as_u16()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .text()
            .await
            .expect("metrics text")
    }
}

/// The id of the hold a `holdSeats` answer made, panicking with the body if it failed.
pub fn hold_id(body: &Value) -> String {
    data(body, "holdSeats")["id"]
        .as_str()
        .expect("hold id")
        .to_owned()
}

/// A token signed with `secret` (HS256) for arbitrary claims.
pub fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// Seconds since the epoch, as a token's `exp` counts them.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A one-row event for `createEvent`, with the given name, section, row label, seats and
/// price (any JSON, to try values the schema refuses).
pub fn event_input(name: &str, section: &str, label: &str, seats: Value, price: Value) -> Value {
    let mut input = ops::EventInput::rows(name, "Hall", "2030-01-01T20:00:00Z", section, [(0, 0)]);
    input.sections[0].rows[0].label = label.to_owned();
    let mut variables = ops::vars::create_event(&input);
    let row = &mut variables["input"]["sections"][0]["rows"][0];
    row["seats"] = seats;
    row["priceCents"] = price;
    variables
}

/// Creates a one-row event of `seats` seats with `admin`'s token; returns its id and seat ids.
#[allow(
    dead_code,
    reason = "for tests/api/hostile.rs, which still has its own copy"
)]
pub async fn create_event_as(app: &TestApp, admin: &str, seats: usize) -> (String, Vec<String>) {
    app.create_event_from(
        admin,
        &event_input("Night", "Main", "A", json!(seats), json!(1000)),
    )
    .await
}

/// How often [`wait_for`] and [`wait_until`] look again.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Polls `probe` until it gives a value, and returns it; panics naming `what` if it has not
/// within `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_every(what, within, POLL_EVERY, probe).await
}

/// [`wait_for`], looking again every `every` (for probes that are expensive).
pub async fn wait_for_every<T, F, Fut>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(every).await; // the poll interval
    }
}

/// Polls `check` until it holds; panics naming `what` if it has not within `within`.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, within, || {
        let held = check();
        async move { held.await.then_some(()) }
    })
    .await;
}

/// Runs an operation again while it answers RETRY_LATER, after `retryAfterMs`, as the
/// contract tells clients to: a burst on a loaded test machine may make answers slow.
pub async fn retrying<F, Fut>(op: F) -> Value
where
    F: Fn() -> Fut,
    Fut: Future<Output = Value>,
{
    let mut body = op().await;
    for _ in 0..20 {
        if error_code(&body).as_deref() != Some("RETRY_LATER") {
            break;
        }
        let wait = body["errors"][0]["extensions"]["retryAfterMs"]
            .as_u64()
            .unwrap_or(200);
        // Waiting is what the answer asks for.
        tokio::time::sleep(Duration::from_millis(wait)).await;
        body = op().await;
    }
    body
}

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
            std::thread::sleep(Duration::from_millis(20)); // polls until it listens
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

/// The codes the contract allows in `extensions.code`.
pub const CODES: [&str; 13] = [
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "SEAT_UNAVAILABLE",
    "HOLD_EXPIRED",
    "HOLD_NOT_ACTIVE",
    "RETRY_LATER",
    "INTERNAL",
    "NOT_ON_SALE",
    "LIMIT_EXCEEDED",
    "ALREADY_CHECKED_IN",
    "TICKET_INVALID",
];

/// The server is up and still serves normal requests.
pub async fn assert_healthy(app: &TestApp) {
    let resp = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(resp.status(), 200);
    let resp = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(resp.status(), 200);
    let body = app.gql(None, "{ events { id name } }", json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
}

/// The answer number the queue worker gave each request (`<event>-<uuid>` ids), in the order
/// given; `None` for one not answered. `prefix` is the queue's key prefix ([`queue_prefix`]).
pub async fn answer_numbers<'a>(
    redis: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    request_ids: impl IntoIterator<Item = &'a str>,
) -> Vec<Option<i64>> {
    let mut numbers = Vec::new();
    for id in request_ids {
        let uuid = id.split_once('-').map(|(_, u)| u).expect("request id");
        let n: Option<i64> = redis::cmd("HGET")
            .arg(format!("{prefix}:req:{uuid}"))
            .arg("answer")
            .query_async(redis)
            .await
            .expect("hget");
        numbers.push(n);
    }
    numbers
}

/// The entries of the queue's request stream pending with a worker: (entry id, consumer,
/// idle ms, deliveries), at most 10.
pub async fn pending_requests(
    redis: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> Vec<(String, String, i64, i64)> {
    redis::cmd("XPENDING")
        .arg(stream)
        .arg("workers")
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(redis)
        .await
        .unwrap_or_default()
}

/// The Redis key prefix of `event_id`'s request queue (`onsale:wr:{<queue key>}`), from its
/// room's row (the event needs a room, on or off).
pub async fn queue_prefix(db: &sea_orm::DatabaseConnection, event_id: &str) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT queue_key FROM waiting_rooms WHERE event_id = {event_id}"),
        ))
        .await
        .expect("query")
        .expect("room row");
    let queue_key: String = row.try_get("", "queue_key").expect("queue key");
    format!("onsale:wr:{{{queue_key}}}")
}

/// The value of a counter `series` (name and labels, as the Prometheus text writes them) in
/// the text of `/metrics`, 0 if it is not there yet.
pub fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The mean of a histogram `name` (`_sum / _count`, 0 before its first sample) and its
/// sample count, in the text of `/metrics`.
pub fn histogram_mean(metrics: &str, name: &str) -> (f64, f64) {
    let read = |suffix: &str| {
        let series = format!("{name}{suffix}");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let count = read("_count");
    let mean = if count == 0.0 {
        0.0
    } else {
        read("_sum") / count
    };
    (mean, count)
}
