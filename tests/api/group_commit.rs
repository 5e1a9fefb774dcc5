//! Group commit (src/db/group.rs): many writers of one event, batched, keep every promise of
//! `seq` — one change per committed hold, 1..N without gap or duplicate on every instance —
//! and a member that fails leaves the rest of its batch with their own answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;
use crate::ws::{Protocol, Subscription};

/// The mean batch size so far, from the instance's metrics (`_sum / _count`).
async fn mean_batch(app: &TestApp) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let read = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let count = read("onsale_group_commit_members_count");
    if count == 0.0 {
        0.0
    } else {
        read("onsale_group_commit_members_sum") / count
    }
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
        .set("GROUP_COMMIT", "on")
        .set("REDIS_URL", redis_url())
        .set("MAX_INFLIGHT_MUTATIONS", 4_096);
    let a = Arc::new(TestApp::spawn_with(Backend::Postgres, options.clone()).await);
    let b = Arc::new(TestApp::spawn_on(&a.database_url, options).await);
    let (event_id, seats) = a.create_event(40, SEATS / 40).await;
    assert_eq!(seats.len(), SEATS);
    // 2,000 holds, 256 in flight at a time: enough to fill batches on both instances, not so
    // many that a debug build on a busy machine answers mostly RETRY_LATER.
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
    let batched = (mean_batch(&a).await, mean_batch(&b).await);
    println!(
        "mean batch size: instance A {:.2}, instance B {:.2}",
        batched.0, batched.1
    );
    assert!(batched.0 >= 1.0 && batched.1 >= 1.0, "{batched:?}");

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

both_backends!(
    members_that_fail_inside_a_batch_leave_the_others_their_answers,
    |backend| async move {
        const PAIRS: usize = 30;
        // Without the seat gate, so that every request reaches the database and conflicts are
        // decided inside the batches (the gate would turn some away before, while a request that
        // later fails still claims its seat).
        let options = Options::default()
            .set("GROUP_COMMIT", "on")
            .set("MAX_HOLDS_PER_USER", 1)
            .set("SEAT_GATE", "off");
        let app = Arc::new(TestApp::spawn_with(backend, options).await);
        let (event_id, seats) = app.create_event(2, PAIRS).await;
        // Requests that pass the check without locks together and conflict only inside the write:
        // X_i and Y_i both want seat i; X_i also wants seat PAIRS + i, as does Z_i. A buyer may
        // have one active hold, so at most one of X_i's two requests can win.
        let mut tasks = Vec::new();
        for i in 0..PAIRS {
            for (buyer, seat) in [
                (format!("x{i}"), &seats[i]),
                (format!("y{i}"), &seats[i]),
                (format!("x{i}"), &seats[PAIRS + i]),
                (format!("z{i}"), &seats[PAIRS + i]),
            ] {
                let (app, event_id, seat) = (app.clone(), event_id.clone(), seat.clone());
                tasks.push(tokio::spawn(async move {
                    let token = app.token(&buyer);
                    let ids = [seat.as_str()];
                    let body = retrying(|| app.hold_seats(&token, &event_id, &ids)).await;
                    (buyer, seat, body)
                }));
            }
        }
        let mut winners: HashMap<String, String> = HashMap::new();
        let mut holds_per_buyer: HashMap<String, usize> = HashMap::new();
        for task in tasks {
            let (buyer, seat, body) = task.await.expect("task");
            match error_code(&body).as_deref() {
                None => {
                    let got = data(&body, "holdSeats")["seats"][0]["id"]
                        .as_str()
                        .map(str::to_owned);
                    assert_eq!(got.as_deref(), Some(seat.as_str()), "{body}");
                    assert!(
                        winners.insert(seat.clone(), buyer.clone()).is_none(),
                        "{seat} held twice"
                    );
                    *holds_per_buyer.entry(buyer).or_default() += 1;
                }
                Some("SEAT_UNAVAILABLE") => {}
                // The per-buyer limit, decided inside the same transaction.
                Some("BAD_USER_INPUT" | "LIMIT_EXCEEDED") if buyer.starts_with('x') => {}
                other => panic!("{buyer} {seat}: {other:?}: {body}"),
            }
        }
        assert!(
            holds_per_buyer.values().all(|n| *n == 1),
            "{holds_per_buyer:?}"
        );
        // Y_i loses seat i only to X_i and Z_i loses seat PAIRS + i only to X_i: every seat is held.
        assert_eq!(winners.len(), 2 * PAIRS, "{winners:?}");
        let statuses = app.statuses(&event_id).await;
        assert!(
            statuses
                .order
                .iter()
                .all(|id| statuses.status[id] == "HELD")
        );
        assert_eq!(app.seat_map(&event_id).await["seq"], 2 * PAIRS as i64);
        println!("mean batch size {:.2}", mean_batch(&app).await);
    }
);
