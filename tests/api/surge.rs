//! Surges: the seat gate in front of the database, Redis failing under it, claims left by a
//! crashed instance, and load shedding.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::*;

async fn storm(app: &TestApp, event_id: &str, seat: &str, users: usize) -> HashMap<String, usize> {
    let body = json!({"query": HOLD_SEATS, "variables": {"e": event_id, "s": [seat]}});
    let tokens: Vec<String> = (0..users).map(|i| app.token(&format!("fan-{i}"))).collect();
    let results = join_all(tokens.iter().map(|t| app.post(Some(t), &body))).await;
    tally(&results)
}

/// 1,000 parallel requests for one seat through the Redis gate: one winner, the rest a clean
/// SEAT_UNAVAILABLE (or RETRY_LATER), nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gate_one_winner_among_a_thousand() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options::default().set("REDIS_URL", redis_url()),
    )
    .await;
    let (event_id, seats) = app.create_event(1, 4).await;
    let counts = storm(&app, &event_id, &seats[0], 1000).await;
    println!("gate storm answers: {counts:?}");
    assert_eq!(counts.get("OK"), Some(&1), "{counts:?}");
    assert_eq!(
        counts.get("SEAT_UNAVAILABLE").unwrap_or(&0) + counts.get("RETRY_LATER").unwrap_or(&0),
        999,
        "{counts:?}"
    );
    assert_eq!(app.seat_map(&event_id).await["event"]["held"], 1);
    app.stop().await;
}

/// Redis dies in the middle of a storm: the breaker bypasses the gate, the database still
/// decides, so there is still exactly one winner and no INTERNAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_dying_mid_storm_still_one_winner() {
    let mut redis = OwnRedis::start(free_port());
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options::default().set("REDIS_URL", redis.url()),
    )
    .await;
    let (event_id, seats) = app.create_event(1, 4).await;
    let body = json!({"query": HOLD_SEATS, "variables": {"e": event_id, "s": [seats[1]]}});
    let tokens: Vec<String> = (0..600).map(|i| app.token(&format!("fan-{i}"))).collect();
    let (results, ()) = tokio::join!(
        join_all(tokens.iter().map(|t| app.post(Some(t), &body))),
        async {
            // The point: Redis dies while the storm is in flight.
            tokio::time::sleep(Duration::from_millis(20)).await;
            redis.kill();
        }
    );
    let counts = tally(&results);
    println!("storm with Redis dying: {counts:?}");
    assert_eq!(counts.get("OK"), Some(&1), "{counts:?}");
    assert!(!counts.contains_key("INTERNAL"), "{counts:?}");
    // With Redis gone, other seats are still held fine.
    let body = app
        .hold_seats(&app.token("late"), &event_id, &[&seats[2]])
        .await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    assert_eq!(app.seat_map(&event_id).await["event"]["held"], 2);
    app.stop().await;
}

/// A claim left in Redis by a crashed instance blocks the seat only until its TTL runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_of_a_crashed_instance_expires() {
    let redis_url = redis_url();
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options::default().set("REDIS_URL", &redis_url),
    )
    .await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let client = redis::Client::open(redis_url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = onsale::booking::gate::keys(
        &redis_namespace(&app).await,
        event_id.parse().expect("id"),
        &[seats[0].parse().expect("id")],
    )
    .remove(0);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("token-of-a-dead-instance")
        .arg("PX")
        .arg(1500)
        .query_async(&mut conn)
        .await
        .expect("set");
    let body = app
        .hold_seats(&app.token("alice"), &event_id, &[&seats[0]])
        .await;
    assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE", "claimed right now");
    wait_until(
        "the dead instance's claim runs out",
        Duration::from_secs(5),
        || gate_free(&conn, &key),
    )
    .await;
    let body = app
        .hold_seats(&app.token("alice"), &event_id, &[&seats[0]])
        .await;
    assert_eq!(
        data(&body, "holdSeats")["status"],
        "ACTIVE",
        "free once the claim ran out"
    );
    // Our own claim was released (compare-and-delete), well before its TTL would end it.
    wait_until(
        "our own claim is deleted",
        Duration::from_millis(onsale::booking::gate::CLAIM_TTL_MS as u64 / 2),
        || gate_free(&conn, &key),
    )
    .await;
    app.stop().await;
}

/// Whether nobody holds a claim on the gate's `key`.
async fn gate_free(conn: &redis::aio::MultiplexedConnection, key: &str) -> bool {
    let holder: Option<String> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn.clone())
        .await
        .expect("get");
    holder.is_none()
}

/// With a tiny in-flight limit, excess mutations are refused at once with RETRY_LATER and
/// succeed when retried after the storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_shed_with_retry_later() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options::default().set("MAX_INFLIGHT_MUTATIONS", 2),
    )
    .await;
    let (event_id, seats) = app.create_event(4, 10).await;
    let requests: Vec<(String, Value)> = seats
        .iter()
        .enumerate()
        .map(|(i, seat)| {
            (
                app.token(&format!("u{i}")),
                json!({"query": HOLD_SEATS, "variables": {"e": event_id, "s": [seat]}}),
            )
        })
        .collect();
    let results = join_all(requests.iter().map(|(t, b)| app.post(Some(t), b))).await;
    let counts = tally(&results);
    println!("overload answers: {counts:?}");
    assert!(
        counts.get("RETRY_LATER").is_some_and(|n| *n > 0),
        "some were shed: {counts:?}"
    );
    assert_eq!(
        counts.get("OK").unwrap_or(&0) + counts.get("RETRY_LATER").unwrap_or(&0),
        40,
        "{counts:?}"
    );
    for ((token, body), (_, answer)) in requests.iter().zip(&results) {
        if error_code(answer).as_deref() == Some("RETRY_LATER") {
            assert!(
                answer["errors"][0]["extensions"]["retryAfterMs"]
                    .as_u64()
                    .is_some_and(|ms| ms > 0)
            );
            let retried = retrying(|| async { app.post(Some(token), body).await.1 }).await;
            assert_eq!(data(&retried, "holdSeats")["status"], "ACTIVE");
        }
    }
    assert_eq!(app.seat_map(&event_id).await["event"]["held"], 40);
    app.stop().await;
}
