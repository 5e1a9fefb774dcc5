//! Fenced workers: a worker whose lease ran out while it was paused, and was taken over,
//! cannot apply or answer the work it had taken — the request queue's worker (a Redis lease
//! and the database's fence), the checkout outbox and webhook deliveries (leases on their
//! rows, with a token drawn per lease).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::stripe_proxy::{CaptureProxy, Captures};

use ops::{REQUEST_SEATS, SEAT_REQUEST};

/// How long the first instance's worker stalls after taking a request: well past its lease
/// (3 s), long enough for the second instance to take over and answer everything first.
const PAUSE: Duration = Duration::from_secs(7);

fn with_redis(url: &str) -> Options {
    Options::default().set("REDIS_URL", url)
}

/// Queued booking on for `event_id` (a room, switched off, so `requestSeats` works without
/// admissions); answers a connection to the app's database.
async fn queued_booking(app: &TestApp, event_id: &str) -> DatabaseConnection {
    let input = ops::WaitingRoomInput {
        enabled: false,
        opens_at: None,
        admit_per_second: 10.into(),
        admission_ttl_secs: 60.into(),
    };
    let body = app
        .gql(
            Some(&app.admin_token()),
            ops::CONFIGURE_WAITING_ROOM,
            ops::vars::configure_waiting_room(event_id, &input),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    Database::connect(app.database_url.as_str())
        .await
        .expect("db")
}

async fn one_i64(db: &DatabaseConnection, sql: String, column: &str) -> Option<i64> {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .map(|row| row.try_get::<i64>("", column).expect("column"))
}

const QUEUE_LEASES_LOST: &str = r#"onsale_leases_lost_total{lease="queue"}"#;

/// Instance A takes the first queued requests and stalls past its lease; instance B takes the
/// lease over (a newer fencing token) and answers every request in queue order. Then the seat
/// A's first request wanted becomes free, and A wakes up and tries to apply its requests: the
/// fence refuses A's token, so A holds nothing and answers nothing, and the outcomes stay those
/// of a sequential replay of the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_paused_past_its_lease_cannot_apply_or_answer() {
    let redis_url = redis_url();
    let a = TestApp::spawn_with(
        Backend::Postgres,
        with_redis(&redis_url).set("QUEUE_WORKER_PAUSE_MS", PAUSE.as_millis()),
    )
    .await;
    let (event_id, seats) = a.create_event(1, 3).await;
    let (s1, s2, s3) = (&seats[0], &seats[1], &seats[2]);
    let db = queued_booking(&a, &event_id).await;
    let prefix = queue_prefix(&db, &event_id).await;
    let mut redis = redis::Client::open(redis_url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");

    // Someone holds s1 directly, so the first request cannot have it when it is worked.
    let xavier = a.token("xavier");
    let direct = a.hold_seats(&xavier, &event_id, &[s1]).await;
    let direct_hold = hold_id(&direct);

    // The queue, in arrival order.
    let wanted: [Vec<&String>; 4] = [vec![s1], vec![s2], vec![s2, s3], vec![s3]];
    let tokens: Vec<String> = (0..wanted.len())
        .map(|i| a.token(&format!("buyer-{i}")))
        .collect();
    let mut ids = Vec::new();
    for (i, seats) in wanted.iter().enumerate() {
        let body = retrying(|| {
            a.gql(
                Some(&tokens[i]),
                REQUEST_SEATS,
                json!({"e": event_id, "s": seats, "k": format!("req-{i}")}),
            )
        })
        .await;
        let queued = data(&body, "requestSeats");
        assert_eq!(queued["queueNumber"], i + 1, "{body}");
        ids.push(queued["id"].as_str().expect("request id").to_owned());
    }

    // A has taken the first requests (pending with A) and stalls.
    let stream = format!("{prefix}:requests");
    let a_addr = a.base.trim_start_matches("http://").to_owned();
    wait_until(
        "A takes the first requests",
        Duration::from_secs(10),
        || {
            let (mut redis, stream, a_addr) = (redis.clone(), stream.clone(), a_addr.clone());
            async move {
                let pending = pending_requests(&mut redis, &stream).await;
                !pending.is_empty()
                    && pending
                        .iter()
                        .all(|(_, consumer, _, _)| consumer.starts_with(&a_addr))
            }
        },
    )
    .await;
    let taken_at = Instant::now();

    // B starts, takes the lease over once A's has run out, and answers all four in order.
    let b = TestApp::spawn_on(&a.database_url, with_redis(&redis_url)).await;
    let outcomes: Vec<Value> = wait_for(
        "B answers every request",
        Duration::from_secs(20),
        || async {
            let mut outcomes = Vec::new();
            for (id, token) in ids.iter().zip(&tokens) {
                let body = b.gql(Some(token), SEAT_REQUEST, json!({"id": id})).await;
                outcomes.push(data(&body, "seatRequest").clone());
            }
            outcomes
                .iter()
                .all(|o| o["status"] != "QUEUED")
                .then_some(outcomes)
        },
    )
    .await;
    // The seat A's request wanted becomes free before A wakes up.
    let released = b
        .gql(Some(&xavier), RELEASE_HOLD, json!({"h": direct_hold}))
        .await;
    assert!(released["errors"].is_null(), "{released}");
    assert!(
        taken_at.elapsed() < PAUSE,
        "the machine was too slow: A may have woken before s1 was free, so this run shows \
         nothing about the fence (took {:?})",
        taken_at.elapsed()
    );

    // A wakes and tries its request: refused, counted, and nothing more.
    wait_until(
        "A finds its lease taken over",
        PAUSE + Duration::from_secs(10),
        || async { counter(&a.metrics().await, QUEUE_LEASES_LOST) >= 1 },
    )
    .await;

    // The outcomes of a sequential replay: s1 was held when the first request was worked, s2
    // went to the second, so the third could not have s2 and s3, and the fourth got s3.
    let expected = [
        ("FAILED", None),
        ("DONE", Some(vec![s2])),
        ("FAILED", None),
        ("DONE", Some(vec![s3])),
    ];
    let after: Vec<Value> = {
        let mut after = Vec::new();
        for (id, token) in ids.iter().zip(&tokens) {
            let body = a.gql(Some(token), SEAT_REQUEST, json!({"id": id})).await;
            after.push(data(&body, "seatRequest").clone());
        }
        after
    };
    for (i, (status, held)) in expected.iter().enumerate() {
        assert_eq!(after[i]["status"], *status, "request {i}: {}", after[i]);
        // A's wake-up changed no answer.
        assert_eq!(after[i], outcomes[i], "request {i}");
        match held {
            Some(seats) => {
                let got: Vec<&str> = after[i]["hold"]["seats"]
                    .as_array()
                    .expect("seats")
                    .iter()
                    .map(|s| s["id"].as_str().expect("id"))
                    .collect();
                assert_eq!(got, seats.iter().map(|s| s.as_str()).collect::<Vec<_>>());
            }
            None => assert_eq!(after[i]["errorCode"], "SEAT_UNAVAILABLE", "{}", after[i]),
        }
    }
    // Each answered once, in queue order.
    let numbers = answer_numbers(&mut redis, &prefix, ids.iter().map(String::as_str)).await;
    assert_eq!(numbers, [1, 2, 3, 4].map(Some));
    // A applied nothing: s1 is free (nobody holds it), only the two winners hold seats.
    let statuses: HashMap<String, String> = a.seat_statuses(&event_id).await;
    assert_eq!(statuses[s1.as_str()], "AVAILABLE");
    assert_eq!(statuses[s2.as_str()], "HELD");
    assert_eq!(statuses[s3.as_str()], "HELD");
    let holds = one_i64(
        &db,
        format!(
            "SELECT COUNT(*) AS n FROM holds WHERE event_id = {event_id} AND status = 'ACTIVE'"
        ),
        "n",
    )
    .await;
    assert_eq!(holds, Some(2));
    // The fence holds B's token (A's was the first, B's the second); A was refused once.
    let fence = one_i64(
        &db,
        format!("SELECT token FROM queue_fences WHERE event_id = {event_id}"),
        "token",
    )
    .await;
    assert_eq!(fence, Some(2));
    assert_eq!(counter(&a.metrics().await, QUEUE_LEASES_LOST), 1);
    b.stop().await;
    a.stop().await;
}

/// The answer is fenced too: the worker still owns the lease when it answers, but the lease
/// was taken again meanwhile (the counter moved past its token), so its answer is refused and
/// the newest holder answers instead, once, from the hold the first run made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_with_a_stale_token_is_refused() {
    let redis_url = redis_url();
    // A stall shorter than the lease: the worker still owns it when it answers.
    let app = TestApp::spawn_with(
        Backend::Postgres,
        with_redis(&redis_url).set("QUEUE_WORKER_PAUSE_MS", 1_500),
    )
    .await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let db = queued_booking(&app, &event_id).await;
    let prefix = queue_prefix(&db, &event_id).await;
    let mut redis = redis::Client::open(redis_url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let alice = app.token("alice");
    let body = retrying(|| {
        app.gql(
            Some(&alice),
            REQUEST_SEATS,
            json!({"e": event_id, "s": [seats[0]], "k": "req-0"}),
        )
    })
    .await;
    let id = data(&body, "requestSeats")["id"]
        .as_str()
        .expect("request id")
        .to_owned();
    let stream = format!("{prefix}:requests");
    wait_until(
        "the worker takes the request",
        Duration::from_secs(10),
        || {
            let (mut redis, stream) = (redis.clone(), stream.clone());
            async move {
                let pending = pending_requests(&mut redis, &stream).await;
                pending.len() == 1
            }
        },
    )
    .await;
    // Meanwhile the lease is taken again: the counter moves past the worker's token.
    let moved: i64 = redis::cmd("INCR")
        .arg(format!("{prefix}:fence"))
        .query_async(&mut redis)
        .await
        .expect("incr");
    assert_eq!(moved, 2);
    let answer = wait_for("the request answered", Duration::from_secs(20), || async {
        let body = app.gql(Some(&alice), SEAT_REQUEST, json!({"id": id})).await;
        let request = data(&body, "seatRequest").clone();
        (request["status"] != "QUEUED").then_some(request)
    })
    .await;
    assert_eq!(answer["status"], "DONE", "{answer}");
    assert_eq!(answer["hold"]["seats"][0]["id"], seats[0]);
    let number = answer_numbers(&mut redis, &prefix, [id.as_str()]).await;
    assert_eq!(number, [Some(1)], "answered once");
    // The first run (token 1) made the hold and could not answer; the third taking of the
    // lease (token 3) answered it with that same hold, replayed by its idempotency key
    // without a new transaction (so the database's fence still shows token 1).
    assert_eq!(counter(&app.metrics().await, QUEUE_LEASES_LOST), 1);
    let taken: i64 = redis::cmd("GET")
        .arg(format!("{prefix}:fence"))
        .query_async(&mut redis)
        .await
        .expect("get");
    assert_eq!(taken, 3);
    let holds = one_i64(
        &db,
        format!("SELECT COUNT(*) AS n FROM holds WHERE event_id = {event_id}"),
        "n",
    )
    .await;
    assert_eq!(holds, Some(1));
    let fence = one_i64(
        &db,
        format!("SELECT token FROM queue_fences WHERE event_id = {event_id}"),
        "token",
    )
    .await;
    assert_eq!(fence, Some(1));
    app.stop().await;
}

/// Redis lost the fencing counter (here: the database has seen a newer token than Redis will
/// draw next). The first worker is refused, raises the counter past the database's token and
/// lets the lease go; the next taking of the lease works the queue, and the request is
/// answered as `holdSeats` would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_fencing_counter_is_raised_past_the_database() {
    let redis_url = redis_url();
    let app = TestApp::spawn_with(Backend::Postgres, with_redis(&redis_url)).await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let db = queued_booking(&app, &event_id).await;
    db.execute_unprepared(&format!(
        "INSERT INTO queue_fences (event_id, token) VALUES ({event_id}, 10)"
    ))
    .await
    .expect("a fence ahead of Redis");
    let alice = app.token("alice");
    let body = retrying(|| {
        app.gql(
            Some(&alice),
            REQUEST_SEATS,
            json!({"e": event_id, "s": [seats[0]], "k": "req-0"}),
        )
    })
    .await;
    let id = data(&body, "requestSeats")["id"]
        .as_str()
        .expect("request id")
        .to_owned();
    let answer = wait_for("the request answered", Duration::from_secs(20), || async {
        let body = app.gql(Some(&alice), SEAT_REQUEST, json!({"id": id})).await;
        let request = data(&body, "seatRequest").clone();
        (request["status"] != "QUEUED").then_some(request)
    })
    .await;
    assert_eq!(answer["status"], "DONE", "{answer}");
    assert_eq!(answer["hold"]["seats"][0]["id"], seats[0]);
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "HELD");
    let fence = one_i64(
        &db,
        format!("SELECT token FROM queue_fences WHERE event_id = {event_id}"),
        "token",
    )
    .await;
    assert_eq!(fence, Some(11));
    assert_eq!(counter(&app.metrics().await, QUEUE_LEASES_LOST), 1);
    app.stop().await;
}

