//! Bad input gets the contract's answer and the server stays up.

use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

both_backends!(bad_arguments_get_clear_codes, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, seats) = app.create_event(1, 3).await;
    let (other_event, other_seats) = app.create_event(1, 2).await;
    let alice = app.token("alice");
    let hold = |e: &str, s: serde_json::Value| json!({"e": e, "s": s});

    let cases = [
        (
            "empty seat list",
            hold(&event_id, json!([])),
            "BAD_USER_INPUT",
        ),
        (
            "seat twice",
            hold(&event_id, json!([seats[0], seats[0]])),
            "BAD_USER_INPUT",
        ),
        (
            "too many seats",
            hold(
                &event_id,
                json!((0..11).map(|i| i.to_string()).collect::<Vec<_>>()),
            ),
            "BAD_USER_INPUT",
        ),
        (
            "unknown seat",
            hold(&event_id, json!(["987654"])),
            "NOT_FOUND",
        ),
        (
            "malformed seat id",
            hold(&event_id, json!(["seat-x"])),
            "NOT_FOUND",
        ),
        (
            "unknown event",
            hold("987654", json!([seats[0]])),
            "NOT_FOUND",
        ),
        (
            "seat of another event",
            hold(&event_id, json!([seats[0], other_seats[0]])),
            "BAD_USER_INPUT",
        ),
    ];
    for (what, vars, code) in cases {
        let body = app.gql(Some(&alice), HOLD_SEATS, vars).await;
        assert_eq!(expect_error(&body), code, "{what}: {body}");
    }
    let body = app
        .gql(
            Some(&alice),
            HOLD_SEATS,
            json!({"e": event_id, "s": [seats[0]], "k": ""}),
        )
        .await;
    assert_eq!(
        expect_error(&body),
        "BAD_USER_INPUT",
        "empty idempotency key"
    );
    for count in [0, -1] {
        let body = app.hold_best(&alice, &event_id, count, None).await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT", "count {count}");
    }
    let body = app
        .gql(
            Some(&alice),
            "mutation($e: ID!) { holdBestAvailable(eventId: $e, count: 99999999999) { id } }",
            json!({"e": event_id}),
        )
        .await;
    assert_eq!(
        expect_error(&body),
        "BAD_USER_INPUT",
        "count overflowing Int"
    );
    let body = app.gql(None, ops::SEAT_SEQ, json!({"e": "424242"})).await;
    assert_eq!(expect_error(&body), "NOT_FOUND");
    let missing = uuid::Uuid::new_v4().to_string();
    for (op, var) in [(CONFIRM_HOLD, "h"), (RELEASE_HOLD, "h")] {
        let body = app.gql(Some(&alice), op, json!({var: missing})).await;
        assert_eq!(expect_error(&body), "NOT_FOUND");
        let body = app.gql(Some(&alice), op, json!({var: "not-a-uuid"})).await;
        assert_eq!(expect_error(&body), "NOT_FOUND");
    }
    let body = app
        .gql(Some(&alice), CANCEL_BOOKING, json!({"b": missing}))
        .await;
    assert_eq!(expect_error(&body), "NOT_FOUND");
    let body = app
        .gql(
            Some(&alice),
            "query($id: ID!) { hold(id: $id) { id } }",
            json!({"id": missing}),
        )
        .await;
    assert!(data(&body, "hold").is_null());

    // Nothing was held by any of it.
    assert_eq!(app.seat_map(&event_id).await["event"]["held"], 0);
    assert_eq!(app.seat_map(&other_event).await["event"]["held"], 0);
    app.stop().await;
});

both_backends!(transport_level_bad_input, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let url = format!("{}/graphql", app.base);
    let post_raw = |body: Vec<u8>| {
        app.client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Malformed JSON: 400.
    let resp = post_raw(b"{\"query\": ".to_vec()).await.expect("sent");
    assert_eq!(resp.status(), 400);
    let resp = post_raw(b"[1,2,".to_vec()).await.expect("sent");
    assert_eq!(resp.status(), 400);
    // A body over the limit: 413.
    let huge = format!(
        "{{\"query\": \"{{ events {{ id }} }}\", \"variables\": {{\"pad\": \"{}\"}}}}",
        "x".repeat(2 << 20)
    );
    // On a connection of its own: the server answers before reading it all and closes the
    // connection, which must not be one the next requests reuse.
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(huge.into_bytes())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 413);
    // Too deep a query: a GraphQL error with BAD_USER_INPUT.
    let nested = (0..40).fold("id".to_owned(), |inner, _| {
        format!("__typename events {{ {inner} }}")
    });
    let body = app.gql(None, &format!("{{ {nested} }}"), json!({})).await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT", "deep query: {body}");
    // A syntax error and an unknown field.
    let body = app.gql(None, "{ events { id ", json!({})).await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    let body = app.gql(None, "{ nope }", json!({})).await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    // Thousands of aliases of an expensive field: refused by complexity.
    let aliases: String = (0..3000)
        .map(|i| format!("a{i}: events {{ id }} "))
        .collect();
    let body = app.gql(None, &format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    // Still up.
    assert_eq!(app.get("/healthz").await.status(), 200);
    let body = app.gql(None, ops::EVENT_IDS, json!({})).await;
    assert!(body["errors"].is_null());
    app.stop().await;
});
