//! Event lifecycle and sales windows: only an ON_SALE event inside its window takes holds
//! (`NOT_ON_SALE` otherwise), DRAFT events are invisible to customers, status changes follow
//! the contract's table, and cancelling an event winds up its holds and bookings.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;
use crate::payments::{
    COMPLETE, bookings, held_and_started, intent_status, pay, payments, stripe_base,
};
use crate::ws::{Protocol, Subscription};

const CREATE: &str = "mutation($input: CreateEventInput!) { createEvent(input: $input) { id status onSaleNow salesStartAt salesEndAt } }";
const SET_STATUS: &str = "mutation($id: ID!, $s: EventStatus!) { setEventStatus(id: $id, status: $s) { id status onSaleNow } }";
const UPDATE: &str = "mutation($id: ID!, $in: UpdateEventInput!) { updateEvent(id: $id, input: $in) { id name salesStartAt salesEndAt onSaleNow } }";
const BEST: &str =
    "mutation($e: ID!, $n: Int!) { holdBestAvailable(eventId: $e, count: $n) { id status } }";
const EVENT: &str = "query($id: ID!) { event(id: $id) { id status } }";

/// An event of one row of `seats` seats, with `extra` fields of `CreateEventInput`; returns
/// the answer of `createEvent` and the seat ids.
async fn create(app: &TestApp, seats: usize, extra: Value) -> (Value, Vec<String>) {
    let mut input = json!({
        "name": "Lifecycle Night",
        "venue": "Hall",
        "startsAt": "2030-01-01T20:00:00Z",
        "sections": [{"name": "Main", "rows": [{"label": "A", "seats": seats, "priceCents": 500}]}]
    });
    for (k, v) in extra.as_object().expect("object") {
        input[k] = v.clone();
    }
    let admin = app.admin_token();
    let body = app.gql(Some(&admin), CREATE, json!({"input": input})).await;
    let event = data(&body, "createEvent").clone();
    let map = app
        .gql(
            Some(&admin),
            "query($e: ID!) { seatMap(eventId: $e) { seats { id } } }",
            json!({"e": event["id"]}),
        )
        .await;
    let ids = data(&map, "seatMap")["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();
    (event, ids)
}

async fn set_status(app: &TestApp, event_id: &str, status: &str) -> Value {
    app.gql(
        Some(&app.admin_token()),
        SET_STATUS,
        json!({"id": event_id, "s": status}),
    )
    .await
}

fn id_of(body: &Value, field: &str) -> String {
    data(body, field)["id"].as_str().expect("id").to_owned()
}

both_backends!(
    holds_outside_the_sales_window_are_not_on_sale,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let alice = app.token("alice");
        let (early, early_seats) =
            create(&app, 2, json!({"salesStartAt": "2099-01-01T10:00:00Z"})).await;
        assert_eq!(early["onSaleNow"], false);
        assert_eq!(early["status"], "ON_SALE");
        let event_id = early["id"].as_str().expect("id");
        let body = app.hold_seats(&alice, event_id, &[&early_seats[0]]).await;
        assert_eq!(expect_error(&body), "NOT_ON_SALE");
        let start = body["errors"][0]["extensions"]["salesStartAt"]
            .as_str()
            .expect("salesStartAt");
        assert!(start.starts_with("2099-01-01T10:00:00"), "{start}");
        let body = app
            .gql(Some(&alice), BEST, json!({"e": event_id, "n": 1}))
            .await;
        assert_eq!(expect_error(&body), "NOT_ON_SALE");

        let (late, seats) = create(&app, 2, json!({"salesEndAt": "2001-01-01T00:00:00Z"})).await;
        let body = app
            .hold_seats(&alice, late["id"].as_str().expect("id"), &[&seats[0]])
            .await;
        assert_eq!(expect_error(&body), "NOT_ON_SALE");
        assert!(body["errors"][0]["extensions"]["salesStartAt"].is_null());

        // Opening the window by an update: the same hold now succeeds; nothing was held before.
        let body = app
            .gql(
                Some(&app.admin_token()),
                UPDATE,
                json!({"id": event_id, "in": {"salesStartAt": "2001-01-01T00:00:00Z"}}),
            )
            .await;
        assert_eq!(data(&body, "updateEvent")["onSaleNow"], true);
        let statuses = app.seat_statuses(event_id).await;
        assert!(statuses.values().all(|s| s == "AVAILABLE"));
        let body = app.hold_seats(&alice, event_id, &[&early_seats[0]]).await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
        app.stop().await;
    }
);