/// The fence itself, on both databases: the newest token passes (again and again), an older
/// one is refused and changes nothing.
async fn the_fence_refuses_older_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (event_id, _) = app.create_event(1, 1).await;
    let event_id: i64 = event_id.parse().expect("numeric id");
    let db = Database::connect(app.database_url.as_str())
        .await
        .expect("db");
    let pass = |token: i64| {
        let db = db.clone();
        async move {
            onsale::db::fence::pass_queue_fence(&db, event_id, token)
                .await
                .map_err(|e| e.to_string())
        }
    };
    assert_eq!(pass(1).await, Ok(()));
    assert_eq!(pass(3).await, Ok(()));
    assert_eq!(pass(3).await, Ok(()));
    assert_eq!(
        pass(2).await,
        Err("the lease of the request queue was taken over".to_owned())
    );
    assert_eq!(
        onsale::db::fence::queue_fence(&db, event_id)
            .await
            .map_err(|e| e.to_string()),
        Ok(Some(3))
    );
    app.stop().await;
}

crate::both_backends!(
    the_fence_refuses_older_tokens_on,
    the_fence_refuses_older_tokens
);

/// A checkout's row, as the outbox leaves it.
async fn checkout_row(db: &DatabaseConnection, hold_id: &str) -> Value {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT state, attempts, last_error, next_attempt_at_ms, updated_at_ms, \
                 lease_token FROM checkouts WHERE hold_id = '{hold_id}'"
            ),
        ))
        .await
        .expect("query")
        .expect("checkout row");
    json!({
        "state": row.try_get::<String>("", "state").expect("state"),
        "attempts": row.try_get::<i32>("", "attempts").expect("attempts"),
        "last_error": row.try_get::<Option<String>>("", "last_error").expect("last_error"),
        "next_attempt_at_ms": row.try_get::<i64>("", "next_attempt_at_ms").expect("next"),
        "updated_at_ms": row.try_get::<i64>("", "updated_at_ms").expect("updated"),
        "lease_token": row.try_get::<Option<i64>>("", "lease_token").expect("token"),
    })
}

