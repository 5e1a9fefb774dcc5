//! The database itself refuses a double hold or booking, and row-lock waits are bounded.

use std::time::{Duration, Instant};

use crate::both_backends;
use crate::helpers::*;
use crate::procs::ints;
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, TransactionTrait,
};

both_backends!(
    unique_indexes_refuse_a_second_active_claim,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(1, 2).await;
        let body = app
            .hold_seats(&app.token("alice"), &event_id, &[&seats[0]])
            .await;
        let hold_id = hold_id(&body);
        let conn = Database::connect(app.database_url.as_str())
            .await
            .expect("connect");
        let other = uuid::Uuid::new_v4().to_string();
        conn.execute_unprepared(&format!(
        "INSERT INTO holds (id, event_id, user_id, status, expires_at_ms, total_cents, created_at_ms, updated_at_ms) VALUES ('{other}', {event_id}, 'mallory', 'ACTIVE', 9999999999999, 0, 0, 0)"
    ))
    .await
    .expect("a second hold row is fine on its own");
        // Bypassing the service: a second active claim on the same seat is refused...
        let err = conn
            .execute_unprepared(&format!(
                "INSERT INTO hold_seats (hold_id, seat_id, active) VALUES ('{other}', {}, true)",
                seats[0]
            ))
            .await
            .expect_err("the unique index refuses a second active hold on one seat");
        assert!(err.to_string().contains("hold_seats"), "{err}");
        // ...while an inactive row (history) is allowed.
        conn.execute_unprepared(&format!(
            "INSERT INTO hold_seats (hold_id, seat_id, active) VALUES ('{other}', {}, false)",
            seats[0]
        ))
        .await
        .expect("inactive claims are history");
        // The same for bookings.
        for (id, active) in [("b1", true), ("b2", true)] {
            let res = conn
            .execute_unprepared(&format!(
                "INSERT INTO bookings (id, event_id, hold_id, user_id, status, total_cents, created_at_ms, updated_at_ms) VALUES ('{id}', {event_id}, '{}', 'u', 'CONFIRMED', 0, 0, 0)",
                if id == "b1" { &hold_id } else { &other }
            ))
            .await;
            res.expect("booking row");
            let claim = conn
            .execute_unprepared(&format!(
                "INSERT INTO booking_seats (booking_id, seat_id, active) VALUES ('{id}', {}, {active})",
                seats[1]
            ))
            .await;
            if id == "b1" {
                claim.expect("first booking claim");
            } else {
                assert!(
                    claim.is_err(),
                    "a second active booking of one seat is refused"
                );
            }
        }
        // Two bookings of one hold are refused too.
        let dup = conn
        .execute_unprepared(&format!(
            "INSERT INTO bookings (id, event_id, hold_id, user_id, status, total_cents, created_at_ms, updated_at_ms) VALUES ('b3', {event_id}, '{hold_id}', 'u', 'CONFIRMED', 0, 0, 0)"
        ))
        .await;
        assert!(dup.is_err(), "one booking per hold");
        app.stop().await;
    }
);

/// A transaction of the test's own that holds `seat`'s row lock until it ends; the
/// connection it runs on comes with it.
async fn lock_seat_row(app: &TestApp, seat: &str) -> (DatabaseConnection, DatabaseTransaction) {
    let conn = Database::connect(app.database_url.as_str())
        .await
        .expect("connect");
    let blocker = conn.begin().await.expect("begin");
    blocker
        .execute_unprepared(&format!(
            "SELECT id FROM seats WHERE id = {seat} FOR UPDATE"
        ))
        .await
        .expect("lock the row");
    (conn, blocker)
}

/// A transaction that keeps a seat's row lock makes a competing hold answer RETRY_LATER
/// quickly instead of hanging; once the lock is gone the hold succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_wait_is_bounded_and_answers_retry_later() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options::default().set("LOCK_TIMEOUT_MS", 200),
    )
    .await;
    let (event_id, seats) = app.create_event(1, 3).await;
    let (_conn, blocker) = lock_seat_row(&app, &seats[1]).await;

    let started = Instant::now();
    let body = app
        .hold_seats(&app.token("bob"), &event_id, &[&seats[0], &seats[1]])
        .await;
    let waited = started.elapsed();
    assert_eq!(expect_error(&body), "RETRY_LATER", "{body}");
    assert!(
        body["errors"][0]["extensions"]["retryAfterMs"]
            .as_u64()
            .is_some_and(|ms| ms > 0)
    );
    assert!(
        waited < Duration::from_secs(5),
        "answered in {waited:?}, not hung"
    );
    // All-or-nothing: seat 0 was not held either.
    assert_eq!(app.seat_map(&event_id).await["event"]["held"], 0);

    blocker.rollback().await.expect("rollback");
    let body = app
        .hold_seats(&app.token("bob"), &event_id, &[&seats[0], &seats[1]])
        .await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    app.stop().await;
}

/// A request stuck longer than REQUEST_TIMEOUT_MS (here: behind a row lock with a long lock
/// timeout) is answered RETRY_LATER at the bound, and its transaction rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_timeout_answers_retry_later() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options::default()
            .set("LOCK_TIMEOUT_MS", 5000)
            .set("REQUEST_TIMEOUT_MS", 300),
    )
    .await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let (conn, blocker) = lock_seat_row(&app, &seats[0]).await;
    let started = Instant::now();
    let body = app
        .hold_seats(&app.token("bob"), &event_id, &[&seats[0]])
        .await;
    assert_eq!(expect_error(&body), "RETRY_LATER", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the bound: {:?}",
        started.elapsed()
    );
    blocker.rollback().await.expect("rollback");
    // Whatever the cut-short request left running on the server finishes once the lock is gone.
    wait_until(
        "no statement of the app still running",
        Duration::from_secs(5),
        || async {
            ints(
                &conn,
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND state <> 'idle'",
            )
            .await
                == [0]
        },
    )
    .await;
    assert_eq!(
        app.seat_map(&event_id).await["event"]["held"],
        0,
        "the cut-short hold left nothing"
    );
    let body = app
        .hold_seats(&app.token("bob"), &event_id, &[&seats[0]])
        .await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    app.stop().await;
}
