//! A COMMIT whose answer is lost: the connection to PostgreSQL is cut right after the COMMIT
//! of a hold is sent (a TCP proxy in between). The hold committed; the client must be told
//! so — its hold, not `RETRY_LATER`, and never "taken" for its own seat.

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