/// Instance A's capture call hangs (a Stripe in front of localstripe that holds captures
/// until told); its lease runs out (moved into the past, as time would) and instance B takes
/// the capture over and finishes it. When A's call finally returns, A's lease token is no
/// longer the checkout's: A writes nothing, and the lost lease is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkout_step_whose_lease_was_taken_over_writes_nothing() {
    use crate::payments::{COMPLETE, bookings, held_and_started, intent_status, pay, payments};
    let proxy = CaptureProxy::start(crate::payments::stripe_base(), Captures::Held).await;
    // A's worker never runs a pass of its own: only the step `completeCheckout` makes.
    let a = TestApp::spawn_with(
        Backend::Postgres,
        payments(&proxy.base).set("CHECKOUT_WORKER_INTERVAL_MS", 3_600_000),
    )
    .await;
    let alice = a.token("alice");
    let (event_id, seats, hold_id, _, intent) = held_and_started(&a, &alice).await;
    assert_eq!(pay(&a.client, &intent, "pm_card_visa").await, 200);
    let completing = {
        let (client, base, alice, hold_id) = (
            a.client.clone(),
            a.base.clone(),
            alice.clone(),
            hold_id.clone(),
        );
        tokio::spawn(async move {
            client
                .post(format!("{base}/graphql"))
                .bearer_auth(alice)
                .json(&json!({"query": COMPLETE, "variables": {"h": hold_id}}))
                .send()
                .await
                .expect("sent")
                .json::<Value>()
                .await
                .expect("json")
        })
    };
    wait_until("A calls capture", Duration::from_secs(15), || async {
        proxy.captures() == 1
    })
    .await;
    let db = Database::connect(a.database_url.as_str())
        .await
        .expect("db");
    let under_a = checkout_row(&db, &hold_id).await;
    assert_eq!(under_a["state"], "BOOKED");
    let a_token = under_a["lease_token"].as_i64().expect("A's lease token");

    // A's lease runs out; B takes the capture over and finishes it.
    db.execute_unprepared(&format!(
        "UPDATE checkouts SET next_attempt_at_ms = 0 WHERE hold_id = '{hold_id}'"
    ))
    .await
    .expect("lease ran out");
    let b = TestApp::spawn_on(&a.database_url, payments(&crate::payments::stripe_base())).await;
    let finished = wait_for("B captures", Duration::from_secs(15), || async {
        let row = checkout_row(&db, &hold_id).await;
        (row["state"] == "CAPTURED").then_some(row)
    })
    .await;
    assert_ne!(finished["lease_token"].as_i64(), Some(a_token));
    assert_eq!(intent_status(&a.client, &intent).await, "succeeded");

    // A's call returns at last: A's step ends without writing anything.
    proxy.let_go();
    wait_until(
        "A finds its checkout lease taken over",
        Duration::from_secs(15),
        || async { counter(&a.metrics().await, CHECKOUT_LEASES_LOST) >= 1 },
    )
    .await;
    let body = completing.await.expect("completeCheckout");
    assert_eq!(data(&body, "completeCheckout")["status"], "CONFIRMED");
    assert_eq!(checkout_row(&db, &hold_id).await, finished);
    assert_eq!(counter(&a.metrics().await, CHECKOUT_LEASES_LOST), 1);
    let booked = bookings(&b, &alice).await;
    assert_eq!(booked.len(), 1);
    assert_eq!(booked[0]["status"], "CONFIRMED");
    assert_eq!(b.seat_statuses(&event_id).await[&seats[0]], "BOOKED");
    b.stop().await;
    a.stop().await;
}