both_backends!(
    paused_and_closed_events_take_no_holds_but_confirm_active_ones,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let alice = app.token("alice");
        let (event, seats) = create(&app, 4, json!({})).await;
        let event_id = event["id"].as_str().expect("id");
        let first = app.hold_seats(&alice, event_id, &[&seats[0]]).await;
        let first = id_of(&first, "holdSeats");
        let second = app.hold_seats(&alice, event_id, &[&seats[1]]).await;
        let second = id_of(&second, "holdSeats");

        for (status, hold) in [("PAUSED", &first), ("CLOSED", &second)] {
            let body = set_status(&app, event_id, status).await;
            assert_eq!(data(&body, "setEventStatus")["status"], status);
            assert_eq!(data(&body, "setEventStatus")["onSaleNow"], false);
            let body = app.hold_seats(&alice, event_id, &[&seats[2]]).await;
            assert_eq!(expect_error(&body), "NOT_ON_SALE", "{status}");
            let body = app
                .gql(Some(&alice), BEST, json!({"e": event_id, "n": 1}))
                .await;
            assert_eq!(expect_error(&body), "NOT_ON_SALE", "{status}");
            // An ACTIVE hold is still confirmed.
            let body = app
                .gql(Some(&alice), CONFIRM_HOLD, json!({"h": hold}))
                .await;
            assert_eq!(
                data(&body, "confirmHold")["status"],
                "CONFIRMED",
                "{status}"
            );
        }
        let statuses = app.seat_statuses(event_id).await;
        assert_eq!(statuses[&seats[2]], "AVAILABLE");
        assert_eq!(statuses[&seats[3]], "AVAILABLE");

        // CLOSED -> ON_SALE reopens.
        set_status(&app, event_id, "ON_SALE").await;
        let body = app.hold_seats(&alice, event_id, &[&seats[2]]).await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
        app.stop().await;
    }
);

both_backends!(
    status_changes_follow_the_contracts_table,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event, _) = create(&app, 1, json!({"status": "DRAFT"})).await;
        let event_id = event["id"].as_str().expect("id");
        assert_eq!(event["status"], "DRAFT");
        for refused in ["PAUSED", "CLOSED"] {
            let body = set_status(&app, event_id, refused).await;
            assert_eq!(expect_error(&body), "BAD_USER_INPUT", "DRAFT -> {refused}");
        }
        // The same status changes nothing.
        let body = set_status(&app, event_id, "DRAFT").await;
        assert_eq!(data(&body, "setEventStatus")["status"], "DRAFT");
        for (to, from) in [
            ("ON_SALE", "DRAFT"),
            ("PAUSED", "ON_SALE"),
            ("ON_SALE", "PAUSED"),
            ("CLOSED", "ON_SALE"),
            ("CANCELLED", "CLOSED"),
        ] {
            let body = set_status(&app, event_id, to).await;
            assert_eq!(
                data(&body, "setEventStatus")["status"],
                to,
                "{from} -> {to}"
            );
        }
        for refused in ["DRAFT", "ON_SALE", "PAUSED", "CLOSED"] {
            let body = set_status(&app, event_id, refused).await;
            assert_eq!(expect_error(&body), "BAD_USER_INPUT", "CANCELLED is final");
        }
        let body = set_status(&app, event_id, "CANCELLED").await;
        assert_eq!(data(&body, "setEventStatus")["status"], "CANCELLED");
        // Customers may not change it at all.
        let body = app
            .gql(
                Some(&app.token("alice")),
                SET_STATUS,
                json!({"id": event_id, "s": "ON_SALE"}),
            )
            .await;
        assert_eq!(expect_error(&body), "FORBIDDEN");
        app.stop().await;
    }
);

