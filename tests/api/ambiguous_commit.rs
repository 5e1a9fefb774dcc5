//! A COMMIT whose answer is lost: the connection to PostgreSQL is cut right after the COMMIT
//! of a write is sent (a TCP proxy in between). The write committed; the client must be told
//! so — its hold, release, extension or booking, not `RETRY_LATER`, never "taken" for its
//! own seat or "no longer active" for its own release, and an extension counted once.

use std::time::Duration;

use crate::helpers::*;
use crate::pg_proxy::{PgProxy, host_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_whose_commit_answer_is_lost_is_answered_with_the_hold() {
    for group_commit in ["off", "on"] {
        let url = fresh_pg_database().await;
        let proxy = PgProxy::start(host_port(&url)).await;
        let options = Options::default()
            .set("SWEEP_INTERVAL_MS", 3_600_000)
            .set("GROUP_COMMIT", group_commit);
        let app = TestApp::spawn_on(&proxy.url_for(&url), options).await;
        let (event_id, seats) = app.create_event(1, 4).await;
        let token = app.token("alice");
        // Warm up (prepared statements, settings), then arm the cut for the next hold.
        data(
            &app.hold_seats(&token, &event_id, &[&seats[0]]).await,
            "holdSeats",
        );
        proxy.cut_after_commit_of("insert into \"holds\"");
        let body = app.hold_seats(&token, &event_id, &[&seats[1]]).await;
        assert!(
            proxy.cut_done(),
            "GROUP_COMMIT={group_commit}: the COMMIT was cut"
        );
        let hold = data(&body, "holdSeats");
        assert_eq!(
            hold["status"], "ACTIVE",
            "GROUP_COMMIT={group_commit}: {body}"
        );
        assert_eq!(hold["seats"][0]["id"], seats[1].as_str());
        let hold_id = hold["id"].as_str().expect("hold id").to_owned();
        // Exactly the one hold, which is the answer's.
        let statuses = app.seat_statuses(&event_id).await;
        assert_eq!(statuses[&seats[1]], "HELD");
        let body = app
            .gql(
                Some(&token),
                "{ myHolds { id status seats { id } } }",
                serde_json::json!({}),
            )
            .await;
        let mine: Vec<&serde_json::Value> = data(&body, "myHolds")
            .as_array()
            .expect("holds")
            .iter()
            .filter(|h| h["seats"][0]["id"] == seats[1].as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{body}");
        assert_eq!(mine[0]["id"], hold_id.as_str());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_healthy(&app).await;
        app.stop().await;
    }
}

/// What [`cut_write`] leaves to look at.
struct Cut {
    body: serde_json::Value,
    hold_id: String,
    app: TestApp,
    seats: Vec<String>,
    event_id: String,
    _proxy: PgProxy,
}

/// One write of an ACTIVE hold whose COMMIT's answer is cut (`marker` names a statement of
/// its transaction): the write is answered without an error.
async fn cut_write(group_commit: &str, marker: &str, query: &str, field: &str) -> Cut {
    let url = fresh_pg_database().await;
    let proxy = PgProxy::start(host_port(&url)).await;
    let options = Options::default()
        .set("SWEEP_INTERVAL_MS", 3_600_000)
        .set("GROUP_COMMIT", group_commit);
    let app = TestApp::spawn_on(&proxy.url_for(&url), options).await;
    let (event_id, seats) = app.create_event(1, 2).await;
    let token = app.token("alice");
    let hold = app.hold_seats(&token, &event_id, &[&seats[0]]).await;
    let hold_id = data(&hold, "holdSeats")["id"]
        .as_str()
        .expect("hold id")
        .to_owned();
    proxy.cut_after_commit_of(marker);
    let body = app
        .gql(Some(&token), query, serde_json::json!({"h": hold_id}))
        .await;
    assert!(
        proxy.cut_done(),
        "GROUP_COMMIT={group_commit}: the COMMIT was cut"
    );
    assert!(
        body["errors"].is_null(),
        "GROUP_COMMIT={group_commit}: {field}: {body}"
    );
    Cut {
        body,
        hold_id,
        app,
        seats,
        event_id,
        _proxy: proxy,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_whose_commit_answer_is_lost_is_answered_with_the_release() {
    for group_commit in ["off", "on"] {
        let Cut {
            body,
            hold_id,
            app,
            seats,
            event_id,
            ..
        } = cut_write(
            group_commit,
            "update \"holds\"",
            RELEASE_HOLD,
            "releaseHold",
        )
        .await;
        let released = data(&body, "releaseHold");
        assert_eq!(released["id"], hold_id.as_str());
        assert_eq!(
            released["status"], "RELEASED",
            "not HOLD_NOT_ACTIVE: {body}"
        );
        assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "AVAILABLE");
        assert_healthy(&app).await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_extension_whose_commit_answer_is_lost_counts_once() {
    const EXTEND: &str =
        "mutation($h: ID!) { extendHold(holdId: $h) { id status expiresAt extensionsLeft } }";
    for group_commit in ["off", "on"] {
        let Cut {
            body, hold_id, app, ..
        } = cut_write(group_commit, "update \"holds\"", EXTEND, "extendHold").await;
        let extended = data(&body, "extendHold");
        assert_eq!(extended["id"], hold_id.as_str());
        assert_eq!(extended["status"], "ACTIVE");
        assert_eq!(
            extended["extensionsLeft"], 0,
            "one extension, not two: {body}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirmation_whose_commit_answer_is_lost_is_answered_with_the_booking() {
    for group_commit in ["off", "on"] {
        let Cut {
            body,
            hold_id,
            app,
            seats,
            event_id,
            ..
        } = cut_write(
            group_commit,
            "insert into \"bookings\"",
            CONFIRM_HOLD,
            "confirmHold",
        )
        .await;
        let booking = data(&body, "confirmHold");
        assert_eq!(booking["holdId"], hold_id.as_str());
        assert_eq!(booking["status"], "CONFIRMED", "{body}");
        assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "BOOKED");
        let token = app.token("alice");
        let mine = app
            .gql(Some(&token), "{ myBookings { id } }", serde_json::json!({}))
            .await;
        assert_eq!(
            data(&mine, "myBookings").as_array().map(Vec::len),
            Some(1),
            "exactly one booking: {mine}"
        );
        app.stop().await;
    }
}