const CHECKOUT_LEASES_LOST: &str = r#"onsale_leases_lost_total{lease="checkout"}"#;

/// A delivery's row, as the delivery worker leaves it.
async fn delivery_row(db: &DatabaseConnection, endpoint_id: &str) -> Value {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT status, attempts, last_status_code, next_attempt_at_ms, updated_at_ms, \
                 lease_until_ms, leased_by, lease_token FROM webhook_deliveries \
                 WHERE endpoint_id = '{endpoint_id}'"
            ),
        ))
        .await
        .expect("query")
        .expect("one delivery");
    json!({
        "status": row.try_get::<String>("", "status").expect("status"),
        "attempts": row.try_get::<i32>("", "attempts").expect("attempts"),
        "last_status_code": row.try_get::<Option<i32>>("", "last_status_code").expect("code"),
        "next_attempt_at_ms": row.try_get::<i64>("", "next_attempt_at_ms").expect("next"),
        "updated_at_ms": row.try_get::<i64>("", "updated_at_ms").expect("updated"),
        "lease_until_ms": row.try_get::<Option<i64>>("", "lease_until_ms").expect("until"),
        "leased_by": row.try_get::<Option<String>>("", "leased_by").expect("by"),
        "lease_token": row.try_get::<Option<i64>>("", "lease_token").expect("token"),
    })
}

