//! Hardening: mutation rate limits, the per-user hold cap, CORS, JWT audience/issuer,
//! request ids and metrics.

use futures::future::join_all;
use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutations_are_rate_limited_per_user_with_retry_later() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options::default().set("RATE_LIMIT_USER_PER_SEC", 2),
    )
    .await;
    let (event_id, seats) = app.create_event(1, 30).await;
    let alice = app.token("alice");
    // A burst of 20 releases of a missing hold: cheap, and each one is a mutation.
    let missing = uuid::Uuid::new_v4().to_string();
    let body = json!({"query": RELEASE_HOLD, "variables": {"h": missing}});
    let results = join_all((0..20).map(|_| app.post(Some(&alice), &body))).await;
    let limited: Vec<_> = results
        .iter()
        .filter(|(_, b)| error_code(b).as_deref() == Some("RETRY_LATER"))
        .collect();
    let not_found = results
        .iter()
        .filter(|(_, b)| error_code(b).as_deref() == Some("NOT_FOUND"))
        .count();
    assert_eq!(limited.len() + not_found, 20);
    assert_eq!(not_found, 6, "a burst of three times the rate passes");
    assert!(limited.iter().all(|(s, b)| {
        *s == 200
            && b["errors"][0]["extensions"]["retryAfterMs"]
                .as_u64()
                .is_some_and(|ms| ms > 0)
    }));
    // Someone else is not affected, and reads are never limited.
    let body = app
        .hold_seats(&app.token("bob"), &event_id, &[&seats[0]])
        .await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    for _ in 0..10 {
        let body = app.gql(Some(&alice), ops::MY_HOLD_IDS, json!({})).await;
        assert!(body["errors"].is_null());
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutations_are_rate_limited_per_address_when_configured() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        Options::default()
            .set("RATE_LIMIT_USER_PER_SEC", 0)
            .set("RATE_LIMIT_IP_PER_SEC", 1),
    )
    .await;
    let missing = uuid::Uuid::new_v4().to_string();
    let body = json!({"query": RELEASE_HOLD, "variables": {"h": missing}});
    let mut codes = Vec::new();
    for i in 0..6 {
        let (_, answer) = app.post(Some(&app.token(&format!("u{i}"))), &body).await;
        codes.push(error_code(&answer).unwrap_or_default());
    }
    assert_eq!(
        codes,
        [
            "NOT_FOUND",
            "NOT_FOUND",
            "NOT_FOUND",
            "RETRY_LATER",
            "RETRY_LATER",
            "RETRY_LATER"
        ]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn active_holds_per_user_are_capped() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options::default().set("MAX_HOLDS_PER_USER", 2),
    )
    .await;
    let (event_id, seats) = app.create_event(1, 5).await;
    let alice = app.token("alice");
    let first = app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
    let first_id = hold_id(&first);
    data(
        &app.hold_seats(&alice, &event_id, &[&seats[1]]).await,
        "holdSeats",
    );
    let body = app.hold_seats(&alice, &event_id, &[&seats[2]]).await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    assert_eq!(app.seat_statuses(&event_id).await[&seats[2]], "AVAILABLE");
    data(
        &app.gql(Some(&alice), RELEASE_HOLD, json!({"h": first_id}))
            .await,
        "releaseHold",
    );
    data(
        &app.hold_seats(&alice, &event_id, &[&seats[2]]).await,
        "holdSeats",
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cors_is_closed_by_default_and_configurable() {
    let closed = TestApp::spawn(Backend::Sqlite).await;
    let preflight = |app: &TestApp| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.base))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .send()
    };
    let resp = preflight(&closed).await.expect("preflight");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    closed.stop().await;
    let open = TestApp::spawn_with(
        Backend::Sqlite,
        Options::default().set("CORS_ALLOWED_ORIGINS", "https://app.example"),
    )
    .await;
    let resp = preflight(&open).await.expect("preflight");
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example")
    );
    open.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audience_and_issuer_are_enforced_when_configured() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        Options::default()
            .set("JWT_AUDIENCE", "onsale")
            .set("JWT_ISSUER", "https://login.example"),
    )
    .await;
    let now = now();
    let cases = [
        (json!({"sub": "a", "exp": now + 60}), "UNAUTHENTICATED"),
        (
            json!({"sub": "a", "exp": now + 60, "aud": "other", "iss": "https://login.example"}),
            "UNAUTHENTICATED",
        ),
        (
            json!({"sub": "a", "exp": now + 60, "aud": "onsale", "iss": "https://evil.example"}),
            "UNAUTHENTICATED",
        ),
        (
            json!({"sub": "a", "exp": now + 60, "aud": "onsale", "iss": "https://login.example"}),
            "OK",
        ),
    ];
    for (claims, expected) in cases {
        let body = app
            .gql(
                Some(&sign(&claims, JWT_SECRET)),
                ops::MY_HOLD_IDS,
                json!({}),
            )
            .await;
        assert_eq!(
            error_code(&body).unwrap_or_else(|| "OK".into()),
            expected,
            "{claims}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_ids_are_echoed_and_metrics_count_operations() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (event_id, seats) = app.create_event(1, 3).await;
    let resp = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("x-request-id", "trace-me-123")
        .json(&json!({"query": ops::EVENT_IDS}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-me-123")
    );
    let resp = app.get("/healthz").await;
    assert!(
        resp.headers().get("x-request-id").is_some(),
        "a request id is generated"
    );
    let alice = app.token("alice");
    data(
        &app.hold_seats(&alice, &event_id, &[&seats[0]]).await,
        "holdSeats",
    );
    assert_eq!(
        expect_error(
            &app.hold_seats(&app.token("bob"), &event_id, &[&seats[0]])
                .await
        ),
        "SEAT_UNAVAILABLE"
    );
    let text = app.metrics().await;
    for needle in [
        r#"onsale_graphql_operations_total{field="holdSeats",code="OK"}"#,
        r#"onsale_graphql_operations_total{field="holdSeats",code="SEAT_UNAVAILABLE"}"#,
        "onsale_graphql_operation_seconds_bucket",
        "onsale_holds_created_total",
        "onsale_seat_conflicts_total",
        r#"onsale_db_pool_connections{state="idle"}"#,
        "onsale_seat_bus_healthy 1",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    app.stop().await;
}
