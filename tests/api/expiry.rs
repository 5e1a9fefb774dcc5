//! Holds run out: their seats are free before any sweep, and confirming is refused.

use std::time::Duration;

use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    expired_hold_frees_seat_before_any_sweep,
    |backend| async move {
        // A sweep interval far longer than the test: only the lazy path can free the seat.
        let app = TestApp::spawn_with(
            backend,
            Options::default()
                .set("HOLD_TTL_SECS", 1)
                .set("SWEEP_INTERVAL_MS", 3_600_000),
        )
        .await;
        let (event_id, seats) = app.create_event(1, 4).await;
        let alice = app.token("alice");
        let bob = app.token("bob");
        let body = app
            .hold_seats(&alice, &event_id, &[&seats[0], &seats[1]])
            .await;
        let alice_hold = data(&body, "holdSeats")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let body = app.hold_seats(&bob, &event_id, &[&seats[0]]).await;
        assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");

        tokio::time::sleep(Duration::from_millis(1300)).await;
        // Shown AVAILABLE and EXPIRED without a sweep.
        let statuses = app.seat_statuses(&event_id).await;
        assert_eq!(statuses[&seats[0]], "AVAILABLE");
        let body = app
            .gql(
                Some(&alice),
                "query($id: ID!) { hold(id: $id) { status } }",
                json!({"id": alice_hold}),
            )
            .await;
        assert_eq!(data(&body, "hold")["status"], "EXPIRED");

        let body = app.hold_seats(&bob, &event_id, &[&seats[0]]).await;
        let bob_hold = data(&body, "holdSeats");
        assert_eq!(bob_hold["status"], "ACTIVE");

        let body = app
            .gql(Some(&alice), CONFIRM_HOLD, json!({"h": alice_hold}))
            .await;
        assert_eq!(expect_error(&body), "HOLD_EXPIRED");
        let body = app
            .gql(Some(&alice), RELEASE_HOLD, json!({"h": alice_hold}))
            .await;
        assert_eq!(expect_error(&body), "HOLD_EXPIRED");
        let statuses = app.seat_statuses(&event_id).await;
        assert_eq!(statuses[&seats[0]], "HELD", "bob's hold is untouched");
        // The reclaimed seat logged AVAILABLE then HELD: 2 (alice) + 2 (bob) changes.
        assert_eq!(app.seat_map(&event_id).await["seq"], 4);
        app.stop().await;
    }
);

both_backends!(
    sweeper_expires_holds_and_logs_the_change,
    |backend| async move {
        let app = TestApp::spawn_with(
            backend,
            Options::default()
                .set("HOLD_TTL_SECS", 1)
                .set("SWEEP_INTERVAL_MS", 200),
        )
        .await;
        let (event_id, seats) = app.create_event(1, 3).await;
        let alice = app.token("alice");
        let body = app
            .hold_seats(&alice, &event_id, &[&seats[0], &seats[2]])
            .await;
        let hold_id = data(&body, "holdSeats")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        assert_eq!(app.seat_map(&event_id).await["seq"], 2);

        let mut seq = 0;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            seq = app.seat_map(&event_id).await["seq"].as_i64().expect("seq");
            if seq == 4 {
                break;
            }
        }
        assert_eq!(seq, 4, "the sweeper logged both seats returning");
        let body = app
            .gql(
                Some(&alice),
                "{ myHolds(status: EXPIRED) { id } }",
                json!({}),
            )
            .await;
        assert_eq!(data(&body, "myHolds")[0]["id"], hold_id.as_str());
        let body = app
            .gql(Some(&alice), CONFIRM_HOLD, json!({"h": hold_id}))
            .await;
        assert_eq!(expect_error(&body), "HOLD_EXPIRED");
        app.stop().await;
    }
);