both_backends!(
    draft_events_are_unknown_to_customers,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let alice = app.token("alice");
        let admin = app.admin_token();
        let (draft, seats) = create(&app, 2, json!({"status": "DRAFT"})).await;
        let event_id = draft["id"].as_str().expect("id");
        let listed = |body: &Value| -> Vec<String> {
            data(body, "events")
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["id"].as_str().expect("id").to_owned())
                .collect()
        };
        for token in [None, Some(alice.as_str())] {
            let body = app.gql(token, EVENT, json!({"id": event_id})).await;
            assert!(data(&body, "event").is_null(), "{body}");
            let body = app.gql(token, "{ events { id } }", json!({})).await;
            assert!(!listed(&body).contains(&event_id.to_owned()));
            let body = app
                .gql(
                    token,
                    "query($e: ID!) { seatMap(eventId: $e) { seq } }",
                    json!({"e": event_id}),
                )
                .await;
            assert_eq!(expect_error(&body), "NOT_FOUND");
        }
        let body = app.hold_seats(&alice, event_id, &[&seats[0]]).await;
        assert_eq!(expect_error(&body), "NOT_FOUND");
        let body = app
            .gql(Some(&alice), BEST, json!({"e": event_id, "n": 1}))
            .await;
        assert_eq!(expect_error(&body), "NOT_FOUND");
        let mut sub =
            Subscription::seat_changes(&app.base, Protocol::TransportWs, event_id, None).await;
        let answer = sub.next(Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{answer}"
        );
        sub.close().await;

        // Admins see it, and their holds are not on sale.
        let body = app.gql(Some(&admin), EVENT, json!({"id": event_id})).await;
        assert_eq!(data(&body, "event")["status"], "DRAFT");
        let body = app.gql(Some(&admin), "{ events { id } }", json!({})).await;
        assert!(listed(&body).contains(&event_id.to_owned()));
        let body = app.hold_seats(&admin, event_id, &[&seats[0]]).await;
        assert_eq!(expect_error(&body), "NOT_ON_SALE");

        // Published, it is there for everyone.
        set_status(&app, event_id, "ON_SALE").await;
        let body = app.gql(None, EVENT, json!({"id": event_id})).await;
        assert_eq!(data(&body, "event")["status"], "ON_SALE");
        app.stop().await;
    }
);

both_backends!(a_sales_window_must_be_well_ordered, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token();
    let body = app
        .gql(
            Some(&admin),
            CREATE,
            json!({"input": {
                "name": "N", "venue": "V", "startsAt": "2030-01-01T20:00:00Z",
                "salesStartAt": "2030-01-01T10:00:00Z", "salesEndAt": "2030-01-01T10:00:00Z",
                "sections": [{"name": "S", "rows": [{"label": "A", "seats": 1, "priceCents": 0}]}]
            }}),
        )
        .await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    let (event, _) = create(
        &app,
        1,
        json!({"salesStartAt": "2030-01-01T10:00:00Z", "salesEndAt": "2030-01-02T10:00:00Z"}),
    )
    .await;
    let event_id = event["id"].as_str().expect("id");
    let body = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({"id": event_id, "in": {"salesStartAt": "2030-01-03T10:00:00Z"}}),
        )
        .await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    // An explicit null clears the end; a left-out field stays.
    let body = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({"id": event_id, "in": {"salesEndAt": null, "name": "Renamed"}}),
        )
        .await;
    let updated = data(&body, "updateEvent");
    assert_eq!(updated["name"], "Renamed");
    assert!(updated["salesEndAt"].is_null());
    assert!(
        updated["salesStartAt"]
            .as_str()
            .expect("kept")
            .starts_with("2030-01-01T10:00:00")
    );
    app.stop().await;
});