/// Instance A's webhook attempt hangs at the endpoint; its lease runs out (moved into the
/// past, as time would) and instance B takes the delivery over and delivers it. When A's
/// attempt finally gets its 200, A's lease is gone: A records nothing, the delivery stays as
/// B recorded it (one attempt, DELIVERED), and the lost lease is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_attempt_whose_lease_was_taken_over_records_nothing() {
    use crate::webhooks::{endpoint, webhook_options};
    let receiver = HeldReceiver::start().await;
    let a = TestApp::spawn_with(Backend::Postgres, webhook_options(Options::default())).await;
    let (endpoint_id, _) = endpoint(&a, &receiver.url, json!(["booking.confirmed"])).await;
    let (event_id, seats) = a.create_event(1, 2).await;
    crate::backoffice_connections::book(&a, "alice", &event_id, &seats[0]).await;
    wait_until("A's attempt arrives", Duration::from_secs(15), || async {
        receiver.arrived() == 1
    })
    .await;
    let db = Database::connect(a.database_url.as_str())
        .await
        .expect("db");
    let under_a = delivery_row(&db, &endpoint_id).await;
    assert_eq!(under_a["status"], "PENDING");
    let a_token = under_a["lease_token"].as_i64().expect("A's lease token");

    // A's lease runs out; B leases the delivery again and delivers it.
    db.execute_unprepared(&format!(
        "UPDATE webhook_deliveries SET lease_until_ms = 0 WHERE endpoint_id = '{endpoint_id}'"
    ))
    .await
    .expect("lease ran out");
    let b = TestApp::spawn_on(&a.database_url, webhook_options(Options::default())).await;
    let delivered = wait_for("B delivers", Duration::from_secs(15), || async {
        let row = delivery_row(&db, &endpoint_id).await;
        (row["status"] == "DELIVERED").then_some(row)
    })
    .await;
    assert_eq!(receiver.arrived(), 2);
    assert_eq!(delivered["attempts"], 1);
    assert_ne!(delivered["lease_token"].as_i64(), Some(a_token));

    // A's attempt gets its answer at last, and records nothing.
    receiver.let_go();
    wait_until(
        "A finds its webhook lease taken over",
        Duration::from_secs(15),
        || async { counter(&a.metrics().await, WEBHOOK_LEASES_LOST) >= 1 },
    )
    .await;
    assert_eq!(delivery_row(&db, &endpoint_id).await, delivered);
    assert_eq!(counter(&a.metrics().await, WEBHOOK_LEASES_LOST), 1);
    b.stop().await;
    a.stop().await;
}

