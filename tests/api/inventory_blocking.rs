//! Blocked seats: taken off sale by the organizer, never held by anyone (whatever the
//! concurrency), published as seat changes with the event's next `seq`, counted on the event.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;
use crate::ws::{Protocol, Subscription};

const BLOCK: &str = "mutation($e: ID!, $s: [ID!]!, $r: String) { blockSeats(eventId: $e, seatIds: $s, reason: $r) { id status blockedReason } }";
const UNBLOCK: &str =
    "mutation($e: ID!, $s: [ID!]!) { unblockSeats(eventId: $e, seatIds: $s) { id status } }";
const COUNTS: &str = "query($e: ID!) { event(id: $e) { seatCount available held booked blocked } }";

async fn block(app: &TestApp, event_id: &str, seats: &[&str], reason: Option<&str>) -> Value {
    app.gql(
        Some(&app.admin_token()),
        BLOCK,
        json!({"e": event_id, "s": seats, "r": reason}),
    )
    .await
}

both_backends!(
    blocked_seats_are_never_held_and_changes_are_published,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(1, 6).await;
        let seq = app.seat_map(&event_id).await["seq"].as_i64().expect("seq");
        let mut sub =
            Subscription::seat_changes(&app.base, Protocol::TransportWs, &event_id, Some(seq))
                .await;

        let body = block(&app, &event_id, &[&seats[0], &seats[1]], Some("sound desk")).await;
        let blocked = data(&body, "blockSeats").as_array().expect("seats").clone();
        assert_eq!(blocked.len(), 2);
        for seat in &blocked {
            assert_eq!(seat["status"], "BLOCKED");
            assert_eq!(seat["blockedReason"], "sound desk");
        }
        for expected_seq in [seq + 1, seq + 2] {
            let change = sub.next_change(Duration::from_secs(5)).await;
            assert_eq!(change["status"], "BLOCKED");
            assert_eq!(change["seq"], expected_seq);
        }
        // Blocking again changes nothing (no new seq).
        let body = block(&app, &event_id, &[&seats[0]], None).await;
        assert_eq!(data(&body, "blockSeats")[0]["status"], "BLOCKED");
        assert_eq!(app.seat_map(&event_id).await["seq"], seq + 2);

        // The map shows it; the reason only to admins; the counts include it.
        let map = app.seat_statuses(&event_id).await;
        assert_eq!(map[&seats[0]], "BLOCKED");
        let reasons = |token: Option<String>| {
            let app = &app;
            let event_id = event_id.clone();
            async move {
                let body = app
                    .gql(
                        token.as_deref(),
                        "query($e: ID!) { seatMap(eventId: $e) { seats { id blockedReason } } }",
                        json!({"e": event_id}),
                    )
                    .await;
                data(&body, "seatMap")["seats"][0]["blockedReason"].clone()
            }
        };
        assert_eq!(reasons(Some(app.admin_token())).await, "sound desk");
        assert!(reasons(None).await.is_null());
        let body = app.gql(None, COUNTS, json!({"e": event_id})).await;
        assert_eq!(
            data(&body, "event"),
            &json!({"seatCount": 6, "available": 4, "held": 0, "booked": 0, "blocked": 2})
        );

        // 500 concurrent holds of a blocked seat: none succeeds.
        let tokens: Vec<String> = (0..500).map(|i| app.token(&format!("u{i}"))).collect();
        let answers = join_all(
            tokens
                .iter()
                .map(|t| async { app.hold_seats(t, &event_id, &[&seats[0]]).await }),
        )
        .await;
        for body in &answers {
            assert_eq!(expect_error(body), "SEAT_UNAVAILABLE", "{body}");
        }
        // Nor with a free seat beside it (all or nothing), nor by best-available.
        let alice = app.token("alice");
        let body = app
            .hold_seats(&alice, &event_id, &[&seats[1], &seats[2]])
            .await;
        assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");
        assert_eq!(
            body["errors"][0]["extensions"]["seatIds"],
            json!([seats[1]])
        );
        let body = app
            .gql(
                Some(&alice),
                "mutation($e: ID!) { holdBestAvailable(eventId: $e, count: 4) { seats { id } } }",
                json!({"e": event_id}),
            )
            .await;
        let got: Vec<&str> = data(&body, "holdBestAvailable")["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .map(|s| s["id"].as_str().expect("id"))
            .collect();
        assert!(!got.contains(&seats[0].as_str()) && !got.contains(&seats[1].as_str()));

        // Unblocking publishes AVAILABLE with the next seq.
        let before = app.seat_map(&event_id).await["seq"].as_i64().expect("seq");
        while sub.next(Duration::from_millis(300)).await.is_some() {}
        let body = app
            .gql(
                Some(&app.admin_token()),
                UNBLOCK,
                json!({"e": event_id, "s": [seats[0]]}),
            )
            .await;
        assert_eq!(data(&body, "unblockSeats")[0]["status"], "AVAILABLE");
        let change = sub.next_change(Duration::from_secs(5)).await;
        assert_eq!(change["status"], "AVAILABLE");
        assert_eq!(change["seatId"], seats[0].as_str());
        assert_eq!(change["seq"], before + 1);
        sub.close().await;
        let body = app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
        app.stop().await;
    }
);

both_backends!(
    only_available_seats_are_blocked_and_only_blocked_ones_unblocked,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(1, 3).await;
        let alice = app.token("alice");
        let body = app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
        data(&body, "holdSeats");
        // A held seat refuses the whole block, with its id; the free one stays free.
        let body = block(&app, &event_id, &[&seats[0], &seats[1]], None).await;
        assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");
        assert_eq!(
            body["errors"][0]["extensions"]["seatIds"],
            json!([seats[0]])
        );
        assert_eq!(app.seat_statuses(&event_id).await[&seats[1]], "AVAILABLE");
        // Unblocking a seat that is not blocked names it.
        let body = app
            .gql(
                Some(&app.admin_token()),
                UNBLOCK,
                json!({"e": event_id, "s": [seats[1]]}),
            )
            .await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT");
        assert_eq!(
            body["errors"][0]["extensions"]["seatIds"],
            json!([seats[1]])
        );
        // Customers may not block.
        let body = app
            .gql(
                Some(&alice),
                BLOCK,
                json!({"e": event_id, "s": [seats[2]], "r": null}),
            )
            .await;
        assert_eq!(expect_error(&body), "FORBIDDEN");
        app.stop().await;
    }
);