/// Active holds, bookings, and what a cancelled event leaves of them.
async fn holds_and_bookings(app: &TestApp, token: &str) -> (Vec<String>, Vec<String>) {
    let body = app
        .gql(
            Some(token),
            "{ myHolds { status } myBookings { status } }",
            json!({}),
        )
        .await;
    let statuses = |field: &str| -> Vec<String> {
        data(&body, field)
            .as_array()
            .expect("list")
            .iter()
            .map(|h| h["status"].as_str().expect("status").to_owned())
            .collect()
    };
    (statuses("myHolds"), statuses("myBookings"))
}

both_backends!(
    cancelling_an_event_releases_holds_and_cancels_bookings,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let alice = app.token("alice");
        let (event, seats) = create(&app, 4, json!({})).await;
        let event_id = event["id"].as_str().expect("id");
        let booked = app
            .hold_seats(&alice, event_id, &[&seats[0], &seats[1]])
            .await;
        let booked = id_of(&booked, "holdSeats");
        let body = app
            .gql(Some(&alice), CONFIRM_HOLD, json!({"h": booked}))
            .await;
        data(&body, "confirmHold");
        app.hold_seats(&alice, event_id, &[&seats[2]]).await;
        let seq_before = app.seat_map(event_id).await["seq"].as_i64().expect("seq");
        let mut sub = Subscription::seat_changes(
            &app.base,
            Protocol::TransportWs,
            event_id,
            Some(seq_before),
        )
        .await;

        let body = set_status(&app, event_id, "CANCELLED").await;
        assert_eq!(data(&body, "setEventStatus")["status"], "CANCELLED");
        let statuses = app.seat_statuses(event_id).await;
        assert!(statuses.values().all(|s| s == "AVAILABLE"), "{statuses:?}");
        let (holds, bookings) = holds_and_bookings(&app, &alice).await;
        assert!(holds.iter().all(|s| s != "ACTIVE"), "{holds:?}");
        assert_eq!(bookings, vec!["CANCELLED"]);
        // Every freed seat is published, in seq order.
        let mut freed = Vec::new();
        for expected_seq in seq_before + 1..=seq_before + 3 {
            let change = sub.next_change(Duration::from_secs(5)).await;
            assert_eq!(change["seq"], expected_seq);
            assert_eq!(change["status"], "AVAILABLE");
            freed.push(change["seatId"].as_str().expect("id").to_owned());
        }
        freed.sort();
        let mut expected = vec![seats[0].clone(), seats[1].clone(), seats[2].clone()];
        expected.sort();
        assert_eq!(freed, expected);
        sub.close().await;

        // Repeating is harmless; new holds are refused.
        let body = set_status(&app, event_id, "CANCELLED").await;
        assert_eq!(data(&body, "setEventStatus")["status"], "CANCELLED");
        assert_eq!(
            app.seat_map(event_id).await["seq"].as_i64(),
            Some(seq_before + 3)
        );
        let body = app.hold_seats(&alice, event_id, &[&seats[3]]).await;
        assert_eq!(expect_error(&body), "NOT_ON_SALE");
        app.stop().await;
    }
);

