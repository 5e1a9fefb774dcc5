//! Tokens: missing, forged, `alg: none`, expired; acting on another person's hold.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

both_backends!(bad_tokens_are_unauthenticated, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let vars = json!({"e": event_id, "s": [seats[0]]});

    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD
            .encode(json!({"sub": "eve", "exp": now() + 3600, "role": "admin"}).to_string())
    );
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &json!({"sub": "eve", "exp": now() + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign");
    let cases = [
        (
            "forged signature",
            sign(
                &json!({"sub": "eve", "exp": now() + 3600}),
                "another-secret-0123456789",
            ),
        ),
        ("alg none", unsigned),
        ("other algorithm", hs512),
        (
            "expired",
            sign(&json!({"sub": "eve", "exp": now() - 120}), JWT_SECRET),
        ),
        ("no exp", sign(&json!({"sub": "eve"}), JWT_SECRET)),
        ("no sub", sign(&json!({"exp": now() + 3600}), JWT_SECRET)),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (what, token) in cases {
        let body = app.gql(Some(&token), HOLD_SEATS, vars.clone()).await;
        assert_eq!(expect_error(&body), "UNAUTHENTICATED", "{what}");
        let body = app.gql(Some(&token), ops::MY_HOLD_IDS, json!({})).await;
        assert_eq!(expect_error(&body), "UNAUTHENTICATED", "{what}");
    }
    let body = app.gql(None, HOLD_SEATS, vars.clone()).await;
    assert_eq!(expect_error(&body), "UNAUTHENTICATED", "no token");
    // Public reads work without a token, and ignore a bad one.
    assert_eq!(app.count(Some("junk"), ops::EVENT_IDS, "events").await, 1);
    // Nothing was held by any of it.
    assert_eq!(app.seat_map(&event_id).await["event"]["held"], 0);
    // A well-formed token works.
    let body = app
        .gql(
            Some(&sign(&json!({"sub": "eve", "exp": now() + 60}), JWT_SECRET)),
            HOLD_SEATS,
            vars,
        )
        .await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    app.stop().await;
});

both_backends!(nobody_acts_on_another_persons_hold, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let alice = app.token("alice");
    let mallory = app.token("mallory");
    let body = app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
    let hold_id = hold_id(&body);

    let body = app
        .gql(Some(&mallory), CONFIRM_HOLD, json!({"h": hold_id}))
        .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    let body = app
        .gql(Some(&mallory), RELEASE_HOLD, json!({"h": hold_id}))
        .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    let body = app
        .gql(Some(&mallory), HOLD_STATUS, json!({"id": hold_id}))
        .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
    assert_eq!(
        app.count(Some(&mallory), ops::MY_HOLD_IDS, "myHolds").await,
        0
    );
    // Alice's hold is untouched.
    assert_eq!(app.hold_status(&alice, &hold_id).await, "ACTIVE");
    app.stop().await;
});
