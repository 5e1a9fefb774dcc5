//! `extendHold`: the holder moves an active hold's expiry by the hold TTL, at most
//! `maxHoldExtensions` times and never past two hours from its creation; the new expiry is
//! published; an expired hold is `HOLD_EXPIRED`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;
use crate::ws::{Protocol, Subscription};

const EXTEND: &str = "mutation($h: ID!, $k: String) { extendHold(holdId: $h, idempotencyKey: $k) { id status expiresAt createdAt extensionsLeft userId seats { id holdExpiresAt } } }";
const HOLD: &str = "mutation($e: ID!, $s: [ID!]!) { holdSeats(eventId: $e, seatIds: $s) { id expiresAt createdAt extensionsLeft userId } }";

/// An event of one row of `seats` seats allowing `extensions` extensions per hold.
async fn event_allowing(app: &TestApp, seats: usize, extensions: i32) -> (String, Vec<String>) {
    let body = app
        .gql(
            Some(&app.admin_token()),
            "mutation($input: CreateEventInput!) { createEvent(input: $input) { id maxHoldExtensions } }",
            json!({"input": {
                "name": "Long Night", "venue": "Hall", "startsAt": "2030-01-01T20:00:00Z",
                "maxHoldExtensions": extensions,
                "sections": [{"name": "Main", "rows": [{"label": "A", "seats": seats, "priceCents": 500}]}]
            }}),
        )
        .await;
    let event = data(&body, "createEvent");
    assert_eq!(event["maxHoldExtensions"], extensions);
    let event_id = event["id"].as_str().expect("id").to_owned();
    let ids = app.seat_ids(&event_id).await;
    (event_id, ids)
}

fn at(value: &Value) -> DateTime<Utc> {
    value.as_str().expect("a time").parse().expect("RFC 3339")
}

both_backends!(
    a_hold_is_extended_exactly_max_times_and_published,
    |backend| async move {
        let app = TestApp::spawn_with(backend, Options::default().set("HOLD_TTL_SECS", 60)).await;
        let alice = app.token("alice");
        let (event_id, seats) = event_allowing(&app, 2, 2).await;
        let body = app
            .gql(Some(&alice), HOLD, json!({"e": event_id, "s": [seats[0]]}))
            .await;
        let hold = data(&body, "holdSeats").clone();
        assert_eq!(hold["extensionsLeft"], 2);
        assert_eq!(hold["userId"], "alice");
        let hold_id = hold["id"].as_str().expect("id");
        let seq = app.seat_map(&event_id).await["seq"].as_i64().expect("seq");
        let mut sub =
            Subscription::seat_changes(&app.base, Protocol::TransportWs, &event_id, Some(seq))
                .await;

        let mut expires = at(&hold["expiresAt"]);
        for left in [1, 0] {
            let body = app.gql(Some(&alice), EXTEND, json!({"h": hold_id})).await;
            let extended = data(&body, "extendHold");
            let next = at(&extended["expiresAt"]);
            assert_eq!(next - expires, chrono::Duration::seconds(60));
            assert_eq!(extended["extensionsLeft"], left);
            assert_eq!(extended["status"], "ACTIVE");
            assert_eq!(at(&extended["seats"][0]["holdExpiresAt"]), next);
            let change = sub.next_change(Duration::from_secs(5)).await;
            assert_eq!(change["seatId"], seats[0].as_str());
            assert_eq!(change["status"], "HELD");
            assert_eq!(at(&change["holdExpiresAt"]), next);
            expires = next;
        }
        let body = app.gql(Some(&alice), EXTEND, json!({"h": hold_id})).await;
        assert_eq!(expect_error(&body), "LIMIT_EXCEEDED");
        assert_eq!(body["errors"][0]["extensions"]["kind"], "EXTENSIONS");
        assert_eq!(body["errors"][0]["extensions"]["limit"], 2);
        sub.close().await;

        // Someone else may not extend it.
        let body = app
            .gql(Some(&app.token("bob")), EXTEND, json!({"h": hold_id}))
            .await;
        assert_eq!(expect_error(&body), "FORBIDDEN");
        app.stop().await;
    }
);

both_backends!(
    an_extension_never_goes_past_two_hours,
    |backend| async move {
        // A TTL of 100 minutes: the first extension is capped at creation + 2 h, the next
        // one would gain nothing.
        let app =
            TestApp::spawn_with(backend, Options::default().set("HOLD_TTL_SECS", 6_000)).await;
        let alice = app.token("alice");
        let (event_id, seats) = event_allowing(&app, 1, 5).await;
        let body = app
            .gql(Some(&alice), HOLD, json!({"e": event_id, "s": [seats[0]]}))
            .await;
        let hold = data(&body, "holdSeats").clone();
        let created = at(&hold["createdAt"]);
        let hold_id = hold["id"].as_str().expect("id");
        let body = app
            .gql(Some(&alice), EXTEND, json!({"h": hold_id, "k": "ext-1"}))
            .await;
        let extended = data(&body, "extendHold");
        assert_eq!(
            at(&extended["expiresAt"]) - created,
            chrono::Duration::hours(2)
        );
        assert_eq!(extended["extensionsLeft"], 4);
        // The same key again: the same answer, no extension used.
        let body = app
            .gql(Some(&alice), EXTEND, json!({"h": hold_id, "k": "ext-1"}))
            .await;
        assert_eq!(data(&body, "extendHold")["extensionsLeft"], 4);
        let body = app.gql(Some(&alice), EXTEND, json!({"h": hold_id})).await;
        assert_eq!(expect_error(&body), "LIMIT_EXCEEDED");
        assert_eq!(body["errors"][0]["extensions"]["kind"], "EXTENSIONS");
        app.stop().await;
    }
);

both_backends!(
    expired_holds_and_paused_events_are_not_extended,
    |backend| async move {
        let app = TestApp::spawn_with(
            backend,
            Options::default()
                .set("HOLD_TTL_SECS", 1)
                .set("SWEEP_INTERVAL_MS", 3_600_000),
        )
        .await;
        let alice = app.token("alice");
        let (event_id, seats) = event_allowing(&app, 2, 3).await;
        let body = app
            .gql(Some(&alice), HOLD, json!({"e": event_id, "s": [seats[0]]}))
            .await;
        let hold_id = data(&body, "holdSeats")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        app.wait_for_hold_status(&alice, &hold_id, "EXPIRED").await;
        let body = app.gql(Some(&alice), EXTEND, json!({"h": hold_id})).await;
        assert_eq!(expect_error(&body), "HOLD_EXPIRED");

        // An event off sale takes no extension either.
        let app = {
            app.stop().await;
            TestApp::spawn_with(backend, Options::default().set("HOLD_TTL_SECS", 60)).await
        };
        let (event_id, seats) = event_allowing(&app, 1, 3).await;
        let body = app
            .gql(Some(&alice), HOLD, json!({"e": event_id, "s": [seats[0]]}))
            .await;
        let hold_id = data(&body, "holdSeats")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let body = app
            .gql(
                Some(&app.admin_token()),
                "mutation($id: ID!) { setEventStatus(id: $id, status: PAUSED) { status } }",
                json!({"id": event_id}),
            )
            .await;
        assert_eq!(data(&body, "setEventStatus")["status"], "PAUSED");
        let body = app.gql(Some(&alice), EXTEND, json!({"h": hold_id})).await;
        assert_eq!(expect_error(&body), "NOT_ON_SALE");
        app.stop().await;
    }
);
