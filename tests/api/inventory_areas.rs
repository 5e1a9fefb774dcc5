//! General-admission areas: places held with seats all-or-nothing, a capacity that cannot be
//! over-sold, counts that every hold lifecycle step moves exactly once, blocked places, and
//! `areaChanges` over WebSocket (in one instance and across instances through Redis).

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;
use crate::ws::{Protocol, Subscription};

const CREATE: &str = "mutation($input: CreateEventInput!) { createEvent(input: $input) { id seatCount available held booked blocked areas { id name categoryId capacity available held booked blocked version } } }";
const HOLD: &str = "mutation($e: ID!, $s: [ID!]!, $a: [AreaQuantityInput!], $k: String) { holdSeats(eventId: $e, seatIds: $s, areas: $a, idempotencyKey: $k) { id status totalCents seats { id status } areas { areaId quantity priceCents } } }";
const MAP: &str = "query($e: ID!) { seatMap(eventId: $e) { seats { id status } areas { id capacity available held booked blocked version } event { seatCount available held booked blocked areas { id available } } } }";
const CONFIRM: &str = "mutation($h: ID!) { confirmHold(holdId: $h) { id status totalCents areas { areaId quantity priceCents } } }";
const BLOCK: &str = "mutation($a: ID!, $q: Int!) { blockAreaPlaces(areaId: $a, quantity: $q) { id capacity available held booked blocked version } }";
const UNBLOCK: &str = "mutation($a: ID!, $q: Int!) { unblockAreaPlaces(areaId: $a, quantity: $q) { id capacity available held booked blocked version } }";
const AREA_CHANGES: &str = "subscription($e: ID!) { areaChanges(eventId: $e) { eventId areaId available held booked blocked version } }";

/// An event with one row of `seats` seats at 1000 cents and one area "Floor" of `capacity`
/// places at 2500 cents, plus `extra` fields; returns the event id, its seat ids and the
/// area id.
async fn event_with_area(
    app: &TestApp,
    seats: i64,
    capacity: i64,
    extra: Value,
) -> (String, Vec<String>, String) {
    let mut input = json!({
        "name": "GA Night", "venue": "Hall", "startsAt": "2030-01-01T20:00:00Z",
        "categories": [{"name": "Floor", "priceCents": 2500}],
        "areas": [{"name": "Floor", "capacity": capacity, "category": "Floor"}],
        "sections": if seats > 0 {
            json!([{"name": "Stalls", "rows": [{"label": "A", "seats": seats, "priceCents": 1000}]}])
        } else {
            json!([])
        }
    });
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        input.extend(extra.clone());
    }
    let body = app
        .gql(Some(&app.admin_token()), CREATE, json!({"input": input}))
        .await;
    let event = data(&body, "createEvent");
    let event_id = event["id"].as_str().expect("event id").to_owned();
    let area_id = event["areas"][0]["id"]
        .as_str()
        .expect("area id")
        .to_owned();
    let seat_ids = if seats > 0 {
        app.seat_ids(&event_id).await
    } else {
        Vec::new()
    };
    (event_id, seat_ids, area_id)
}

async fn hold(
    app: &TestApp,
    token: &str,
    event_id: &str,
    seats: &[&str],
    areas: Value,
    key: Option<&str>,
) -> Value {
    app.gql(
        Some(token),
        HOLD,
        json!({"e": event_id, "s": seats, "a": areas, "k": key}),
    )
    .await
}

fn places(area_id: &str, quantity: i64) -> Value {
    json!([{"areaId": area_id, "quantity": quantity}])
}

async fn map(app: &TestApp, event_id: &str) -> Value {
    let body = app.gql(None, MAP, json!({"e": event_id})).await;
    data(&body, "seatMap").clone()
}

/// (available, held, booked, blocked) of the event's first area on the seat map.
async fn counts(app: &TestApp, event_id: &str) -> (i64, i64, i64, i64) {
    let area = map(app, event_id).await["areas"][0].clone();
    let n = |f: &str| area[f].as_i64().expect(f);
    (n("available"), n("held"), n("booked"), n("blocked"))
}

async fn version(app: &TestApp, event_id: &str) -> i64 {
    map(app, event_id).await["areas"][0]["version"]
        .as_i64()
        .expect("version")
}

fn area_ids(body: &Value) -> &Value {
    &body["errors"][0]["extensions"]["areaIds"]
}

