//! Live seat maps: seatChanges over WebSocket, across instances through Redis.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;
use crate::procs::ints;
use crate::ws::{Protocol, Subscription};

const SECOND: Duration = Duration::from_secs(1);

/// Two instances on one PostgreSQL and one Redis: a subscriber on A sees what B does within a
/// second — the hold, the release, and a later hold's expiry — in `seq` order; both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_cross_instances_through_redis() {
    let options = Options::default()
        .set("REDIS_URL", redis_url())
        .set("HOLD_TTL_SECS", 1)
        .set("SWEEP_INTERVAL_MS", 200);
    let a = TestApp::spawn_with(Backend::Postgres, options.clone()).await;
    let b = TestApp::spawn_on(&a.database_url, options).await;
    let (event_id, seats) = a.create_event(1, 4).await;
    let mut transport =
        Subscription::seat_changes(&a.base, Protocol::TransportWs, &event_id, None).await;
    let mut legacy = Subscription::seat_changes(&a.base, Protocol::LegacyWs, &event_id, None).await;

    let alice = b.token("alice");
    let body = b.hold_seats(&alice, &event_id, &[&seats[2]]).await;
    let first = hold_id(&body);
    for sub in [&mut transport, &mut legacy] {
        let held = sub.next_change(SECOND).await;
        assert_eq!(held["seatId"], seats[2].as_str());
        assert_eq!(held["status"], "HELD");
        assert_eq!(held["eventId"], event_id.as_str());
        assert!(held["holdExpiresAt"].is_string());
        assert_eq!(held["seq"], 1);
    }
    // Both feeds are live now (each has delivered a change), so what B does next can reach
    // them only through Redis.
    let body = b.gql(Some(&alice), RELEASE_HOLD, json!({"h": first})).await;
    data(&body, "releaseHold");
    b.hold_seats(&alice, &event_id, &[&seats[3]]).await; // left to expire

    for sub in [&mut transport, &mut legacy] {
        let released = sub.next_change(SECOND).await;
        assert_eq!(
            (
                released["seatId"].as_str(),
                released["status"].as_str(),
                released["seq"].as_i64()
            ),
            (Some(seats[2].as_str()), Some("AVAILABLE"), Some(2))
        );
        assert!(released["holdExpiresAt"].is_null());
        let held = sub.next_change(SECOND).await;
        assert_eq!(
            (
                held["seatId"].as_str(),
                held["status"].as_str(),
                held["seq"].as_i64()
            ),
            (Some(seats[3].as_str()), Some("HELD"), Some(3))
        );
    }
    // The expiry (1 s hold, 200 ms sweeps) arrives as AVAILABLE on both.
    for sub in [&mut transport, &mut legacy] {
        let expired = sub.next_change(3 * SECOND).await;
        assert_eq!(
            (
                expired["seatId"].as_str(),
                expired["status"].as_str(),
                expired["seq"].as_i64()
            ),
            (Some(seats[3].as_str()), Some("AVAILABLE"), Some(4))
        );
    }
    transport.close().await;
    legacy.close().await;
    a.stop().await;
    b.stop().await;
}

