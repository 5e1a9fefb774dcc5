//! The waiting room and queued booking, against real Redis and PostgreSQL, on two instances:
//! the lottery at the opening and the pace of admissions, admissions in front of holds, the
//! request queue answered strictly in arrival order through a worker's death, and a room
//! failing closed when Redis is lost.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws::{Protocol, Subscription};

use ops::{
    CONFIGURE_WAITING_ROOM as CONFIGURE, JOIN_QUEUE as JOIN, QUEUE_STATUS, REQUEST_SEATS,
    SEAT_REQUEST, SEAT_REQUEST_UPDATES, WAITING_ROOM as ROOM,
};

pub(crate) fn with_redis(url: &str) -> Options {
    Options::default().set("REDIS_URL", url)
}

pub(crate) async fn configure(
    app: &TestApp,
    event_id: &str,
    enabled: bool,
    opens_at: Option<chrono::DateTime<Utc>>,
    rate: i32,
    ttl: i32,
) -> Value {
    let input = ops::WaitingRoomInput {
        enabled,
        opens_at: opens_at.map(|t| t.to_rfc3339()),
        admit_per_second: rate.into(),
        admission_ttl_secs: ttl.into(),
    };
    app.gql(
        Some(&app.admin_token()),
        CONFIGURE,
        ops::vars::configure_waiting_room(event_id, &input),
    )
    .await
}

pub(crate) async fn join(app: &TestApp, token: &str, event_id: &str) -> Value {
    retrying(|| app.gql(Some(token), JOIN, json!({"e": event_id}))).await
}

/// POSTs an operation with an optional admission header.
pub(crate) async fn post_admitted(
    app: &TestApp,
    token: &str,
    admission: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}));
    if let Some(admission) = admission {
        req = req.header("x-admission-token", admission);
    }
    let resp = req.send().await.expect("request sent");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("json body")
}