both_backends!(
    seats_and_places_are_held_all_or_nothing,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats, area) = event_with_area(&app, 4, 5, json!({})).await;
        let (alice, bob, carol, dave) = (
            app.token("alice"),
            app.token("bob"),
            app.token("carol"),
            app.token("dave"),
        );
        let m = map(&app, &event_id).await;
        assert_eq!(m["event"]["seatCount"], 9, "4 seats + 5 places: {m}");
        assert_eq!(m["event"]["available"], 9);
        assert_eq!(m["areas"][0]["capacity"], 5);
        assert_eq!(m["areas"][0]["version"], 0);

        let body = app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
        assert!(body["errors"].is_null(), "{body}");
        // A taken seat: nothing of the area is held.
        let body = hold(
            &app,
            &bob,
            &event_id,
            &[&seats[0], &seats[1]],
            places(&area, 2),
            None,
        )
        .await;
        assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");
        assert_eq!(
            body["errors"][0]["extensions"]["seatIds"],
            json!([seats[0]])
        );
        assert_eq!(counts(&app, &event_id).await, (5, 0, 0, 0));
        // Too few places: no seat held, the area named.
        let body = hold(&app, &bob, &event_id, &[&seats[1]], places(&area, 6), None).await;
        assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");
        assert_eq!(area_ids(&body), &json!([area]));
        assert_eq!(app.seat_statuses(&event_id).await[&seats[1]], "AVAILABLE");
        assert_eq!(counts(&app, &event_id).await, (5, 0, 0, 0));

        let body = hold(&app, &bob, &event_id, &[&seats[1]], places(&area, 3), None).await;
        let held = data(&body, "holdSeats");
        assert_eq!(held["totalCents"], 1000 + 3 * 2500);
        assert_eq!(
            held["areas"],
            json!([{"areaId": area, "quantity": 3, "priceCents": 2500}])
        );
        assert_eq!(held["seats"][0]["id"], seats[1].as_str());
        let m = map(&app, &event_id).await;
        assert_eq!(m["areas"][0]["held"], 3);
        assert_eq!(m["areas"][0]["available"], 2);
        assert_eq!(m["areas"][0]["version"], 1);
        assert_eq!(m["event"]["held"], 5, "2 seats + 3 places: {m}");
        assert_eq!(m["event"]["available"], 4);
        assert_eq!(m["event"]["areas"][0]["available"], 2);

        // Places only (seatIds may be []), up to the capacity, then no more.
        let body = hold(&app, &carol, &event_id, &[], places(&area, 2), None).await;
        let held = data(&body, "holdSeats");
        assert_eq!(held["totalCents"], 5000);
        assert_eq!(held["seats"], json!([]));
        let body = hold(&app, &dave, &event_id, &[], places(&area, 1), None).await;
        assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");
        assert_eq!(area_ids(&body), &json!([area]));
        assert_eq!(counts(&app, &event_id).await, (0, 5, 0, 0));
        let body = app
            .gql(
                None,
                "query($id: ID!) { event(id: $id) { seatCount available held areas { held } } }",
                json!({"id": event_id}),
            )
            .await;
        let event = data(&body, "event");
        assert_eq!(
            (
                &event["seatCount"],
                &event["available"],
                &event["held"],
                &event["areas"][0]["held"]
            ),
            (&json!(9), &json!(2), &json!(7), &json!(5))
        );
        app.stop().await;
    }
);

both_backends!(
    a_capacity_of_50_is_never_oversold_by_200_parallel_holds,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, _, area) = event_with_area(&app, 0, 50, json!({})).await;
        let requests = (0..200).map(|i| {
            let token = app.token(&format!("fan-{i}"));
            let (app, event_id, area) = (&app, &event_id, &area);
            async move {
                let body =
                    retrying(|| hold(app, &token, event_id, &[], places(area, 1), None)).await;
                (200, body)
            }
        });
        let results = join_all(requests).await;
        let tallied = tally(&results);
        assert_eq!(tallied.get("OK"), Some(&50), "{tallied:?}");
        assert_eq!(tallied.get("SEAT_UNAVAILABLE"), Some(&150), "{tallied:?}");
        for (_, body) in &results {
            if error_code(body).is_some() {
                assert_eq!(area_ids(body), &json!([area]), "{body}");
            }
        }
        assert_eq!(counts(&app, &event_id).await, (0, 50, 0, 0));
        assert_eq!(version(&app, &event_id).await, 50, "one version per hold");
        app.stop().await;
    }
);

