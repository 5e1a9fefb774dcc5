//! Limits per event: seats per hold (`maxSeatsPerOrder`) and per buyer (`maxSeatsPerBuyer`,
//! across active holds and confirmed bookings), enforced in the transaction that takes the
//! seats, so parallel holds cannot beat them. Over a limit: `LIMIT_EXCEEDED`.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

const CREATE: &str = "mutation($input: CreateEventInput!) { createEvent(input: $input) { id maxSeatsPerOrder maxSeatsPerBuyer } }";
const BEST: &str =
    "mutation($e: ID!, $n: Int!) { holdBestAvailable(eventId: $e, count: $n) { id seats { id } } }";

/// An event of one row of `seats` seats with these limits; returns its id and seat ids.
async fn event_with_limits(app: &TestApp, seats: usize, limits: Value) -> (String, Vec<String>) {
    let mut input = json!({
        "name": "Limited Night",
        "venue": "Hall",
        "startsAt": "2030-01-01T20:00:00Z",
        "sections": [{"name": "Main", "rows": [{"label": "A", "seats": seats, "priceCents": 500}]}]
    });
    for (k, v) in limits.as_object().expect("object") {
        input[k] = v.clone();
    }
    let body = app
        .gql(Some(&app.admin_token()), CREATE, json!({"input": input}))
        .await;
    let event = data(&body, "createEvent");
    for (k, v) in limits.as_object().expect("object") {
        assert_eq!(&event[k], v, "{k} is shown as set");
    }
    let event_id = event["id"].as_str().expect("id").to_owned();
    let ids = app.seat_ids(&event_id).await;
    (event_id, ids)
}

fn limit_of(body: &Value) -> (String, i64, String) {
    let ext = &body["errors"][0]["extensions"];
    (
        expect_error(body),
        ext["limit"].as_i64().unwrap_or(-1),
        ext["kind"].as_str().unwrap_or_default().to_owned(),
    )
}

both_backends!(
    a_hold_over_the_order_limit_is_refused,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let alice = app.token("alice");
        let (event_id, seats) = event_with_limits(&app, 6, json!({"maxSeatsPerOrder": 2})).await;
        let body = app
            .hold_seats(&alice, &event_id, &[&seats[0], &seats[1], &seats[2]])
            .await;
        assert_eq!(
            limit_of(&body),
            ("LIMIT_EXCEEDED".into(), 2, "ORDER".into())
        );
        let body = app
            .gql(Some(&alice), BEST, json!({"e": event_id, "n": 3}))
            .await;
        assert_eq!(
            limit_of(&body),
            ("LIMIT_EXCEEDED".into(), 2, "ORDER".into())
        );
        assert!(
            app.seat_statuses(&event_id)
                .await
                .values()
                .all(|s| s == "AVAILABLE")
        );
        let body = app
            .hold_seats(&alice, &event_id, &[&seats[0], &seats[1]])
            .await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
        // The server-wide MAX_SEATS_PER_HOLD (10) stays BAD_USER_INPUT.
        let many: Vec<String> = (0..11).map(|i| (i + 1).to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let body = app.hold_seats(&alice, &event_id, &many).await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT");
        app.stop().await;
    }
);

both_backends!(
    parallel_holds_of_one_buyer_cannot_beat_the_buyer_limit,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let alice = app.token("alice");
        let bob = app.token("bob");
        let (event_id, seats) = event_with_limits(&app, 30, json!({"maxSeatsPerBuyer": 3})).await;
        // A confirmed booking counts: one seat booked, two left for alice.
        let body = app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
        let hold = data(&body, "holdSeats")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let body = app
            .gql(Some(&alice), CONFIRM_HOLD, json!({"h": hold}))
            .await;
        data(&body, "confirmHold");

        let answers = join_all(
            seats[1..21]
                .iter()
                .map(|seat| async { app.hold_seats(&alice, &event_id, &[seat]).await }),
        )
        .await;
        let mut won = 0;
        for body in &answers {
            if body["errors"].is_null() {
                won += 1;
            } else {
                assert_eq!(
                    limit_of(body),
                    ("LIMIT_EXCEEDED".into(), 3, "BUYER".into()),
                    "{body}"
                );
            }
        }
        assert_eq!(won, 2, "exactly the two seats left under the limit");
        let held = app
            .seat_statuses(&event_id)
            .await
            .values()
            .filter(|s| *s == "HELD")
            .count();
        assert_eq!(held, 2);

        // Bob is unaffected: three seats of his own.
        let body = app
            .hold_seats(&bob, &event_id, &[&seats[21], &seats[22], &seats[23]])
            .await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
        let body = app.hold_seats(&bob, &event_id, &[&seats[24]]).await;
        assert_eq!(
            limit_of(&body),
            ("LIMIT_EXCEEDED".into(), 3, "BUYER".into())
        );

        // Releasing gives room again; clearing the limit lifts it.
        let mine = app
            .gql(
                Some(&alice),
                "{ myHolds(status: ACTIVE) { id } }",
                json!({}),
            )
            .await;
        let first = data(&mine, "myHolds")[0]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let body = app
            .gql(Some(&alice), RELEASE_HOLD, json!({"h": first}))
            .await;
        data(&body, "releaseHold");
        let body = app.hold_seats(&alice, &event_id, &[&seats[25]]).await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
        let body = app
            .gql(
                Some(&app.admin_token()),
                "mutation($id: ID!) { updateEvent(id: $id, input: {maxSeatsPerBuyer: null}) { maxSeatsPerBuyer } }",
                json!({"id": event_id}),
            )
            .await;
        assert!(data(&body, "updateEvent")["maxSeatsPerBuyer"].is_null());
        let body = app.hold_seats(&alice, &event_id, &[&seats[26]]).await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
        app.stop().await;
    }
);