both_backends!(after_seq_replays_then_goes_live, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, seats) = app.create_event(1, 5).await;
    let alice = app.token("alice");
    for seat in &seats[..3] {
        app.hold_seats(&alice, &event_id, &[seat]).await;
    }
    assert_eq!(app.seat_map(&event_id).await["seq"], 3);
    let mut sub =
        Subscription::seat_changes(&app.base, Protocol::TransportWs, &event_id, Some(1)).await;
    let replayed: Vec<i64> = vec![
        sub.next_change(SECOND).await["seq"].as_i64().expect("seq"),
        sub.next_change(SECOND).await["seq"].as_i64().expect("seq"),
    ];
    assert_eq!(replayed, vec![2, 3]);
    app.hold_seats(&alice, &event_id, &[&seats[4]]).await;
    let live = sub.next_change(SECOND).await;
    assert_eq!(live["seq"], 4);
    assert_eq!(live["seatId"], seats[4].as_str());
    assert!(
        sub.next(Duration::from_millis(300)).await.is_none(),
        "no duplicate"
    );

    // The seat map's seq + afterSeq is exactly current.
    let map = app.seat_map(&event_id).await;
    let mut fresh = Subscription::seat_changes(
        &app.base,
        Protocol::LegacyWs,
        &event_id,
        map["seq"].as_i64(),
    )
    .await;
    assert!(
        fresh.next(Duration::from_millis(300)).await.is_none(),
        "nothing to replay"
    );
    app.hold_seats(&alice, &event_id, &[&seats[3]]).await;
    assert_eq!(fresh.next_change(SECOND).await["seq"], 5);

    // A seq ahead of the log is refused clearly.
    let mut bad =
        Subscription::seat_changes(&app.base, Protocol::TransportWs, &event_id, Some(999)).await;
    let payload = bad.next(SECOND).await.expect("an error");
    assert_eq!(
        payload["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{payload}"
    );
    // An unknown event too.
    let mut unknown =
        Subscription::seat_changes(&app.base, Protocol::TransportWs, "777777", None).await;
    let payload = unknown.next(SECOND).await.expect("an error");
    assert_eq!(
        payload["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{payload}"
    );
    app.stop().await;
});

both_backends!(rolled_back_hold_publishes_nothing, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, seats) = app.create_event(1, 4).await;
    let mut sub =
        Subscription::seat_changes(&app.base, Protocol::TransportWs, &event_id, None).await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
    assert_eq!(sub.next_change(SECOND).await["seq"], 1);
    // All-or-nothing conflict: seat 1 is free, seat 0 is taken; nothing may be published.
    let body = app
        .hold_seats(&bob, &event_id, &[&seats[1], &seats[0]])
        .await;
    assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");
    assert!(
        sub.next(Duration::from_millis(500)).await.is_none(),
        "nothing published for a failed hold"
    );
    app.hold_seats(&bob, &event_id, &[&seats[2]]).await;
    let next = sub.next_change(SECOND).await;
    assert_eq!(
        (next["seq"].as_i64(), next["seatId"].as_str()),
        (Some(2), Some(seats[2].as_str()))
    );
    app.stop().await;
});

/// Redis dies mid-test: bookings keep working (no INTERNAL), and once it is back the
/// subscriber on the other instance resumes — with the changes it missed filled in from the
/// log, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restart_bookings_continue_and_subscriptions_recover() {
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let options = Options::default().set("REDIS_URL", redis.url());
    let a = TestApp::spawn_with(Backend::Postgres, options.clone()).await;
    let b = TestApp::spawn_on(&a.database_url, options).await;
    let (event_id, seats) = a.create_event(1, 6).await;
    let mut sub = Subscription::seat_changes(&a.base, Protocol::TransportWs, &event_id, None).await;
    let alice = b.token("alice");
    b.hold_seats(&alice, &event_id, &[&seats[0]]).await;
    assert_eq!(sub.next_change(SECOND).await["seq"], 1);

    redis.kill();
    for seat in &seats[1..3] {
        let started = std::time::Instant::now();
        let body = b.hold_seats(&alice, &event_id, &[seat]).await;
        assert_eq!(
            data(&body, "holdSeats")["status"],
            "ACTIVE",
            "bookings work without Redis"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "no long wait on a dead Redis"
        );
    }
    assert_eq!(b.readiness().await, 503, "readiness reports Redis down");

    let _redis = OwnRedis::start(port);
    // B's connection answers again (readiness) and A's subscriber is back (its bus is healthy).
    wait_until("both instances are back on Redis", 10 * SECOND, || async {
        b.readiness().await == 200 && a.metrics().await.contains("onsale_seat_bus_healthy 1")
    })
    .await;
    b.hold_seats(&alice, &event_id, &[&seats[3]]).await;
    let got: Vec<i64> = vec![
        sub.next_change(3 * SECOND).await["seq"]
            .as_i64()
            .expect("seq"),
        sub.next_change(SECOND).await["seq"].as_i64().expect("seq"),
        sub.next_change(SECOND).await["seq"].as_i64().expect("seq"),
    ];
    assert_eq!(
        got,
        vec![2, 3, 4],
        "missed changes filled in, in order, then live"
    );
    assert_eq!(b.readiness().await, 200);
    a.stop().await;
    b.stop().await;
}

