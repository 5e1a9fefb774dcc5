//! The same idempotency key returns the first result and changes nothing more.

use futures::future::join_all;
use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

both_backends!(same_key_same_hold_and_booking, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, seats) = app.create_event(1, 6).await;
    let alice = app.token("alice");
    let vars = json!({"e": event_id, "s": [seats[0]], "k": "hold-key-1"});
    let first = app.gql(Some(&alice), HOLD_SEATS, vars.clone()).await;
    let second = app.gql(Some(&alice), HOLD_SEATS, vars).await;
    let hold_id = data(&first, "holdSeats")["id"].clone();
    assert_eq!(data(&second, "holdSeats")["id"], hold_id);
    assert_eq!(
        app.count(Some(&alice), ops::MY_HOLD_IDS, "myHolds").await,
        1
    );
    assert_eq!(app.seat_map(&event_id).await["seq"], 1, "one effect");

    // Another user with the same key gets their own answer.
    let bob = app.token("bob");
    let body = app
        .gql(
            Some(&bob),
            HOLD_SEATS,
            json!({"e": event_id, "s": [seats[0]], "k": "hold-key-1"}),
        )
        .await;
    assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");

    // holdBestAvailable with a key.
    let best = ops::vars::best_available_keyed(&event_id, 2, "best-1");
    let a = app
        .gql(Some(&bob), ops::HOLD_BEST_AVAILABLE, best.clone())
        .await;
    let b = app.gql(Some(&bob), ops::HOLD_BEST_AVAILABLE, best).await;
    assert_eq!(
        data(&a, "holdBestAvailable")["id"],
        data(&b, "holdBestAvailable")["id"]
    );
    assert_eq!(app.seat_map(&event_id).await["event"]["held"], 3);

    // confirmHold with a key: same booking twice.
    let c1 = app
        .gql(
            Some(&alice),
            CONFIRM_HOLD,
            json!({"h": hold_id, "k": "confirm-1"}),
        )
        .await;
    let c2 = app
        .gql(
            Some(&alice),
            CONFIRM_HOLD,
            json!({"h": hold_id, "k": "confirm-1"}),
        )
        .await;
    assert_eq!(
        data(&c1, "confirmHold")["id"],
        data(&c2, "confirmHold")["id"]
    );
    assert_eq!(
        app.count(Some(&alice), ops::MY_BOOKING_IDS, "myBookings")
            .await,
        1
    );
    app.stop().await;
});

both_backends!(
    concurrent_retries_with_one_key_make_one_hold,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(1, 4).await;
        let alice = app.token("alice");
        let body = json!({"query": HOLD_SEATS, "variables": {"e": event_id, "s": [seats[1], seats[2]], "k": "double-click"}});
        let results = join_all((0..20).map(|_| app.post(Some(&alice), &body))).await;
        let ids: std::collections::HashSet<String> = results
            .iter()
            .map(|(status, b)| {
                assert_eq!(*status, 200);
                data(b, "holdSeats")["id"].as_str().expect("id").to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 1, "every retry got the same hold");
        assert_eq!(
            app.count(Some(&alice), ops::MY_HOLD_IDS, "myHolds").await,
            1
        );
        assert_eq!(app.seat_map(&event_id).await["seq"], 2);
        app.stop().await;
    }
);
