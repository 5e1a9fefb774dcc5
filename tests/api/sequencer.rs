//! Seat changes numbered after their commit (src/realtime/sequencer.rs, PostgreSQL): many
//! writers of one event on two instances keep every promise of `seq` — one change per
//! committed write, 1..N without gap or duplicate, one seat's changes in the order they
//! happened, the map equal to the replay of the log, on every instance — and changes a writer
//! left without a number (it died after its commit) are numbered by the sweep.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws::{Protocol, Subscription};

/// The mean size of a numbering run so far, from the instance's metrics.
async fn mean_batch(app: &TestApp) -> f64 {
    histogram_mean(&app.metrics().await, "onsale_sequencer_batch_changes").0
}

/// Every change of `event_id` from `afterSeq: 0`, read on `app` until `n` have arrived.
async fn replay(app: &TestApp, event_id: &str, n: usize) -> Vec<Value> {
    let mut sub =
        Subscription::seat_changes(&app.base, Protocol::TransportWs, event_id, Some(0)).await;
    let mut changes = Vec::with_capacity(n);
    while changes.len() < n {
        changes.push(sub.next_change(Duration::from_secs(10)).await);
    }
    // Nothing more than the committed changes arrives.
    assert!(
        sub.next(Duration::from_millis(300)).await.is_none(),
        "a change beyond the {n} committed"
    );
    sub.close().await;
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_holds_through_two_instances_number_every_change_once() {
    const SEATS: usize = 2_000;
    const HOLD_WITH_KEY: &str = "mutation($e: ID!, $s: [ID!]!, $k: String) { holdSeats(eventId: $e, seatIds: $s, idempotencyKey: $k) { id seats { id } } }";
    let options = Options::default()
        .set("REDIS_URL", redis_url())
        .set("MAX_INFLIGHT_MUTATIONS", 4_096);
    let a = Arc::new(TestApp::spawn_with(Backend::Postgres, options.clone()).await);
    let b = Arc::new(TestApp::spawn_on(&a.database_url, options).await);
    let (event_id, seats) = a.create_event(40, SEATS / 40).await;
    assert_eq!(seats.len(), SEATS);
    // 2,000 holds, 256 in flight at a time: enough that numbering runs batch on both
    // instances, not so many that a debug build on a busy machine answers mostly RETRY_LATER.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
    let tasks: Vec<_> = seats
        .iter()
        .enumerate()
        .map(|(i, seat)| {
            let app = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (event_id, seat) = (event_id.clone(), seat.clone());
            let in_flight = in_flight.clone();
            tokio::spawn(async move {
                let _slot = in_flight.acquire_owned().await.expect("semaphore");
                let token = app.token(&format!("buyer-{i}"));
                // Retried with one idempotency key: an attempt that committed after its
                // request gave up is answered, not refused as taken.
                let vars = json!({"e": event_id, "s": [seat], "k": format!("k-{i}")});
                let body = retrying(|| app.gql(Some(&token), HOLD_WITH_KEY, vars.clone())).await;
                (seat, body)
            })
        })
        .collect();
    let mut held = Vec::new();
    for task in tasks {
        let (seat, body) = task.await.expect("task");
        match error_code(&body) {
            None => held.push(seat),
            Some(code) => panic!("seat {seat}: {code}: {body}"),
        }
    }
    assert_eq!(held.len(), SEATS, "every distinct seat is held once");
    println!(
        "mean numbering batch: instance A {:.2}, instance B {:.2}",
        mean_batch(&a).await,
        mean_batch(&b).await
    );

    for app in [&a, &b] {
        let changes = replay(app, &event_id, SEATS).await;
        let seqs: Vec<i64> = changes
            .iter()
            .map(|c| c["seq"].as_i64().expect("seq"))
            .collect();
        assert_eq!(
            seqs,
            (1..=SEATS as i64).collect::<Vec<_>>(),
            "seq 1..N in order"
        );
        let mut per_seat: HashMap<&str, usize> = HashMap::new();
        for change in &changes {
            assert_eq!(change["status"], "HELD", "{change}");
            *per_seat
                .entry(change["seatId"].as_str().expect("seat"))
                .or_default() += 1;
        }
        assert_eq!(per_seat.len(), SEATS);
        assert!(per_seat.values().all(|n| *n == 1), "one change per hold");
        // The map equals the replay of the log.
        let replayed: BTreeMap<String, String> = changes
            .iter()
            .map(|c| {
                (
                    c["seatId"].as_str().expect("id").to_owned(),
                    c["status"].as_str().expect("s").to_owned(),
                )
            })
            .collect();
        let map = app.statuses(&event_id).await;
        let mapped: BTreeMap<String, String> = map
            .order
            .iter()
            .map(|id| (id.clone(), map.status[id].clone()))
            .collect();
        assert_eq!(mapped, replayed);
        assert_eq!(app.seat_map(&event_id).await["seq"], SEATS as i64);
    }
}

/// The log's changes as (seat, status) per seat, in seq order, checking seq is 1..N.
fn per_seat(changes: &[Value]) -> BTreeMap<String, Vec<String>> {
    let seqs: Vec<i64> = changes
        .iter()
        .map(|c| c["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=changes.len() as i64).collect::<Vec<_>>(),
        "seq 1..N in order"
    );
    let mut seats: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in changes {
        seats
            .entry(c["seatId"].as_str().expect("seat").to_owned())
            .or_default()
            .push(c["status"].as_str().expect("status").to_owned());
    }
    seats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_seats_changes_keep_their_order_across_two_instances() {
    const SEATS: usize = 20;
    const ROUNDS: usize = 10;
    let options = Options::default()
        .set("REDIS_URL", redis_url())
        .set("MAX_INFLIGHT_MUTATIONS", 4_096);
    let a = Arc::new(TestApp::spawn_with(Backend::Postgres, options.clone()).await);
    let b = Arc::new(TestApp::spawn_on(&a.database_url, options).await);
    let (event_id, seats) = a.create_event(1, SEATS).await;
    // Every seat held and released ROUNDS times by its own buyer, alternating instances, all
    // seats at once: numbering runs mix the changes of many seats and both instances.
    let tasks: Vec<_> = seats
        .iter()
        .enumerate()
        .map(|(i, seat)| {
            let (a, b, event_id, seat) = (a.clone(), b.clone(), event_id.clone(), seat.clone());
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let (first, second) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
                    let token = first.token(&format!("buyer-{i}"));
                    let ids = [seat.as_str()];
                    let held = retrying(|| first.hold_seats(&token, &event_id, &ids)).await;
                    let hold = hold_id(&held);
                    let released =
                        retrying(|| second.gql(Some(&token), RELEASE_HOLD, json!({"h": hold})))
                            .await;
                    assert_eq!(error_code(&released), None, "{released}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let n = SEATS * ROUNDS * 2;
    for app in [&a, &b] {
        let seats_log = per_seat(&replay(app, &event_id, n).await);
        assert_eq!(seats_log.len(), SEATS);
        let expected: Vec<String> = (0..ROUNDS)
            .flat_map(|_| ["HELD".to_owned(), "AVAILABLE".to_owned()])
            .collect();
        for (seat, log) in &seats_log {
            assert_eq!(log, &expected, "seat {seat}: its changes out of order");
        }
        assert_eq!(app.seat_map(&event_id).await["seq"], n as i64);
    }
    println!(
        "mean numbering batch: instance A {:.2}, instance B {:.2}",
        mean_batch(&a).await,
        mean_batch(&b).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_a_dead_writer_left_without_numbers_are_numbered_by_the_sweep() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options::default().set("SWEEP_INTERVAL_MS", 200),
    )
    .await;
    let (event_id, seats) = app.create_event(1, 3).await;
    let alice = app.token("alice");
    data(
        &app.hold_seats(&alice, &event_id, &[&seats[0]]).await,
        "holdSeats",
    );
    let mut sub =
        Subscription::seat_changes(&app.base, Protocol::TransportWs, &event_id, Some(0)).await;
    let first = sub.next_change(Duration::from_secs(5)).await;
    assert_eq!(
        (first["seq"].as_i64(), first["status"].as_str()),
        (Some(1), Some("HELD"))
    );
    // What a block of seat 2 commits on PostgreSQL, from a writer that then died before its
    // numbering run: the seat's new state and its change without a seq.
    let conn = Database::connect(app.database_url.as_str())
        .await
        .expect("connect");
    conn.execute_unprepared(&format!(
        "BEGIN; UPDATE seats SET blocked = true WHERE id = {seat}; \
         INSERT INTO seat_change_pending (event_id, seat_id, status, hold_expires_at_ms, created_at_ms) \
         VALUES ({event_id}, {seat}, 'BLOCKED', NULL, 0); COMMIT;",
        seat = seats[1]
    ))
    .await
    .expect("the dead writer's commit");
    // Nobody else writes: the sweep numbers it, and subscribers get it as seq 2.
    let second = sub.next_change(Duration::from_secs(5)).await;
    assert_eq!(
        (
            second["seq"].as_i64(),
            second["seatId"].as_str(),
            second["status"].as_str()
        ),
        (Some(2), Some(seats[1].as_str()), Some("BLOCKED"))
    );
    assert_eq!(app.seat_map(&event_id).await["seq"], 2);
    let left = conn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM seat_change_pending",
        ))
        .await
        .expect("count")
        .expect("row");
    assert_eq!(left.try_get::<i64>("", "n").expect("n"), 0);
    // Numbering goes on from there.
    data(
        &app.hold_seats(&alice, &event_id, &[&seats[2]]).await,
        "holdSeats",
    );
    let third = sub.next_change(Duration::from_secs(5)).await;
    assert_eq!(
        (third["seq"].as_i64(), third["status"].as_str()),
        (Some(3), Some("HELD"))
    );
    sub.close().await;
}