both_backends!(
    release_confirm_cancel_and_retries_move_the_counts_exactly,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats, area) = event_with_area(&app, 2, 10, json!({})).await;
        let alice = app.token("alice");

        // A retry with the same key returns the first hold and holds nothing more.
        let first = hold(&app, &alice, &event_id, &[], places(&area, 2), Some("k-1")).await;
        let again = hold(&app, &alice, &event_id, &[], places(&area, 2), Some("k-1")).await;
        assert_eq!(
            data(&again, "holdSeats")["id"],
            data(&first, "holdSeats")["id"]
        );
        assert_eq!(counts(&app, &event_id).await, (8, 2, 0, 0));
        assert_eq!(version(&app, &event_id).await, 1);

        let body = app
            .gql(Some(&alice), RELEASE_HOLD, json!({"h": hold_id(&first)}))
            .await;
        assert!(body["errors"].is_null(), "{body}");
        assert_eq!(counts(&app, &event_id).await, (10, 0, 0, 0));
        // Releasing again moves nothing.
        let body = app
            .gql(Some(&alice), RELEASE_HOLD, json!({"h": hold_id(&first)}))
            .await;
        assert!(error_code(&body).is_some(), "{body}");
        assert_eq!(counts(&app, &event_id).await, (10, 0, 0, 0));
        assert_eq!(version(&app, &event_id).await, 2);

        let body = hold(
            &app,
            &alice,
            &event_id,
            &[&seats[0]],
            places(&area, 3),
            None,
        )
        .await;
        let hold_id = hold_id(&body);
        let body = app.gql(Some(&alice), CONFIRM, json!({"h": hold_id})).await;
        let booking = data(&body, "confirmHold").clone();
        assert_eq!(booking["totalCents"], 1000 + 3 * 2500);
        assert_eq!(
            booking["areas"],
            json!([{"areaId": area, "quantity": 3, "priceCents": 2500}])
        );
        assert_eq!(counts(&app, &event_id).await, (7, 0, 3, 0));
        let m = map(&app, &event_id).await;
        assert_eq!(m["event"]["booked"], 4, "1 seat + 3 places: {m}");

        let body = app
            .gql(Some(&alice), CANCEL_BOOKING, json!({"b": booking["id"]}))
            .await;
        assert_eq!(data(&body, "cancelBooking")["status"], "CANCELLED");
        assert_eq!(counts(&app, &event_id).await, (10, 0, 0, 0));
        let body = app
            .gql(Some(&alice), CANCEL_BOOKING, json!({"b": booking["id"]}))
            .await;
        assert_eq!(data(&body, "cancelBooking")["status"], "CANCELLED");
        assert_eq!(counts(&app, &event_id).await, (10, 0, 0, 0));
        assert_eq!(
            version(&app, &event_id).await,
            5,
            "hold, release, hold, confirm, cancel"
        );
        app.stop().await;
    }
);

both_backends!(
    expired_places_return_before_any_sweep,
    |backend| async move {
        // A sweep interval far longer than the test: only the lazy path can free the places.
        let app = TestApp::spawn_with(
            backend,
            Options::default()
                .set("HOLD_TTL_SECS", 1)
                .set("SWEEP_INTERVAL_MS", 3_600_000),
        )
        .await;
        let (event_id, _, area) = event_with_area(&app, 0, 2, json!({})).await;
        let (alice, bob) = (app.token("alice"), app.token("bob"));
        let body = hold(&app, &alice, &event_id, &[], places(&area, 2), None).await;
        let alice_hold = hold_id(&body);
        let body = hold(&app, &bob, &event_id, &[], places(&area, 1), None).await;
        assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");

        wait_until(
            "the run-out places show available",
            Duration::from_secs(5),
            || async { counts(&app, &event_id).await == (2, 0, 0, 0) },
        )
        .await;
        let body = hold(&app, &bob, &event_id, &[], places(&area, 1), None).await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
        assert_eq!(counts(&app, &event_id).await, (1, 1, 0, 0));
        let body = app
            .gql(Some(&alice), CONFIRM, json!({"h": alice_hold}))
            .await;
        assert_eq!(expect_error(&body), "HOLD_EXPIRED");
        assert_eq!(
            counts(&app, &event_id).await,
            (1, 1, 0, 0),
            "bob's place stays"
        );
        app.stop().await;
    }
);

both_backends!(
    the_sweeper_returns_expired_places_once,
    |backend| async move {
        let app = TestApp::spawn_with(
            backend,
            Options::default()
                .set("HOLD_TTL_SECS", 1)
                .set("SWEEP_INTERVAL_MS", 200),
        )
        .await;
        let (event_id, seats, area) = event_with_area(&app, 2, 4, json!({})).await;
        let alice = app.token("alice");
        let body = hold(
            &app,
            &alice,
            &event_id,
            &[&seats[0]],
            places(&area, 3),
            None,
        )
        .await;
        let hold_id = hold_id(&body);
        assert_eq!(version(&app, &event_id).await, 1);
        wait_until(
            "the sweeper returns the places",
            Duration::from_secs(10),
            || async { version(&app, &event_id).await == 2 },
        )
        .await;
        assert_eq!(counts(&app, &event_id).await, (4, 0, 0, 0));
        app.wait_for_hold_status(&alice, &hold_id, "EXPIRED").await;
        // Later sweeps find nothing more to move.
        let body = hold(&app, &alice, &event_id, &[], places(&area, 4), None).await;
        assert!(body["errors"].is_null(), "{body}");
        assert_eq!(counts(&app, &event_id).await.1, 4);
        app.stop().await;
    }
);