pub(crate) fn message(body: &Value) -> String {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub(crate) async fn admin_room(app: &TestApp, event_id: &str) -> Value {
    let body = app
        .gql(Some(&app.admin_token()), ROOM, json!({"e": event_id}))
        .await;
    data(&body, "waitingRoom").clone()
}

/// Follows a ticket until its admission (or `limit`); returns each update with its time.
/// Tells `live` (if given) once the first update has come: the subscription is running.
async fn follow(
    base: String,
    token: String,
    ticket: String,
    limit: Duration,
    live: Option<tokio::sync::mpsc::UnboundedSender<()>>,
) -> Vec<(Instant, Value)> {
    let mut sub = Subscription::start(
        &base,
        Protocol::TransportWs,
        json!({"Authorization": format!("Bearer {token}")}),
        QUEUE_STATUS,
        json!({"t": ticket}),
    )
    .await;
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < limit {
        let Some(payload) = sub.next(limit.saturating_sub(started.elapsed())).await else {
            break;
        };
        if let Some(live) = &live {
            let _ = live.send(());
        }
        if error_code(&payload).as_deref() == Some("RETRY_LATER") {
            continue;
        }
        assert!(payload["errors"].is_null(), "queueStatus error: {payload}");
        let status = payload["data"]["queueStatus"].clone();
        let admitted = status["admitted"] == true;
        seen.push((Instant::now(), status));
        if admitted {
            break;
        }
    }
    sub.close().await;
    seen
}

/// Spearman's rank correlation of two permutations of 1..=n.
fn rank_correlation(pairs: &[(i64, i64)]) -> f64 {
    let n = pairs.len() as f64;
    let d2: f64 = pairs.iter().map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// 2,000 people join before the opening through two instances: distinct arrival numbers;
/// at the opening a lottery gives them distinct places unrelated to when they came; they are
/// let in at the configured pace (once for both instances, within a tick), in lottery order,
/// and nobody's position ever goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lottery_at_the_opening_then_paced_admissions_across_instances() {
    const N: usize = 2_000;
    const RATE: i32 = 400;
    let redis = redis_url();
    let a = TestApp::spawn_with(Backend::Postgres, with_redis(&redis)).await;
    let b = TestApp::spawn_on(&a.database_url, with_redis(&redis)).await;
    let (event_id, _) = a.create_event(1, 10).await;
    let later = Utc::now() + chrono::Duration::hours(1);
    let room = configure(&a, &event_id, true, Some(later), RATE, 600).await;
    assert_eq!(data(&room, "configureWaitingRoom")["enabled"], true);

    let tokens: Vec<String> = (0..N).map(|i| a.token(&format!("fan-{i}"))).collect();
    let t0 = Instant::now();
    let joined = join_all(tokens.iter().enumerate().map(|(i, t)| {
        let app = if i.is_multiple_of(2) { &a } else { &b };
        join(app, t, &event_id)
    }))
    .await;
    println!("{N} joins took {:?}", t0.elapsed());
    let tickets: Vec<Value> = joined
        .iter()
        .map(|body| data(body, "joinQueue").clone())
        .collect();
    let arrivals: Vec<i64> = tickets
        .iter()
        .map(|t| t["position"].as_i64().expect("position"))
        .collect();
    let distinct: HashSet<i64> = arrivals.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        N,
        "every early arrival has its own position"
    );
    assert_eq!(distinct, (1..=N as i64).collect(), "positions are 1..=N");
    assert!(
        tickets
            .iter()
            .all(|t| t["waitingForOpening"] == true && t["admitted"] == false)
    );
    // Joining twice gives the same ticket.
    let again = data(&join(&b, &tokens[0], &event_id).await, "joinQueue").clone();
    assert_eq!(again["id"], tickets[0]["id"]);
    assert_eq!(again["position"], tickets[0]["position"]);

    // Some people watch their place live, on both instances.
    let watched: Vec<usize> = (0..N).step_by(N / 24).collect();
    let (live, mut following) = tokio::sync::mpsc::unbounded_channel();
    let followers: Vec<_> = watched
        .iter()
        .map(|&i| {
            let base = if i.is_multiple_of(2) {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let ticket = tickets[i]["id"].as_str().expect("ticket id").to_owned();
            tokio::spawn(follow(
                base,
                tokens[i].clone(),
                ticket,
                Duration::from_secs(30),
                Some(live.clone()),
            ))
        })
        .collect();
    let mut live_followers = 0;
    while live_followers < watched.len() {
        tokio::time::timeout(Duration::from_secs(10), following.recv())
            .await
            .expect("every follower gets its first update")
            .expect("followers run");
        live_followers += 1;
    }

    // Open in a second.
    let opens_at = Utc::now() + chrono::Duration::milliseconds(1_000);
    configure(&a, &event_id, true, Some(opens_at), RATE, 600).await;
    let opened = Instant::now() + Duration::from_millis(1_000);

    // The admitted count over time, as the admin sees it.
    let mut samples: Vec<(f64, i64)> = Vec::new();
    let deadline = opened + Duration::from_secs(20);
    loop {
        let room = admin_room(
            if samples.len().is_multiple_of(2) {
                &a
            } else {
                &b
            },
            &event_id,
        )
        .await;
        let admitted = room["admitted"].as_i64().expect("admitted");
        let t = Instant::now()
            .checked_duration_since(opened)
            .map_or(0.0, |d| d.as_secs_f64());
        samples.push((t, admitted));
        if admitted as usize >= N || Instant::now() > deadline {
            break;
        }
        // Sampling the pace: the samples over time are what the test checks.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        samples.last().map(|s| s.1),
        Some(N as i64),
        "everyone is let in"
    );
    let rate = f64::from(RATE);
    for &(t, admitted) in &samples {
        if admitted as usize >= N {
            break;
        }
        let expected = rate * t;
        assert!(
            (admitted as f64) <= expected + rate * 0.05 + 2.0
                && (admitted as f64) >= expected - rate * 0.2 - 2.0,
            "{admitted} admitted {t:.2}s after the opening; {expected:.0} expected at {RATE}/s (samples {samples:?})"
        );
    }
    println!("admissions over time: {samples:?}");

    // Everyone now has a fixed place: a permutation of 1..=N unrelated to arrival order.
    let places = join_all(tokens.iter().enumerate().map(|(i, t)| {
        let app = if i.is_multiple_of(2) { &b } else { &a };
        join(app, t, &event_id)
    }))
    .await;
    let places: Vec<i64> = places
        .iter()
        .map(|body| {
            data(body, "joinQueue")["queueNumber"]
                .as_i64()
                .expect("queue number after the opening")
        })
        .collect();
    assert_eq!(
        places.iter().copied().collect::<HashSet<_>>(),
        (1..=N as i64).collect(),
        "places are distinct, 1..=N"
    );
    let rho = rank_correlation(
        &arrivals
            .iter()
            .copied()
            .zip(places.iter().copied())
            .collect::<Vec<_>>(),
    );
    println!("rank correlation of arrival and place: {rho:.3}");
    assert!(
        rho.abs() < 0.1,
        "the lottery ignores arrival order (rho {rho})"
    );

    // Live positions: after the opening they only go down, and each admission comes when the
    // pace reaches that place (within a tick or two), so admissions follow the lottery.
    for (follower, &i) in followers.into_iter().zip(&watched) {
        let seen = follower.await.expect("follower");
        let place = places[i];
        let (admitted_at, last) = seen.last().expect("updates");
        assert_eq!(last["admitted"], true, "user {i} was admitted: {seen:?}");
        assert!(last["admissionToken"].is_string());
        let after_opening: Vec<i64> = seen
            .iter()
            .filter(|(_, s)| s["waitingForOpening"] == false && s["admitted"] == false)
            .map(|(_, s)| s["position"].as_i64().expect("position"))
            .collect();
        assert!(
            after_opening.windows(2).all(|w| w[1] < w[0]),
            "positions of user {i} only go down: {after_opening:?}"
        );
        assert!(after_opening.iter().all(|p| *p >= 1 && *p <= place));
        let at = admitted_at
            .checked_duration_since(opened)
            .map_or(0.0, |d| d.as_secs_f64());
        let due = place as f64 / rate;
        assert!(
            at >= due - 0.15 && at <= due + 0.4,
            "user {i} (place {place}) let in {at:.2}s after the opening, due at {due:.2}s"
        );
    }
    a.stop().await;
    b.stop().await;
}

/// While the room is on, holds need an admission for the same user and event; an expired
/// one is refused and its owner must queue again. A restarted instance keeps the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_need_a_valid_admission() {
    let redis = redis_url();
    let app = TestApp::spawn_with(Backend::Postgres, with_redis(&redis)).await;
    let (event_id, seats) = app.create_event(1, 10).await;
    let (other_event, other_seats) = app.create_event(1, 2).await;
    let alice = app.token("alice");
    let bob = app.token("bob");

    // Not admin: no room for you.
    let body = app
        .gql(
            Some(&alice),
            CONFIGURE,
            json!({"e": event_id, "i": {"enabled": true, "admitPerSecond": 5, "admissionTtlSecs": 2}}),
        )
        .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    let body = app.gql(Some(&alice), ROOM, json!({"e": event_id})).await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    let body = configure(&app, &event_id, true, None, 0, 2).await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");

    // Before the room: holds need nothing. Then it opens now, 20 a second, 2 s windows.
    let body = app.hold_seats(&alice, &event_id, &[&seats[9]]).await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    configure(&app, &event_id, true, None, 20, 2).await;
    configure(&app, &other_event, true, None, 20, 60).await;

    let body = post_admitted(
        &app,
        &alice,
        None,
        HOLD_SEATS,
        json!({"e": event_id, "s": [seats[0]]}),
    )
    .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    assert!(message(&body).contains("waiting room"), "{body}");
    let body = post_admitted(
        &app,
        &alice,
        Some("forged"),
        HOLD_SEATS,
        json!({"e": event_id, "s": [seats[0]]}),
    )
    .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    let body = post_admitted(
        &app,
        &alice,
        None,
        REQUEST_SEATS,
        json!({"e": event_id, "s": [seats[0]]}),
    )
    .await;
    assert_eq!(
        expect_error(&body),
        "FORBIDDEN",
        "queued booking needs an admission too"
    );

    // Alice queues and watches until she is let in.
    let ticket = data(&join(&app, &alice, &event_id).await, "joinQueue").clone();
    let ticket_id = ticket["id"].as_str().expect("ticket").to_owned();
    let mut stranger = Subscription::start(
        &app.base,
        Protocol::TransportWs,
        json!({"Authorization": format!("Bearer {bob}")}),
        QUEUE_STATUS,
        json!({"t": ticket_id}),
    )
    .await;
    let refused = stranger
        .next(Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "only the owner follows a ticket: {refused}"
    );
    let seen = follow(
        app.base.clone(),
        alice.clone(),
        ticket_id.clone(),
        Duration::from_secs(10),
        None,
    )
    .await;
    let admitted = &seen.last().expect("updates").1;
    assert_eq!(admitted["admitted"], true, "{seen:?}");
    let token = admitted["admissionToken"]
        .as_str()
        .expect("token")
        .to_owned();

    // With it she holds; nobody else can use it, and it is not valid for another event.
    let body = post_admitted(
        &app,
        &alice,
        Some(&token),
        HOLD_SEATS,
        json!({"e": event_id, "s": [seats[0]]}),
    )
    .await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    let body = post_admitted(
        &app,
        &bob,
        Some(&token),
        HOLD_SEATS,
        json!({"e": event_id, "s": [seats[1]]}),
    )
    .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    let body = post_admitted(
        &app,
        &alice,
        Some(&token),
        HOLD_SEATS,
        json!({"e": other_event, "s": [other_seats[0]]}),
    )
    .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    // Asking again returns the same ticket and the same admission.
    let again = data(&join(&app, &alice, &event_id).await, "joinQueue").clone();
    assert_eq!(again["id"], ticket["id"]);
    assert_eq!(again["admissionToken"], token.as_str());

    // Once the window has passed, the admission is refused and the turn is lost.
    let until = chrono::DateTime::parse_from_rfc3339(
        admitted["admissionExpiresAt"].as_str().expect("expiry"),
    )
    .expect("rfc3339");
    let left = (until.with_timezone(&Utc) - Utc::now())
        .num_milliseconds()
        .max(0);
    // The condition is the clock: the window ends at a time the answer gave.
    tokio::time::sleep(Duration::from_millis(left.unsigned_abs() + 100)).await;
    let body = post_admitted(
        &app,
        &alice,
        Some(&token),
        HOLD_SEATS,
        json!({"e": event_id, "s": [seats[2]]}),
    )
    .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    assert!(message(&body).contains("expired"), "{body}");
    let requeued = data(&join(&app, &alice, &event_id).await, "joinQueue").clone();
    assert_ne!(
        requeued["id"], ticket["id"],
        "a lapsed turn means a new ticket"
    );
    assert!(requeued["queueNumber"].as_i64() > ticket["queueNumber"].as_i64());

    // A restarted instance picks up where the room was: same tickets, places keep counting.
    let (lobby_event, _) = app.create_event(1, 2).await;
    configure(
        &app,
        &lobby_event,
        true,
        Some(Utc::now() + chrono::Duration::hours(1)),
        5,
        60,
    )
    .await;
    let before = data(&join(&app, &alice, &lobby_event).await, "joinQueue").clone();
    let database_url = app.database_url.clone();
    app.stop().await;
    let app = TestApp::spawn_on(&database_url, with_redis(&redis)).await;
    let after = data(&join(&app, &alice, &lobby_event).await, "joinQueue").clone();
    assert_eq!(after["id"], before["id"]);
    assert_eq!(after["position"], 1);
    let bobs = data(&join(&app, &bob, &lobby_event).await, "joinQueue").clone();
    assert_eq!(bobs["position"], 2);
    app.stop().await;
}

