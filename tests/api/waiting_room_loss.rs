//! A waiting room when Redis loses its data, and a room switched on through one instance
//! taking effect on another before the mutation returns.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::waiting_room::{admin_room, configure, join, message, post_admitted, with_redis};
use crate::ws::{Protocol, Subscription};

use ops::QUEUE_STATUS;

/// `holdSeats` of one seat with an admission, asked again while Redis is reconnecting.
async fn hold_with(
    app: &TestApp,
    token: &str,
    admission: &str,
    event_id: &str,
    seat: &str,
) -> Value {
    retrying(|| {
        post_admitted(
            app,
            token,
            Some(admission),
            HOLD_SEATS,
            json!({"e": event_id, "s": [seat]}),
        )
    })
    .await
}

/// Joins again until every one of `tokens` is admitted; returns their admission tokens.
async fn admissions(app: &TestApp, tokens: &[String], event_id: &str) -> Vec<String> {
    wait_for("everyone admitted", Duration::from_secs(20), || async {
        let mut got = Vec::new();
        for token in tokens {
            let ticket = data(&join(app, token, event_id).await, "joinQueue").clone();
            got.push(ticket["admissionToken"].as_str()?.to_owned());
        }
        Some(got)
    })
    .await
}

/// The first answer of `queueStatus` for `ticket` that is not "Redis is reconnecting".
async fn first_status(app: &TestApp, token: &str, ticket: &str) -> Value {
    wait_for("a queueStatus answer", Duration::from_secs(10), || async {
        let mut sub = Subscription::start(
            &app.base,
            Protocol::TransportWs,
            json!({"Authorization": format!("Bearer {token}")}),
            QUEUE_STATUS,
            json!({"t": ticket}),
        )
        .await;
        let answer = sub.next(Duration::from_secs(5)).await;
        sub.close().await;
        answer.filter(|a| error_code(a).as_deref() != Some("RETRY_LATER"))
    })
    .await
}