both_backends!(area_arguments_are_checked, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, seats, area) = event_with_area(&app, 2, 10, json!({})).await;
    let (_, _, other_area) = event_with_area(&app, 0, 10, json!({})).await;
    let alice = app.token("alice");
    for (seat_ids, areas, why) in [
        (vec![], json!([]), "no seats and no areas"),
        (vec![], Value::Null, "no seats and no areas"),
        (vec![seats[0].as_str()], places(&area, 0), "quantity 0"),
        (vec![], places(&area, -2), "negative quantity"),
        (
            vec![],
            json!([{"areaId": area, "quantity": 1}, {"areaId": area, "quantity": 2}]),
            "a repeated area",
        ),
        (vec![], places(&other_area, 1), "another event's area"),
    ] {
        let body = hold(&app, &alice, &event_id, &seat_ids, areas, None).await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT", "{why}: {body}");
    }
    assert_eq!(counts(&app, &event_id).await, (10, 0, 0, 0));
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "AVAILABLE");
    // An area must name one of the event's categories.
    let body = app
        .gql(
            Some(&app.admin_token()),
            CREATE,
            json!({"input": {
                "name": "X", "venue": "Hall", "startsAt": "2030-01-01T20:00:00Z",
                "sections": [],
                "areas": [{"name": "Floor", "capacity": 5, "category": "Nope"}]
            }}),
        )
        .await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT", "{body}");
    app.stop().await;
});

both_backends!(limits_count_seats_and_places, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, seats, area) = event_with_area(
        &app,
        4,
        20,
        json!({"maxSeatsPerOrder": 3, "maxSeatsPerBuyer": 5}),
    )
    .await;
    let (alice, bob) = (app.token("alice"), app.token("bob"));
    let body = hold(
        &app,
        &alice,
        &event_id,
        &[&seats[0]],
        places(&area, 3),
        None,
    )
    .await;
    assert_eq!(expect_error(&body), "LIMIT_EXCEEDED");
    assert_eq!(body["errors"][0]["extensions"]["kind"], "ORDER");
    assert_eq!(body["errors"][0]["extensions"]["limit"], 3);
    let body = hold(
        &app,
        &alice,
        &event_id,
        &[&seats[0]],
        places(&area, 2),
        None,
    )
    .await;
    assert!(body["errors"].is_null(), "{body}");
    let body = hold(&app, &alice, &event_id, &[], places(&area, 2), None).await;
    assert!(body["errors"].is_null(), "{body}");
    // 5 held: one more seat or place is over the buyer's limit.
    let body = hold(&app, &alice, &event_id, &[], places(&area, 1), None).await;
    assert_eq!(expect_error(&body), "LIMIT_EXCEEDED");
    assert_eq!(body["errors"][0]["extensions"]["kind"], "BUYER");
    assert_eq!(body["errors"][0]["extensions"]["limit"], 5);
    let body = hold(&app, &alice, &event_id, &[&seats[1]], json!([]), None).await;
    assert_eq!(expect_error(&body), "LIMIT_EXCEEDED");
    // Another buyer is unaffected.
    let body = hold(&app, &bob, &event_id, &[&seats[1]], places(&area, 2), None).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(counts(&app, &event_id).await, (14, 6, 0, 0));
    app.stop().await;
});

both_backends!(admins_block_and_unblock_places, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, _, area) = event_with_area(&app, 2, 5, json!({})).await;
    let (admin, alice) = (app.admin_token(), app.token("alice"));
    let body = app
        .gql(Some(&alice), BLOCK, json!({"a": area, "q": 1}))
        .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    let body = app
        .gql(Some(&alice), UNBLOCK, json!({"a": area, "q": 1}))
        .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");

    let body = app
        .gql(Some(&admin), BLOCK, json!({"a": area, "q": 3}))
        .await;
    let blocked = data(&body, "blockAreaPlaces");
    assert_eq!(
        (
            &blocked["available"],
            &blocked["blocked"],
            &blocked["version"]
        ),
        (&json!(2), &json!(3), &json!(1))
    );
    let m = map(&app, &event_id).await;
    assert_eq!(m["event"]["blocked"], 3, "{m}");
    assert_eq!(m["event"]["seatCount"], 7);
    assert_eq!(m["event"]["available"], 4);
    // Blocked places are never held.
    let body = hold(&app, &alice, &event_id, &[], places(&area, 3), None).await;
    assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");
    let body = hold(&app, &alice, &event_id, &[], places(&area, 1), None).await;
    assert!(body["errors"].is_null(), "{body}");
    // Only 1 place is free now.
    let body = app
        .gql(Some(&admin), BLOCK, json!({"a": area, "q": 2}))
        .await;
    assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");
    assert_eq!(area_ids(&body), &json!([area]));

    for q in [4, 0] {
        let body = app
            .gql(Some(&admin), UNBLOCK, json!({"a": area, "q": q}))
            .await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT", "unblock {q}: {body}");
    }
    assert_eq!(counts(&app, &event_id).await, (1, 1, 0, 3));
    let body = app
        .gql(Some(&admin), UNBLOCK, json!({"a": area, "q": 2}))
        .await;
    let area_now = data(&body, "unblockAreaPlaces");
    assert_eq!(
        (
            &area_now["available"],
            &area_now["blocked"],
            &area_now["held"]
        ),
        (&json!(3), &json!(1), &json!(1))
    );
    assert_eq!(counts(&app, &event_id).await, (3, 1, 0, 1));
    app.stop().await;
});