/// Splitmix64, so the request mix is the same on every run.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 1,000 requests for overlapping seats through both instances: each is answered once, in
/// arrival order (so the earliest request for a seat wins it), although the first worker
/// dies with requests pending (one of them already applied) and the next worker is stopped
/// halfway through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_requests_are_answered_in_arrival_order_through_worker_deaths() {
    use sea_orm::Database;
    const N: usize = 1_000;
    let redis_url = redis_url();
    let a = TestApp::spawn_with(Backend::Postgres, with_redis(&redis_url)).await;
    let b = TestApp::spawn_on(&a.database_url, with_redis(&redis_url)).await;
    let (event_id, seats) = a.create_event(2, 30).await;
    // The event's queue, as a dead worker would have left it: the lease taken for a while.
    configure(&a, &event_id, false, None, 10, 60).await;
    let db = Database::connect(a.database_url.as_str())
        .await
        .expect("db");
    let prefix = queue_prefix(&db, &event_id).await;
    let client = redis::Client::open(redis_url.as_str()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let lease = format!("{prefix}:worker");
    let stream = format!("{prefix}:requests");
    let _: () = redis::cmd("SET")
        .arg(&lease)
        .arg("dead-worker")
        .arg("PX")
        .arg(2_500)
        .query_async(&mut redis)
        .await
        .expect("set lease");
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("workers")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut redis)
        .await
        .expect("group");

    let requests: Vec<(String, Vec<String>)> = (0..N)
        .map(|i| {
            let r = mix(i as u64);
            let first = (r % 60) as usize;
            let mut wanted = vec![seats[first].clone()];
            if r.is_multiple_of(3) {
                wanted.push(seats[(first + 1 + (r >> 8) as usize % 59) % 60].clone());
            }
            (a.token(&format!("buyer-{i}")), wanted)
        })
        .collect();
    let send = |i: usize| {
        let app = if i.is_multiple_of(2) { &a } else { &b };
        let (token, wanted) = &requests[i];
        let variables = json!({"e": event_id, "s": wanted, "k": format!("req-{i}")});
        async move { retrying(|| app.gql(Some(token), REQUEST_SEATS, variables.clone())).await }
    };
    // The first few arrive, and the dead worker had taken five of them.
    let mut answers = Vec::new();
    for i in 0..20 {
        answers.push(send(i).await);
    }
    let taken: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("dead-worker")
        .arg("COUNT")
        .arg(5)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut redis)
        .await
        .expect("xreadgroup");
    assert!(format!("{taken:?}").contains("request"), "{taken:?}");
    // It had even made the first request's hold before dying (keyed by the request id).
    let first = data(&answers[0], "requestSeats").clone();
    assert_eq!(first["status"], "QUEUED");
    assert_eq!(first["queueNumber"], 1);
    let first_uuid = first["id"]
        .as_str()
        .and_then(|id| id.split_once('-'))
        .map(|(_, uuid)| uuid.to_owned())
        .expect("request id");
    let applied = a
        .gql(
            Some(&requests[0].0),
            HOLD_SEATS,
            json!({"e": event_id, "s": requests[0].1, "k": format!("seat-request:{first_uuid}")}),
        )
        .await;
    let applied_hold = data(&applied, "holdSeats")["id"].clone();
    // The rest arrive at once, through both instances.
    answers.extend(join_all((20..N).map(send)).await);
    let queued: Vec<Value> = answers
        .iter()
        .map(|body| data(body, "requestSeats").clone())
        .collect();
    assert!(queued.iter().all(|r| r["id"].is_string()));
    let numbers: HashSet<i64> = queued
        .iter()
        .map(|r| r["queueNumber"].as_i64().expect("queue number"))
        .collect();
    assert_eq!(
        numbers,
        (1..=N as i64).collect(),
        "every request has its own place"
    );
    // The same key returns the same request.
    let again = send(7).await;
    assert_eq!(data(&again, "requestSeats")["id"], queued[7]["id"]);
    // Only the requester may read a request.
    let body = a
        .gql(
            Some(&requests[1].0),
            SEAT_REQUEST,
            json!({"id": queued[0]["id"]}),
        )
        .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    // Halfway through, stop whichever instance is working the queue.
    let half = N / 2;
    wait_until(
        "the queue moves halfway",
        Duration::from_secs(30),
        || async {
            let body = a
                .gql(
                    Some(&requests[half].0),
                    SEAT_REQUEST,
                    json!({"id": queued[half]["id"]}),
                )
                .await;
            data(&body, "seatRequest")["status"] != "QUEUED"
        },
    )
    .await;
    let holder: Option<String> = redis::cmd("GET")
        .arg(&lease)
        .query_async(&mut redis)
        .await
        .expect("get lease");
    let holder = holder.unwrap_or_default();
    let a_addr = a.base.trim_start_matches("http://").to_owned();
    let (survivor, stopped) = if holder.starts_with(&format!("{a_addr}/")) {
        (b, a)
    } else {
        (a, b)
    };
    println!("stopping the worker {holder} halfway through");
    stopped.stop().await;

    // The last request's owner follows it live.
    let last = N - 1;
    let mut follower = Subscription::start(
        &survivor.base,
        Protocol::TransportWs,
        json!({"Authorization": format!("Bearer {}", requests[last].0)}),
        SEAT_REQUEST_UPDATES,
        json!({"id": queued[last]["id"]}),
    )
    .await;

    // Everything is answered, exactly once, in arrival order.
    let mut final_update = follower.next(Duration::from_secs(5)).await.expect("update");
    while final_update["data"]["seatRequest"]["status"] == "QUEUED" {
        final_update = follower
            .next(Duration::from_secs(60))
            .await
            .expect("the answer");
    }
    assert!(final_update["errors"].is_null(), "{final_update}");
    let started = Instant::now();
    let outcomes: Vec<Value> = wait_for_every(
        "every request answered",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let outcomes: Vec<Value> = futures::stream::iter(queued.iter().zip(&requests))
                .map(|(r, (token, _))| {
                    let app = &survivor;
                    async move {
                        let body =
                            retrying(|| app.gql(Some(token), SEAT_REQUEST, json!({"id": r["id"]})))
                                .await;
                        data(&body, "seatRequest").clone()
                    }
                })
                .buffered(64)
                .collect()
                .await;
            let waiting = outcomes.iter().filter(|o| o["status"] == "QUEUED").count();
            (waiting == 0).then_some(outcomes)
        },
    )
    .await;
    println!("the rest answered {:?} after the stop", started.elapsed());
    assert_eq!(
        final_update["data"]["seatRequest"]["status"],
        outcomes[last]["status"]
    );
    let mut by_arrival: Vec<(i64, usize)> = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| (o["queueNumber"].as_i64().expect("number"), i))
        .collect();
    by_arrival.sort_unstable();
    // Answered in arrival order (each answer numbered once, when recorded).
    let numbers = answer_numbers(
        &mut redis,
        &prefix,
        by_arrival
            .iter()
            .map(|(_, i)| queued[*i]["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(
        numbers,
        (1..=N as i64).map(Some).collect::<Vec<_>>(),
        "answers follow arrival order, one each"
    );
    // Each answer is what holdSeats gives in that order: the earliest request wins a seat.
    let mut taken_seats: HashSet<&str> = HashSet::new();
    let mut held = 0;
    for (_, i) in &by_arrival {
        let wanted = &requests[*i].1;
        let outcome = &outcomes[*i];
        if wanted.iter().all(|s| !taken_seats.contains(s.as_str())) {
            assert_eq!(
                outcome["status"], "DONE",
                "request {i} should win {wanted:?}: {outcome}"
            );
            let got: HashSet<&str> = outcome["hold"]["seats"]
                .as_array()
                .expect("seats")
                .iter()
                .map(|s| s["id"].as_str().expect("id"))
                .collect();
            assert_eq!(
                got,
                wanted.iter().map(String::as_str).collect::<HashSet<_>>()
            );
            taken_seats.extend(wanted.iter().map(String::as_str));
            held += wanted.len();
        } else {
            assert_eq!(
                outcome["status"], "FAILED",
                "request {i} should lose {wanted:?}: {outcome}"
            );
            assert_eq!(outcome["errorCode"], "SEAT_UNAVAILABLE", "{outcome}");
        }
    }
    // The request the dead worker had applied kept its hold: applied once, not twice.
    assert_eq!(outcomes[0]["hold"]["id"], applied_hold);
    let map = survivor.seat_map(&event_id).await;
    assert_eq!(map["event"]["held"].as_i64(), Some(held as i64));
    let counts: HashMap<&str, usize> = outcomes.iter().fold(HashMap::new(), |mut m, o| {
        *m.entry(o["status"].as_str().unwrap_or("?")).or_default() += 1;
        m
    });
    println!("queued booking outcomes: {counts:?}, {held} seats held");
    follower.close().await;
    survivor.stop().await;
}

/// Redis is lost: the room fails closed. Nobody joins or gets in, holds without an
/// admission are refused, and the answers say the waiting room is unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_redis_closes_the_room() {
    let mut redis = OwnRedis::start(free_port());
    let app = TestApp::spawn_with(Backend::Postgres, with_redis(&redis.url())).await;
    let (event_id, seats) = app.create_event(1, 4).await;
    configure(
        &app,
        &event_id,
        true,
        Some(Utc::now() + chrono::Duration::hours(1)),
        5,
        60,
    )
    .await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    let ticket = data(&join(&app, &alice, &event_id).await, "joinQueue").clone();
    assert_eq!(ticket["position"], 1);
    assert_eq!(admin_room(&app, &event_id).await["joined"], 1);

    redis.kill();
    let body = app.gql(Some(&bob), JOIN, json!({"e": event_id})).await;
    assert_eq!(expect_error(&body), "RETRY_LATER");
    assert!(message(&body).contains("unavailable"), "{body}");
    let body = app.gql(Some(&alice), JOIN, json!({"e": event_id})).await;
    assert_eq!(expect_error(&body), "RETRY_LATER");
    let body = post_admitted(
        &app,
        &bob,
        None,
        HOLD_SEATS,
        json!({"e": event_id, "s": [seats[0]]}),
    )
    .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    assert!(message(&body).contains("unavailable"), "says why: {body}");
    let body = post_admitted(
        &app,
        &bob,
        None,
        ops::HOLD_BEST_AVAILABLE,
        ops::vars::best_available(&event_id, 1, None),
    )
    .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    let room = admin_room(&app, &event_id).await;
    assert_eq!(room["enabled"], true);
    assert!(
        room["admitted"].is_null(),
        "no live counters without Redis: {room}"
    );
    assert_eq!(
        app.seat_map(&event_id).await["event"]["held"],
        0,
        "nobody got in"
    );
    app.stop().await;
}

/// Without Redis there is no waiting room and no queued booking, and the answers say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_redis_rooms_cannot_be_switched_on() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let body = configure(&app, &event_id, true, None, 5, 60).await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    assert!(message(&body).contains("Redis"), "{body}");
    let body = configure(&app, "999", false, None, 5, 60).await;
    assert_eq!(expect_error(&body), "NOT_FOUND");
    let alice = app.token("alice");
    let body = join(&app, &alice, &event_id).await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    let body = app
        .gql(
            Some(&alice),
            REQUEST_SEATS,
            json!({"e": event_id, "s": [seats[0]]}),
        )
        .await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    // Holds go on as before.
    let body = app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    app.stop().await;
}