const WEBHOOK_LEASES_LOST: &str = r#"onsale_leases_lost_total{lease="webhook"}"#;

/// A webhook endpoint that holds the first request until [`Self::let_go`] and answers every
/// request 200.
struct HeldReceiver {
    url: String,
    arrived: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl HeldReceiver {
    async fn start() -> Self {
        let arrived = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (count, shut) = (arrived.clone(), gate.clone());
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let (count, shut) = (count.clone(), shut.clone());
                async move {
                    if count.fetch_add(1, Ordering::SeqCst) == 0 {
                        let _ = shut.acquire().await;
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url,
            arrived,
            gate,
            task,
        }
    }

    fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    fn let_go(&self) {
        self.gate.add_permits(1);
    }
}

impl Drop for HeldReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The queue fence on PostgreSQL, statement by statement: one holder's transactions pass it
/// side by side (each shares the row), a newer token raises it only once the older holder's
/// transactions in flight have ended, and from then on the older token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_fence_lets_one_holder_in_at_a_time() {
    use migration::{Migrator, MigratorTrait};
    use onsale::db::fence::{pass_queue_fence, queue_fence};
    use onsale::error::AppError;
    use sea_orm::TransactionTrait;

    let url = fresh_pg_database().await;
    let db = Database::connect(url.as_str()).await.expect("db");
    Migrator::up(&db, None).await.expect("migrate");
    let app = TestApp::spawn_on(&url, Options::default()).await;
    let (event_id, _) = app.create_event(1, 1).await;
    let event_id: i64 = event_id.parse().expect("event id");

    // The event's first queued request makes the fence row.
    let txn = db.begin().await.expect("begin");
    pass_queue_fence(&txn, event_id, 1).await.expect("token 1");
    txn.commit().await.expect("commit");
    // Then two transactions of holder 1 pass together (neither waits for the other).
    let first = db.begin().await.expect("begin");
    pass_queue_fence(&first, event_id, 1)
        .await
        .expect("token 1");
    let second = db.begin().await.expect("begin");
    tokio::time::timeout(
        Duration::from_secs(5),
        pass_queue_fence(&second, event_id, 1),
    )
    .await
    .expect("the holder's second transaction does not wait for its first")
    .expect("token 1 again");
    second.commit().await.expect("commit");

    // Holder 2's first transaction waits until holder 1's in flight has ended.
    let raised = tokio::spawn({
        let db = db.clone();
        async move {
            let txn = db.begin().await.expect("begin");
            pass_queue_fence(&txn, event_id, 2).await.expect("token 2");
            let at = Instant::now();
            txn.commit().await.expect("commit");
            at
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!raised.is_finished(), "the raise waited for holder 1");
    let ended = Instant::now();
    first.commit().await.expect("commit");
    let raised_at = raised.await.expect("raise");
    assert!(
        raised_at >= ended,
        "raised only after holder 1's transaction ended"
    );
    assert_eq!(queue_fence(&db, event_id).await.expect("read"), Some(2));

    // Holder 1 is refused from now on; holder 2 passes.
    let late = db.begin().await.expect("begin");
    let refused = pass_queue_fence(&late, event_id, 1).await;
    assert!(
        matches!(refused, Err(AppError::LeaseLost(_))),
        "{refused:?}"
    );
    late.rollback().await.expect("rollback");
    let txn = db.begin().await.expect("begin");
    pass_queue_fence(&txn, event_id, 2)
        .await
        .expect("token 2 again");
    txn.commit().await.expect("commit");
    app.stop().await;
}