/// Redis is restarted empty (no persistence) while six people are admitted and six wait.
/// While it is down, admissions are not taken on trust. Back, nothing from before counts: old tickets are unknown (their holders join again, at the
/// back), old admissions are refused, the counters start again, newcomers are let in at the
/// room's pace, and `admitted` is always the number of admissions that work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_empty_mid_queue_counts_nothing_from_before() {
    const RATE: i32 = 6;
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let app = TestApp::spawn_with(Backend::Postgres, with_redis(&redis.url())).await;
    let (event_id, seats) = app.create_event(1, 60).await;
    let mut free = seats.iter();
    let mut seat = move || free.next().expect("a free seat").clone();
    configure(&app, &event_id, true, None, RATE, 600).await;
    let people =
        |who: &str| -> Vec<String> { (0..6).map(|i| app.token(&format!("{who}-{i}"))).collect() };

    // Six join and are let in; their admissions work.
    let early = people("early");
    let mut old_tickets = Vec::new();
    for token in &early {
        let ticket = data(&join(&app, token, &event_id).await, "joinQueue").clone();
        old_tickets.push((token.clone(), ticket["id"].as_str().expect("id").to_owned()));
    }
    let old_admissions = admissions(&app, &early, &event_id).await;
    for (token, admission) in early.iter().zip(&old_admissions) {
        let body = hold_with(&app, token, admission, &event_id, &seat()).await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    }
    let room = admin_room(&app, &event_id).await;
    assert_eq!(
        (room["joined"].as_i64(), room["admitted"].as_i64()),
        (Some(6), Some(6))
    );
    // Six more join behind them and wait.
    let waiting = people("waiting");
    for token in &waiting {
        let ticket = data(&join(&app, token, &event_id).await, "joinQueue").clone();
        assert_eq!(ticket["admitted"], false, "{ticket}");
        assert!(ticket["queueNumber"].as_i64() > Some(6), "{ticket}");
        old_tickets.push((token.clone(), ticket["id"].as_str().expect("id").to_owned()));
    }

    // Redis goes away: an admission cannot be checked, so nobody gets in with one.
    redis.kill();
    let body = post_admitted(
        &app,
        &early[0],
        Some(&old_admissions[0]),
        HOLD_SEATS,
        json!({"e": event_id, "s": [seat()]}),
    )
    .await;
    assert_eq!(expect_error(&body), "RETRY_LATER", "{body}");
    // It restarts with nothing.
    let redis = OwnRedis::start(port);
    let restarted = Instant::now();

    // Six newcomers join: the queue starts again, and they are first.
    let newcomers = people("new");
    for (i, token) in newcomers.iter().enumerate() {
        let ticket = data(&join(&app, token, &event_id).await, "joinQueue").clone();
        assert_eq!(
            ticket["queueNumber"].as_i64(),
            Some(i as i64 + 1),
            "{ticket}"
        );
    }
    // Old tickets are unknown, as a ticket that never existed is.
    for (token, ticket) in &old_tickets {
        let answer = first_status(&app, token, ticket).await;
        assert_eq!(expect_error(&answer), "NOT_FOUND", "{answer}");
        assert!(
            message(&answer).contains("join the queue again"),
            "{answer}"
        );
    }
    // Old admissions are refused, and say why.
    for (token, admission) in early.iter().zip(&old_admissions) {
        let body = hold_with(&app, token, admission, &event_id, &seat()).await;
        assert_eq!(expect_error(&body), "FORBIDDEN", "{body}");
        assert!(message(&body).contains("join the queue again"), "{body}");
    }
    // Newcomers are let in at the room's pace, counted from zero.
    wait_for(
        "the newcomers admitted",
        Duration::from_secs(20),
        || async {
            let room = admin_room(&app, &event_id).await;
            let admitted = room["admitted"].as_i64().unwrap_or(0);
            let allowed = f64::from(RATE) * restarted.elapsed().as_secs_f64() + 1.0;
            assert!(
                admitted as f64 <= allowed && admitted <= 6,
                "{admitted} admitted {:?} after the restart: {room}",
                restarted.elapsed()
            );
            (admitted == 6).then_some(())
        },
    )
    .await;
    let new_admissions = admissions(&app, &newcomers, &event_id).await;
    // The counter is what works: six new admissions hold, six old ones do not.
    let mut working = 0;
    for (token, admission) in newcomers
        .iter()
        .zip(&new_admissions)
        .chain(early.iter().zip(&old_admissions))
    {
        let body = hold_with(&app, token, admission, &event_id, &seat()).await;
        if error_code(&body).is_none() {
            working += 1;
        } else {
            assert_eq!(expect_error(&body), "FORBIDDEN", "{body}");
        }
    }
    let room = admin_room(&app, &event_id).await;
    assert_eq!(
        (room["joined"].as_i64(), room["admitted"].as_i64()),
        (Some(6), Some(6))
    );
    assert_eq!(working, 6, "admitted {room} = admissions that work");

    // The old ticket holders join again: new tickets, behind the newcomers.
    let old: Vec<String> = early.iter().chain(&waiting).cloned().collect();
    for (token, (_, before)) in old.iter().zip(&old_tickets) {
        let ticket = data(&join(&app, token, &event_id).await, "joinQueue").clone();
        assert_ne!(ticket["id"].as_str(), Some(before.as_str()));
        assert!(ticket["queueNumber"].as_i64() > Some(6), "{ticket}");
    }
    let again = admissions(&app, &old, &event_id).await;
    for (token, admission) in old.iter().zip(&again) {
        let body = hold_with(&app, token, admission, &event_id, &seat()).await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    }
    // Their admissions from before still do not count.
    for (token, admission) in early.iter().zip(&old_admissions) {
        let body = hold_with(&app, token, admission, &event_id, &seat()).await;
        assert_eq!(expect_error(&body), "FORBIDDEN", "{body}");
    }
    let room = admin_room(&app, &event_id).await;
    assert_eq!(
        (room["joined"].as_i64(), room["admitted"].as_i64()),
        (Some(18), Some(18)),
        "18 admissions work: {room}"
    );
    app.stop().await;
    drop(redis);
}

/// Two instances on one database and Redis. Right after a room is switched on through A,
/// an unadmitted hold on B is refused, although B had just looked the event up (and cached
/// "no room", later "off"); right after it is switched off, B lets holds through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_switched_on_through_one_instance_applies_on_another_at_once() {
    let redis = redis_url();
    let a = TestApp::spawn_with(Backend::Postgres, with_redis(&redis)).await;
    let b = TestApp::spawn_on(&a.database_url, with_redis(&redis)).await;
    let (event_id, seats) = a.create_event(1, 20).await;
    let mut free = seats.iter();
    let alice = b.token("alice");

    // No room yet: B lets a hold through (and remembers there is no room).
    let seat = free.next().expect("seat");
    let body = b.hold_seats(&alice, &event_id, &[seat]).await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    for round in 0..5 {
        let body = configure(&a, &event_id, true, None, 10, 60).await;
        assert_eq!(data(&body, "configureWaitingRoom")["enabled"], true);
        let body = b
            .hold_seats(&alice, &event_id, &[free.next().expect("seat")])
            .await;
        assert_eq!(expect_error(&body), "FORBIDDEN", "round {round}: {body}");
        assert!(message(&body).contains("waiting room"), "{body}");
        // Joining through B works at once too.
        let body = b
            .gql(Some(&alice), ops::JOIN_QUEUE, json!({"e": event_id}))
            .await;
        assert!(data(&body, "joinQueue")["id"].is_string(), "{body}");

        let body = configure(&a, &event_id, false, None, 10, 60).await;
        assert_eq!(data(&body, "configureWaitingRoom")["enabled"], false);
        let seat = free.next().expect("seat");
        let body = b.hold_seats(&alice, &event_id, &[seat]).await;
        assert_eq!(
            data(&body, "holdSeats")["status"],
            "ACTIVE",
            "round {round}: {body}"
        );
    }
    a.stop().await;
    b.stop().await;
}
