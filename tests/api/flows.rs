//! Every contract operation through HTTP, on both backends.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

both_backends!(hold_confirm_cancel_round_trip, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, seats) = app.create_event(2, 5).await;
    let alice = app.token("alice");

    // events / event
    let body = app
        .gql(
            None,
            "{ events { id name venue startsAt seatCount available held booked } }",
            json!({}),
        )
        .await;
    let events = data(&body, "events").as_array().expect("events").clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["seatCount"], 10);
    assert_eq!(events[0]["available"], 10);
    assert_eq!(
        events[0]["startsAt"]
            .as_str()
            .map(|s| s.starts_with("2030-01-01T20:00:00")),
        Some(true)
    );
    let body = app
        .gql(
            None,
            "query($id: ID!) { event(id: $id) { id name } }",
            json!({"id": event_id}),
        )
        .await;
    assert_eq!(data(&body, "event")["name"], "Test Night");
    let body = app
        .gql(None, "{ event(id: \"999999\") { id } }", json!({}))
        .await;
    assert!(data(&body, "event").is_null());

    // seatMap, with and without a section filter
    let map = app.seat_map(&event_id).await;
    assert_eq!(map["seq"], 0);
    assert_eq!(map["seats"].as_array().map(Vec::len), Some(10));
    assert_eq!(map["seats"][0]["section"], "Main");
    assert_eq!(map["seats"][0]["row"], "R1");
    assert_eq!(map["seats"][0]["number"], 1);
    assert_eq!(map["seats"][0]["priceCents"], 1000);
    let body = app
        .gql(
            None,
            "query($e: ID!) { seatMap(eventId: $e, section: \"Nope\") { seats { id } } }",
            json!({"e": event_id}),
        )
        .await;
    assert_eq!(
        data(&body, "seatMap")["seats"].as_array().map(Vec::len),
        Some(0)
    );

    // holdSeats
    let body = app
        .hold_seats(&alice, &event_id, &[&seats[1], &seats[0]])
        .await;
    let hold = data(&body, "holdSeats").clone();
    let hold_id = hold["id"].as_str().expect("hold id").to_owned();
    assert_eq!(hold["status"], "ACTIVE");
    assert_eq!(hold["eventId"], event_id.as_str());
    assert_eq!(hold["totalCents"], 2000);
    assert_eq!(hold["seats"].as_array().map(Vec::len), Some(2));
    assert!(hold["seats"][0]["holdExpiresAt"].is_string());
    let statuses = app.seat_statuses(&event_id).await;
    assert_eq!(statuses[&seats[0]], "HELD");
    assert_eq!(statuses[&seats[1]], "HELD");
    assert_eq!(statuses[&seats[2]], "AVAILABLE");
    let map = app.seat_map(&event_id).await;
    assert_eq!(map["seq"], 2, "two seat changes logged");
    assert_eq!(map["event"]["held"], 2);
    assert_eq!(map["event"]["available"], 8);

    // hold / myHolds
    let body = app
        .gql(
            Some(&alice),
            "query($id: ID!) { hold(id: $id) { id status seats { id } } }",
            json!({"id": hold_id}),
        )
        .await;
    assert_eq!(data(&body, "hold")["id"], hold_id.as_str());
    assert_eq!(
        app.count(
            Some(&alice),
            "{ myHolds(status: ACTIVE) { id } }",
            "myHolds"
        )
        .await,
        1
    );
    assert_eq!(
        app.count(
            Some(&alice),
            "{ myHolds(status: CONFIRMED) { id } }",
            "myHolds"
        )
        .await,
        0
    );

    // confirmHold
    let body = app
        .gql(Some(&alice), CONFIRM_HOLD, json!({"h": hold_id}))
        .await;
    let booking = data(&body, "confirmHold").clone();
    let booking_id = booking["id"].as_str().expect("booking id").to_owned();
    assert_eq!(booking["status"], "CONFIRMED");
    assert_eq!(booking["holdId"], hold_id.as_str());
    assert_eq!(booking["totalCents"], 2000);
    assert!(booking["paymentIntentId"].is_null());
    assert_eq!(booking["seats"][0]["status"], "BOOKED");
    let statuses = app.seat_statuses(&event_id).await;
    assert_eq!(statuses[&seats[0]], "BOOKED");
    assert_eq!(app.hold_status(&alice, &hold_id).await, "CONFIRMED");
    // Confirming again: the hold is no longer active.
    let body = app
        .gql(Some(&alice), CONFIRM_HOLD, json!({"h": hold_id}))
        .await;
    assert_eq!(expect_error(&body), "HOLD_NOT_ACTIVE");
    // A booked seat cannot be held.
    let bob = app.token("bob");
    let body = app
        .hold_seats(&bob, &event_id, &[&seats[0], &seats[2]])
        .await;
    assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");
    assert_eq!(
        body["errors"][0]["extensions"]["seatIds"],
        json!([seats[0]])
    );
    assert_eq!(
        app.seat_statuses(&event_id).await[&seats[2]],
        "AVAILABLE",
        "all-or-nothing"
    );

    // myBookings
    let body = app
        .gql(
            Some(&alice),
            "{ myBookings { id status seats { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&body, "myBookings")[0]["id"], booking_id.as_str());
    assert_eq!(
        app.count(Some(&bob), ops::MY_BOOKING_IDS, "myBookings")
            .await,
        0
    );

    // cancelBooking (someone else may not)
    let body = app
        .gql(Some(&bob), CANCEL_BOOKING, json!({"b": booking_id}))
        .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    let body = app
        .gql(
            Some(&alice),
            "mutation($b: ID!) { cancelBooking(bookingId: $b) { id status seats { status } } }",
            json!({"b": booking_id}),
        )
        .await;
    assert_eq!(data(&body, "cancelBooking")["status"], "CANCELLED");
    assert_eq!(
        data(&body, "cancelBooking")["seats"][0]["status"],
        "AVAILABLE"
    );
    let statuses = app.seat_statuses(&event_id).await;
    assert_eq!(statuses[&seats[0]], "AVAILABLE");
    assert_eq!(statuses[&seats[1]], "AVAILABLE");

    // The freed seat can be held again, and released.
    let body = app.hold_seats(&bob, &event_id, &[&seats[0]]).await;
    let bob_hold = crate::helpers::hold_id(&body);
    let body = app
        .gql(Some(&bob), RELEASE_HOLD, json!({"h": bob_hold}))
        .await;
    assert_eq!(data(&body, "releaseHold")["status"], "RELEASED");
    assert_eq!(
        data(&body, "releaseHold")["seats"][0]["status"],
        "AVAILABLE"
    );
    let body = app
        .gql(Some(&bob), RELEASE_HOLD, json!({"h": bob_hold}))
        .await;
    assert_eq!(expect_error(&body), "HOLD_NOT_ACTIVE");
    let body = app
        .gql(Some(&bob), CONFIRM_HOLD, json!({"h": bob_hold}))
        .await;
    assert_eq!(expect_error(&body), "HOLD_NOT_ACTIVE");
    let body = app
        .gql(
            Some(&bob),
            "{ myHolds(status: RELEASED) { id status } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&body, "myHolds")[0]["id"], bob_hold.as_str());
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "AVAILABLE");

    // Every change was logged with a strictly increasing seq: 2 held, 2 booked, 2 freed, 1 held, 1 freed.
    assert_eq!(app.seat_map(&event_id).await["seq"], 8);
    app.stop().await;
});