/// A client nobody here wrote: the `graphql-ws` library from npm subscribes through the
/// `graphql-transport-ws` protocol and sees the changes (tests/node/subscribe.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graphql_ws_library_client_sees_changes() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let app = TestApp::spawn(Backend::Postgres).await;
    let (event_id, seats) = app.create_event(1, 3).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/subscribe.mjs");
    let ws_url = format!("{}/graphql/ws", app.base.replace("http://", "ws://"));
    let mut child = tokio::process::Command::new("node")
        .args([script, &ws_url, &event_id, "2", "10000"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/test-prepare.sh installs tests/node)");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(5 * SECOND, lines.next_line())
        .await
        .expect("node connects in time")
        .expect("read")
        .expect("a line");
    assert_eq!(first, r#"{"connected":true}"#);
    // This client subscribes from now and nothing acknowledges a subscription: give the
    // server a moment to have read it (the Rust client here uses afterSeq instead).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let alice = app.token("alice");
    app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
    app.hold_seats(&alice, &event_id, &[&seats[2]]).await;
    let mut changes = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(5 * SECOND, lines.next_line()).await {
        changes.push(serde_json::from_str::<Value>(&line).expect("json line"));
    }
    let status = child.wait().await.expect("node exits");
    assert!(
        status.success(),
        "the node client exits 0 after two changes"
    );
    let got: Vec<(String, String, i64)> = changes
        .iter()
        .map(|c| {
            let c = &c["data"]["seatChanges"];
            (
                c["seatId"].as_str().unwrap_or_default().to_owned(),
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["seq"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (seats[0].clone(), "HELD".to_owned(), 1),
            (seats[2].clone(), "HELD".to_owned(), 2)
        ]
    );
    app.stop().await;
}

both_backends!(
    pruned_history_asks_the_client_to_reload,
    |backend| async move {
        let app = TestApp::spawn_with(
            backend,
            Options::default()
                .set("SEAT_CHANGE_RETENTION_SECS", 1)
                .set("SWEEP_INTERVAL_MS", 200),
        )
        .await;
        let (event_id, seats) = app.create_event(1, 3).await;
        let alice = app.token("alice");
        app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
        app.hold_seats(&alice, &event_id, &[&seats[1]]).await;
        // Retention is 1 s and the sweeper prunes every 200 ms: wait until the log is empty.
        wait_until("the change log is pruned", 10 * SECOND, || {
            change_log_is_empty(&app.database_url, &event_id)
        })
        .await;
        let mut sub =
            Subscription::seat_changes(&app.base, Protocol::TransportWs, &event_id, Some(0)).await;
        let payload = sub.next(SECOND).await.expect("an error");
        assert_eq!(
            payload["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{payload}"
        );
        assert!(
            payload["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("reload the seat map")),
            "{payload}"
        );
        // Subscribing from the map's seq still works: nothing before it is needed.
        let seq = app.seat_map(&event_id).await["seq"].as_i64();
        assert_eq!(seq, Some(2));
        let mut fresh =
            Subscription::seat_changes(&app.base, Protocol::TransportWs, &event_id, seq).await;
        app.hold_seats(&alice, &event_id, &[&seats[2]]).await;
        assert_eq!(fresh.next_change(SECOND).await["seq"], 3);
        app.stop().await;
    }
);

/// Graceful shutdown closes open subscriptions instead of waiting on them for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_closes_subscriptions_promptly() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (event_id, _) = app.create_event(1, 2).await;
    let mut transport =
        Subscription::seat_changes(&app.base, Protocol::TransportWs, &event_id, None).await;
    let mut legacy =
        Subscription::seat_changes(&app.base, Protocol::LegacyWs, &event_id, None).await;
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped in {:?}",
        started.elapsed()
    );
    assert!(
        transport.next(SECOND).await.is_none(),
        "the subscription ended"
    );
    assert!(
        legacy.next(SECOND).await.is_none(),
        "the subscription ended"
    );
}

/// Two deployments (two databases, so the same event and seat ids) sharing one Redis never
/// see each other's seats: not in live feeds, not in the seat gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployments_sharing_a_redis_stay_apart() {
    let options = Options::default().set("REDIS_URL", redis_url());
    let staging = TestApp::spawn_with(Backend::Postgres, options.clone()).await;
    let production = TestApp::spawn_with(Backend::Postgres, options).await;
    let (event_s, seats_s) = staging.create_event(1, 2).await;
    let (event_p, seats_p) = production.create_event(1, 2).await;
    assert_eq!(
        (&event_s, &seats_s[0]),
        (&event_p, &seats_p[0]),
        "same ids in both databases"
    );
    let mut prod_feed =
        Subscription::seat_changes(&production.base, Protocol::TransportWs, &event_p, None).await;
    // A change of production's own first, so that its feed is surely live.
    data(
        &production
            .hold_seats(&production.token("b"), &event_p, &[&seats_p[1]])
            .await,
        "holdSeats",
    );
    assert_eq!(prod_feed.next_change(SECOND).await["seq"], 1);
    data(
        &staging
            .hold_seats(&staging.token("a"), &event_s, &[&seats_s[0]])
            .await,
        "holdSeats",
    );
    assert!(
        // The point: nothing arrives in this while.
        prod_feed.next(Duration::from_millis(700)).await.is_none(),
        "no change leaks across"
    );
    let body = production
        .hold_seats(&production.token("b"), &event_p, &[&seats_p[0]])
        .await;
    assert_eq!(
        data(&body, "holdSeats")["status"],
        "ACTIVE",
        "the gate is not fooled either"
    );
    assert_eq!(prod_feed.next_change(SECOND).await["seq"], 2);
    staging.stop().await;
    production.stop().await;
}

/// Whether the event's change log is empty.
async fn change_log_is_empty(database_url: &str, event_id: &str) -> bool {
    let conn = sea_orm::Database::connect(database_url)
        .await
        .expect("connect");
    let rows = ints(
        &conn,
        &format!("SELECT COUNT(*) FROM seat_changes WHERE event_id = {event_id}"),
    )
    .await;
    let _ = conn.close().await;
    rows == [0]
}

/// WebSocket messages bigger than the server's read buffer (8 KiB) are read whole: a 200 KB
/// `connection_init` payload (an `Authorization` among padding) and a 100 KB subscribe
/// message are accepted, and the subscription delivers its changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_messages_bigger_than_the_read_buffer_are_read_whole() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let alice = app.token("alice");
    let init = json!({
        "Authorization": format!("Bearer {alice}"),
        "padding": "x".repeat(200_000),
    });
    // The same subscription with 100 KB of comment after it.
    let query = format!("{}\n#{}", ops::SEAT_CHANGES, "y".repeat(100_000));
    let seq = app.seat_map(&event_id).await["seq"].as_i64();
    let mut sub = Subscription::start(
        &app.base,
        Protocol::TransportWs,
        init,
        &query,
        ops::vars::seat_changes(&event_id, seq),
    )
    .await;
    app.hold_seats(&alice, &event_id, &[&seats[1]]).await;
    let change = sub.next_change(SECOND).await;
    assert_eq!(change["seatId"], seats[1].as_str(), "{change}");
    assert_eq!(change["status"], "HELD", "{change}");
    sub.close().await;
    app.stop().await;
}