/// Holds one place at a time (each by a new buyer) until the subscriber sees a change: the
/// server may not have registered it yet when the first hold commits, and there is no replay.
/// Returns the first change it sees and how many places were held.
async fn hold_until_seen(
    app: &TestApp,
    sub: &mut Subscription,
    event_id: &str,
    area: &str,
) -> (Value, i64) {
    for held in 1..=5 {
        let token = app.token(&format!("fan-{held}"));
        let body = hold(app, &token, event_id, &[], places(area, 1), None).await;
        assert!(body["errors"].is_null(), "{body}");
        if let Some(payload) = sub.next(Duration::from_secs(2)).await {
            assert!(payload["errors"].is_null(), "subscription error: {payload}");
            return (payload["data"]["areaChanges"].clone(), held);
        }
    }
    panic!("no area change arrived");
}

/// The next `areaChanges` payload, panicking if none arrives in time.
async fn next_area_change(sub: &mut Subscription) -> Value {
    let payload = sub
        .next(Duration::from_secs(10))
        .await
        .expect("an area change within the timeout");
    assert!(payload["errors"].is_null(), "subscription error: {payload}");
    payload["data"]["areaChanges"].clone()
}

both_backends!(area_changes_arrive_over_websocket, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, _, area) = event_with_area(&app, 0, 5, json!({})).await;
    let before = version(&app, &event_id).await;
    let mut sub = Subscription::start(
        &app.base,
        Protocol::TransportWs,
        json!({}),
        AREA_CHANGES,
        json!({"e": event_id}),
    )
    .await;
    let (change, held) = hold_until_seen(&app, &mut sub, &event_id, &area).await;
    assert_eq!(change["areaId"], area.as_str());
    assert_eq!(change["eventId"], event_id.as_str());
    assert!(
        change["version"].as_i64().expect("version") > before,
        "{change}"
    );
    // Each hold took one place; the change shows the counts as committed by one of them.
    let shown = change["held"].as_i64().expect("held");
    assert!((1..=held).contains(&shown), "{change}");
    assert_eq!(change["available"].as_i64(), Some(5 - shown));
    let body = app
        .gql(Some(&app.admin_token()), BLOCK, json!({"a": area, "q": 1}))
        .await;
    assert!(body["errors"].is_null(), "{body}");
    // Versions only increase, up to the block's change.
    let mut last = change;
    loop {
        let next = next_area_change(&mut sub).await;
        assert!(
            next["version"].as_i64() > last["version"].as_i64(),
            "{next} after {last}"
        );
        if next["blocked"] == 1 {
            break;
        }
        last = next;
    }
    sub.close().await;
    app.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn area_changes_cross_instances_through_redis() {
    let options = Options::default().set("REDIS_URL", redis_url());
    let a = TestApp::spawn_with(Backend::Postgres, options.clone()).await;
    let b = TestApp::spawn_on(&a.database_url, options).await;
    let (event_id, _, area) = event_with_area(&a, 0, 5, json!({})).await;
    let mut sub = Subscription::start(
        &b.base,
        Protocol::TransportWs,
        json!({}),
        AREA_CHANGES,
        json!({"e": event_id}),
    )
    .await;
    let (change, _) = hold_until_seen(&a, &mut sub, &event_id, &area).await;
    assert_eq!(change["areaId"], area.as_str());
    assert!(
        change["version"].as_i64().expect("version") >= 1,
        "{change}"
    );
    assert_eq!(
        change["held"].as_i64().expect("held"),
        change["version"].as_i64().expect("v")
    );
    sub.close().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paid_places_are_booked_then_freed_and_refunded_when_the_event_is_cancelled() {
    use crate::payments::{COMPLETE, START, pay, payments, stripe_base};
    const SET_STATUS: &str =
        "mutation($id: ID!, $s: EventStatus!) { setEventStatus(id: $id, status: $s) { status } }";
    let app = TestApp::spawn_with(Backend::Postgres, payments(&stripe_base())).await;
    let (event_id, seats, area) = event_with_area(&app, 2, 10, json!({})).await;
    let (alice, bob) = (app.token("alice"), app.token("bob"));
    let body = hold(
        &app,
        &alice,
        &event_id,
        &[&seats[0]],
        places(&area, 2),
        None,
    )
    .await;
    let paid_hold = hold_id(&body);
    let body = app
        .gql(Some(&alice), START, json!({"h": paid_hold, "k": "pay-ga"}))
        .await;
    let checkout = data(&body, "startCheckout").clone();
    assert_eq!(
        checkout["amountCents"],
        1000 + 2 * 2500,
        "places are paid for"
    );
    let intent = checkout["paymentIntentId"].as_str().expect("intent");
    assert_eq!(pay(&app.client, intent, "pm_card_visa").await, 200);
    let body = app
        .gql(Some(&alice), COMPLETE, json!({"h": paid_hold}))
        .await;
    let booking_id = data(&body, "completeCheckout")["id"]
        .as_str()
        .expect("booking")
        .to_owned();
    assert_eq!(counts(&app, &event_id).await, (8, 0, 2, 0));
    // Bob's hold is still active when the event is cancelled.
    let body = hold(&app, &bob, &event_id, &[], places(&area, 3), None).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(counts(&app, &event_id).await, (5, 3, 2, 0));

    let body = app
        .gql(
            Some(&app.admin_token()),
            SET_STATUS,
            json!({"id": event_id, "s": "CANCELLED"}),
        )
        .await;
    assert_eq!(data(&body, "setEventStatus")["status"], "CANCELLED");
    wait_until(
        "the event's places are all free",
        Duration::from_secs(15),
        || async { counts(&app, &event_id).await == (10, 0, 0, 0) },
    )
    .await;
    wait_until(
        "the paid booking is refunded",
        Duration::from_secs(15),
        || async {
            let body = app
                .gql(Some(&alice), "{ myBookings { id status } }", json!({}))
                .await;
            data(&body, "myBookings").as_array().is_some_and(|b| {
                b.iter()
                    .any(|b| b["id"] == booking_id.as_str() && b["status"] == "REFUNDED")
            })
        },
    )
    .await;
    // Cancelling again moves nothing.
    let body = app
        .gql(
            Some(&app.admin_token()),
            SET_STATUS,
            json!({"id": event_id, "s": "CANCELLED"}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(counts(&app, &event_id).await, (10, 0, 0, 0));
    app.stop().await;
}

both_backends!(
    a_sold_out_area_is_refused_at_the_gate,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, _, area) = event_with_area(&app, 0, 3, json!({})).await;
        let body = hold(
            &app,
            &app.token("alice"),
            &event_id,
            &[],
            places(&area, 3),
            None,
        )
        .await;
        assert!(body["errors"].is_null(), "{body}");
        for i in 0..5 {
            let token = app.token(&format!("late-{i}"));
            let body = hold(&app, &token, &event_id, &[], places(&area, 1), None).await;
            assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");
            assert_eq!(area_ids(&body), &json!([area]));
        }
        let metrics = app.metrics().await;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("onsale_seat_gate_rejections_total{why=\"sold_out\"}")),
            "the gate answered for the sold-out area: {metrics}"
        );
        assert_eq!(counts(&app, &event_id).await, (0, 3, 0, 0));
        app.stop().await;
    }
);