both_backends!(
    best_available_prefers_adjacent_seats,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(3, 6).await;
        let carol = app.token("carol");
        // Break up the most expensive row (R3) so that only two adjacent seats remain there.
        let dave = app.token("dave");
        let row3: Vec<&str> = seats[12..18].iter().map(String::as_str).collect();
        let body = app.hold_seats(&dave, &event_id, &[row3[0], row3[3]]).await;
        data(&body, "holdSeats");

        let body = app.hold_best(&carol, &event_id, 3, None).await;
        let hold = data(&body, "holdBestAvailable");
        assert_eq!(hold["status"], "ACTIVE");
        let held = hold["seats"].as_array().expect("seats");
        assert_eq!(held.len(), 3);
        let row = held[0]["row"].as_str().expect("row");
        assert!(
            held.iter().all(|s| s["row"] == row),
            "all in one row: {hold}"
        );
        let mut numbers: Vec<i64> = held
            .iter()
            .map(|s| s["number"].as_i64().expect("n"))
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers[1], numbers[0] + 1);
        assert_eq!(numbers[2], numbers[1] + 1);
        assert_eq!(
            row, "R2",
            "R3 (dearest) has no three adjacent free seats, so R2: {hold}"
        );

        // count < 1, a missing section, and more seats than are free.
        let body = app.hold_best(&carol, &event_id, 0, None).await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT");
        let body = app.hold_best(&carol, &event_id, 1, Some("Nope")).await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT");
        let body = app.hold_best(&carol, &event_id, 2, Some("Main")).await;
        assert_eq!(
            data(&body, "holdBestAvailable")["seats"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        // Take everything but 1 seat, then ask for 2.
        let free: Vec<String> = app
            .seat_statuses(&event_id)
            .await
            .into_iter()
            .filter(|(_, s)| s == "AVAILABLE")
            .map(|(id, _)| id)
            .collect();
        let erin = app.token("erin");
        for chunk in free[1..].chunks(10) {
            let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
            data(&app.hold_seats(&erin, &event_id, &ids).await, "holdSeats");
        }
        let body = app.hold_best(&carol, &event_id, 2, None).await;
        assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");
        app.stop().await;
    }
);