both_backends!(
    a_cancellation_cut_short_is_finished_by_the_worker,
    |backend| async move {
        use sea_orm::{ConnectionTrait, Database};
        let app = TestApp::spawn_with(
            backend,
            Options::default().set("CHECKOUT_WORKER_INTERVAL_MS", 100),
        )
        .await;
        let alice = app.token("alice");
        let (event, seats) = create(&app, 3, json!({})).await;
        let event_id = event["id"].as_str().expect("id");
        let body = app.hold_seats(&alice, event_id, &[&seats[0]]).await;
        let hold = id_of(&body, "holdSeats");
        let body = app
            .gql(Some(&alice), CONFIRM_HOLD, json!({"h": hold}))
            .await;
        data(&body, "confirmHold");
        app.hold_seats(&alice, event_id, &[&seats[1]]).await;
        // As if the server died right after committing CANCELLED, before any hold or
        // booking was ended.
        let conn = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        conn.execute_unprepared(&format!(
            "UPDATE events SET status = 'CANCELLED' WHERE id = {event_id}"
        ))
        .await
        .expect("cancel behind the server's back");
        let _ = conn.close().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (holds, bookings) = holds_and_bookings(&app, &alice).await;
            if holds.iter().all(|s| s != "ACTIVE") && bookings == vec!["CANCELLED"] {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the worker did not finish the cancellation: {holds:?} {bookings:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let statuses = app.seat_statuses(event_id).await;
        assert!(statuses.values().all(|s| s == "AVAILABLE"), "{statuses:?}");
        app.stop().await;
    }
);

async fn refunded(app: &TestApp, token: &str, booking_id: &str) -> bool {
    bookings(app, token)
        .await
        .iter()
        .any(|b| b["id"] == booking_id && b["status"] == "REFUNDED")
}

/// Pays for one seat of a new event; returns (event id, booking id, payment intent id).
async fn paid_booking(app: &TestApp, token: &str) -> (String, String, String) {
    let (event_id, _, hold_id, _, intent) = held_and_started(app, token).await;
    assert_eq!(pay(&app.client, &intent, "pm_card_visa").await, 200);
    let body = app.gql(Some(token), COMPLETE, json!({"h": hold_id})).await;
    let booking_id = id_of(&body, "completeCheckout");
    wait_until("captured", Duration::from_secs(12), || async {
        intent_status(&app.client, &intent).await == "succeeded"
    })
    .await;
    (event_id, booking_id, intent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_an_event_refunds_paid_bookings_also_after_a_crash() {
    use sea_orm::{ConnectionTrait, Database};
    let app = TestApp::spawn_with(Backend::Postgres, payments(&stripe_base())).await;
    let alice = app.token("alice");
    let (event_id, booking_id, _) = paid_booking(&app, &alice).await;
    let body = set_status(&app, &event_id, "CANCELLED").await;
    assert_eq!(data(&body, "setEventStatus")["status"], "CANCELLED");
    wait_until("refunded", Duration::from_secs(12), || {
        refunded(&app, &alice, &booking_id)
    })
    .await;
    // Again: nothing more happens, the booking stays refunded once.
    let body = set_status(&app, &event_id, "CANCELLED").await;
    assert_eq!(data(&body, "setEventStatus")["status"], "CANCELLED");
    assert!(refunded(&app, &alice, &booking_id).await);

    // A second event whose cancellation is cut short right after CANCELLED committed,
    // with the server down: the restarted server refunds its paid booking.
    let bob = app.token("bob");
    let (event_id, booking_id, _) = paid_booking(&app, &bob).await;
    let url = app.database_url.clone();
    app.stop().await;
    let conn = Database::connect(url.as_str()).await.expect("connect");
    conn.execute_unprepared(&format!(
        "UPDATE events SET status = 'CANCELLED' WHERE id = {event_id}"
    ))
    .await
    .expect("cancelled behind the server's back");
    let _ = conn.close().await;
    let restarted = TestApp::spawn_on(&url, payments(&stripe_base())).await;
    wait_until(
        "refunded after the restart",
        Duration::from_secs(12),
        || refunded(&restarted, &bob, &booking_id),
    )
    .await;
    let statuses = restarted.seat_statuses(&event_id).await;
    assert!(statuses.values().all(|s| s == "AVAILABLE"), "{statuses:?}");
    restarted.stop().await;
}