both_backends!(
    the_database_refuses_counts_beyond_capacity,
    |backend| async move {
        use sea_orm::{ConnectionTrait, Database};
        let app = TestApp::spawn(backend).await;
        let (event_id, _, area) = event_with_area(&app, 0, 4, json!({})).await;
        let conn = Database::connect(&app.database_url).await.expect("connect");
        for (sql, why) in [
            (
                "UPDATE areas SET held = 3, booked = 2 WHERE id = {id}",
                "over capacity",
            ),
            (
                "UPDATE areas SET blocked = 5 WHERE id = {id}",
                "over capacity",
            ),
            ("UPDATE areas SET held = -1 WHERE id = {id}", "negative"),
        ] {
            let err = conn
                .execute_unprepared(&sql.replace("{id}", &area))
                .await
                .expect_err(why);
            assert!(err.to_string().contains("ck_areas_counts"), "{why}: {err}");
        }
        conn.execute_unprepared(&format!(
            "UPDATE areas SET held = 2, booked = 2 WHERE id = {area}"
        ))
        .await
        .expect("exactly the capacity is allowed");
        assert_eq!(counts(&app, &event_id).await, (0, 2, 2, 0));
        conn.close().await.expect("close");
        app.stop().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_requests_hold_places_too() {
    const REQUEST: &str = "mutation($e: ID!, $s: [ID!]!, $a: [AreaQuantityInput!], $k: String) { requestSeats(eventId: $e, seatIds: $s, areas: $a, idempotencyKey: $k) { id status } }";
    const STATUS: &str = "query($id: ID!) { seatRequest(id: $id) { status errorCode hold { id totalCents seats { id } areas { areaId quantity priceCents } } } }";
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options::default().set("REDIS_URL", redis_url()),
    )
    .await;
    let (event_id, seats, area) = event_with_area(&app, 2, 3, json!({})).await;
    let settled = |token: String, body: Value| {
        let app = &app;
        async move {
            let id = data(&body, "requestSeats")["id"]
                .as_str()
                .expect("request id")
                .to_owned();
            wait_for("the request is answered", Duration::from_secs(15), || {
                let (token, id) = (token.clone(), id.clone());
                async move {
                    let body = app.gql(Some(&token), STATUS, json!({"id": id})).await;
                    let request = data(&body, "seatRequest").clone();
                    (request["status"] != "QUEUED").then_some(request)
                }
            })
            .await
        }
    };
    let alice = app.token("alice");
    let body = app
        .gql(
            Some(&alice),
            REQUEST,
            json!({"e": event_id, "s": [seats[0]], "a": places(&area, 2), "k": "q-1"}),
        )
        .await;
    let request = settled(alice.clone(), body).await;
    assert!(request["errorCode"].is_null(), "{request}");
    assert_eq!(request["hold"]["totalCents"], 1000 + 2 * 2500);
    assert_eq!(
        request["hold"]["areas"],
        json!([{"areaId": area, "quantity": 2, "priceCents": 2500}])
    );
    assert_eq!(counts(&app, &event_id).await, (1, 2, 0, 0));
    // Too many places: answered as holdSeats would, and the seat stays free.
    let bob = app.token("bob");
    let body = app
        .gql(
            Some(&bob),
            REQUEST,
            json!({"e": event_id, "s": [seats[1]], "a": places(&area, 2), "k": "q-2"}),
        )
        .await;
    let request = settled(bob, body).await;
    assert_eq!(request["errorCode"], "SEAT_UNAVAILABLE", "{request}");
    assert_eq!(app.seat_statuses(&event_id).await[&seats[1]], "AVAILABLE");
    assert_eq!(counts(&app, &event_id).await, (1, 2, 0, 0));
    // Nothing at all asked for is refused at once.
    let body = app
        .gql(
            Some(&alice),
            REQUEST,
            json!({"e": event_id, "s": [], "a": []}),
        )
        .await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    app.stop().await;
}

both_backends!(
    booked_places_have_tickets_and_show_in_the_report_the_csv_and_webhook_data,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats, area_id) = event_with_area(&app, 4, 10, json!({})).await;
        let alice = app.token("alice");
        let held = hold(
            &app,
            &alice,
            &event_id,
            &[&seats[0]],
            places(&area_id, 3),
            None,
        )
        .await;
        let hold_id = data(&held, "holdSeats")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let body = app
            .gql(
                Some(&alice),
                "mutation($h: ID!) { confirmHold(holdId: $h) { id totalCents tickets { seatId areaId code } } }",
                json!({"h": hold_id}),
            )
            .await;
        let booking = data(&body, "confirmHold");
        assert_eq!(booking["totalCents"], 1000 + 3 * 2500);
        let tickets = booking["tickets"].as_array().expect("tickets");
        assert_eq!(
            tickets.len(),
            4,
            "one per seat and one per place: {tickets:?}"
        );
        assert_eq!(
            tickets
                .iter()
                .filter(|t| t["seatId"] == seats[0].as_str())
                .count(),
            1
        );
        assert_eq!(
            tickets
                .iter()
                .filter(|t| t["areaId"] == area_id.as_str())
                .count(),
            3
        );
        let place_code = tickets
            .iter()
            .find(|t| t["areaId"] == area_id.as_str())
            .and_then(|t| t["code"].as_str())
            .expect("a place's code")
            .to_owned();
        let body = app
            .gql(
                Some(&app.admin_token()),
                "mutation($c: String!, $e: ID!) { checkIn(code: $c, eventId: $e) { ticket { areaId } } }",
                json!({"c": place_code, "e": event_id}),
            )
            .await;
        assert_eq!(data(&body, "checkIn")["ticket"]["areaId"], area_id.as_str());

        let body = app
            .gql(
                Some(&app.admin_token()),
                "query($e: ID!) { salesReport(eventId: $e) { booked held available checkedIn grossCents byCategory { name booked available checkedIn grossCents } } }",
                json!({"e": event_id}),
            )
            .await;
        let report = data(&body, "salesReport");
        assert_eq!(report["booked"], 4, "{report}");
        assert_eq!(report["available"], 3 + 7);
        assert_eq!(report["checkedIn"], 1);
        assert_eq!(report["grossCents"], 1000 + 3 * 2500);
        let floor = report["byCategory"]
            .as_array()
            .expect("lines")
            .iter()
            .find(|l| l["name"] == "Floor")
            .expect("the Floor line")
            .clone();
        assert_eq!(floor["booked"], 3);
        assert_eq!(floor["available"], 7);
        assert_eq!(floor["checkedIn"], 1);
        assert_eq!(floor["grossCents"], 3 * 2500);

        let csv = app
            .client
            .get(format!("{}/admin/events/{event_id}/bookings.csv", app.base))
            .bearer_auth(app.admin_token())
            .send()
            .await
            .expect("csv")
            .text()
            .await
            .expect("csv text");
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        assert_eq!(rows.len(), 4, "{csv}");
        let place_rows: Vec<_> = rows.iter().filter(|r| &r[8] == "Floor").collect();
        assert_eq!(place_rows.len(), 3, "{csv}");
        for r in &place_rows {
            assert_eq!(
                (&r[5], &r[6], &r[7]),
                ("", "", ""),
                "no seat cells for a place"
            );
            assert_eq!(&r[9], "Floor");
            assert_eq!(&r[10], "2500");
        }
        assert_eq!(
            place_rows.iter().filter(|r| !r[11].is_empty()).count(),
            1,
            "one checked in"
        );
        app.stop().await;
    }
);