both_backends!(
    create_event_is_admin_only_and_validated,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let create = ops::CREATE_EVENT_DETAILS;
        let input = json!({"input": {"name": "  Gala  ", "venue": "Hall", "startsAt": "2031-05-01T19:30:00Z",
        "sections": [{"name": "Floor", "rows": [{"label": "A", "seats": 3, "priceCents": 500}, {"label": "B", "seats": 2, "priceCents": 0}]}]}});
        let body = app
            .gql(Some(&app.token("mallory")), create, input.clone())
            .await;
        assert_eq!(expect_error(&body), "FORBIDDEN");
        let body = app.gql(None, create, input.clone()).await;
        assert_eq!(expect_error(&body), "UNAUTHENTICATED");
        let body = app.gql(Some(&app.admin_token()), create, input).await;
        let event = data(&body, "createEvent");
        assert_eq!(event["name"], "Gala");
        assert_eq!(event["seatCount"], 5);
        assert_eq!(event["available"], 5);

        let with = |mut variables: Value, field: &str, value: Value| {
            variables["input"][field] = value;
            variables
        };
        let good = event_input("X", "F", "A", json!(1), json!(1));
        for bad in [
            event_input("", "F", "A", json!(1), json!(1)),
            with(good.clone(), "sections", json!([])),
            event_input("X", "F", "A", json!(0), json!(1)),
            event_input("X", "F", "A", json!(1), json!(-5)),
            with(
                good.clone(),
                "sections",
                json!([{"name": "F", "rows": [{"label": "A", "seats": 1, "priceCents": 1}, {"label": "A", "seats": 1, "priceCents": 1}]}]),
            ),
            event_input("X\u{0007}", "F", "A", json!(1), json!(1)),
            with(good.clone(), "startsAt", json!("not a date")),
        ] {
            let body = app.gql(Some(&app.admin_token()), create, bad.clone()).await;
            assert_eq!(expect_error(&body), "BAD_USER_INPUT", "{bad}");
        }
        let body = app.gql(None, ops::EVENT_IDS, json!({})).await;
        assert_eq!(
            data(&body, "events").as_array().map(Vec::len),
            Some(1),
            "bad input created nothing"
        );
        app.stop().await;
    }
);

both_backends!(health_and_readiness, |backend| async move {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.readiness().await, 200);
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("/graphiql/app.js"),
        "GraphiQL's page loads its script (tests/api/graphiql.rs checks the rest)"
    );
    assert_eq!(app.get("/metrics").await.status(), 200);
    app.stop().await;
});

#[tokio::test]
async fn demo_event_is_seeded_once() {
    let url = fresh_sqlite_database();
    let app = TestApp::spawn_on(&url, Options::default().set("SEED_DEMO", "true")).await;
    let body = app
        .gql(None, "{ events { id name seatCount } }", json!({}))
        .await;
    let events = data(&body, "events").as_array().expect("events").clone();
    assert_eq!(events.len(), 1);
    assert!(events[0]["seatCount"].as_i64().expect("count") >= 200);
    app.stop().await;
    let again = TestApp::spawn_on(&url, Options::default().set("SEED_DEMO", "true")).await;
    assert_eq!(again.count(None, ops::EVENT_IDS, "events").await, 1);
    again.stop().await;
}
