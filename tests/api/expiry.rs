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
        let alice_hold = hold_id(&body);
        let body = app.hold_seats(&bob, &event_id, &[&seats[0]]).await;
        assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");

        // Shown AVAILABLE and EXPIRED without a sweep, once the 1 s hold has run out.
        wait_until(
            "the seat shows AVAILABLE",
            Duration::from_secs(5),
            || async { app.seat_statuses(&event_id).await[&seats[0]] == "AVAILABLE" },
        )
        .await;
        assert_eq!(app.hold_status(&alice, &alice_hold).await, "EXPIRED");

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
        let hold_id = hold_id(&body);
        assert_eq!(app.seat_map(&event_id).await["seq"], 2);

        wait_until(
            "the sweeper logs both seats returning",
            Duration::from_secs(5),
            || async { app.seat_map(&event_id).await["seq"] == 4 },
        )
        .await;
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