/// A seat map served from memory is not kept past the moment a shown hold's places run out,
/// even with nothing committed (the sweeper is held off): the next read shows them available.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stored_map_frees_the_places_of_a_hold_that_ran_out() {
    let options = Options::default()
        .set("HOLD_TTL_SECS", 1)
        .set("SWEEP_INTERVAL_MS", 600_000);
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let (event_id, _, area_id) = event_with_area(&app, 2, 10, json!({})).await;
    let alice = app.token("alice");
    let body = hold(&app, &alice, &event_id, &[], places(&area_id, 4), None).await;
    assert!(body["errors"].is_null(), "{body}");
    let first = map(&app, &event_id).await;
    assert_eq!(first["areas"][0]["held"], 4);
    assert_eq!(
        map(&app, &event_id).await,
        first,
        "served again while the hold lasts"
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let after = map(&app, &event_id).await;
    assert_eq!(after["areas"][0]["held"], 0, "{after}");
    assert_eq!(after["areas"][0]["available"], 10);
    assert_eq!(after["event"]["available"], 12);
    app.stop().await;
}

/// 1,000 holds of 1–4 places at once on an area of 300, through two instances: the places
/// held never exceed the capacity and fill it, the counts equal the sum of the holds that
/// succeeded, and `areaChanges` on the other instance ends at the final counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_holds_through_two_instances_never_oversell_an_area() {
    let options = Options::default()
        .set("REDIS_URL", redis_url())
        .set("RATE_LIMIT_USER_PER_SEC", 0);
    let a = std::sync::Arc::new(TestApp::spawn_with(Backend::Postgres, options.clone()).await);
    let b = std::sync::Arc::new(TestApp::spawn_on(&a.database_url, options).await);
    let (event_id, _, area) = event_with_area(&a, 0, 300, json!({})).await;
    let mut sub = Subscription::start(
        &b.base,
        Protocol::TransportWs,
        json!({}),
        AREA_CHANGES,
        json!({"e": event_id}),
    )
    .await;
    // The subscription is live once it has seen a change (warm-up holds of one place).
    let (_, warm_up) = hold_until_seen(&a, &mut sub, &event_id, &area).await;

    let holds = (0..1000).map(|i| {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (event_id, area) = (event_id.clone(), area.clone());
        async move {
            let quantity = 1 + (i % 4) as i64;
            let token = app.token(&format!("ga-{i}"));
            let body = hold(&app, &token, &event_id, &[], places(&area, quantity), None).await;
            (quantity, body)
        }
    });
    let answers = join_all(holds).await;
    let mut held = warm_up;
    let mut refused_single = false;
    for (quantity, body) in &answers {
        match error_code(body).as_deref() {
            None => held += quantity,
            Some("SEAT_UNAVAILABLE") => {
                assert_eq!(area_ids(body), &json!([area]), "{body}");
                refused_single |= *quantity == 1;
            }
            Some("RETRY_LATER") => {}
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    assert!(held <= 300, "{held} places held of 300");
    if refused_single {
        assert_eq!(held, 300, "a single place was refused, so none was left");
    } else {
        assert!(
            held >= 297,
            "only requests larger than what was left failed: {held}"
        );
    }
    let m = map(&a, &event_id).await;
    let counts = &m["areas"][0];
    assert_eq!(counts["held"], held, "{counts}");
    assert_eq!(counts["available"], 300 - held);
    let version = counts["version"].as_i64().expect("version");
    // The other instance's subscribers converge to the same counts.
    loop {
        let change = next_area_change(&mut sub).await;
        if change["version"].as_i64() == Some(version) {
            assert_eq!(change["held"], held, "{change}");
            assert_eq!(change["available"], 300 - held);
            break;
        }
        assert!(change["version"].as_i64().expect("v") < version, "{change}");
    }
    sub.close().await;
}
