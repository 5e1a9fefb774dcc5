//! The seat-map cache never hides a committed change: read-your-writes on every instance.

use serde_json::json;

use crate::helpers::*;

/// Two instances without Redis (so the cache on A never hears B's changes): every change made
/// through B is on A's seat map the moment B has answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_map_shows_changes_from_another_instance_at_once() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = TestApp::spawn_on(&a.database_url, Options::default()).await;
    let (event_id, seats) = a.create_event(2, 10).await;
    assert_eq!(a.seat_map(&event_id).await["event"]["held"], 0); // warms A's cache
    let alice = b.token("alice");
    let mut holds = Vec::new();
    for (i, seat) in seats.iter().enumerate().take(8) {
        let body = b.hold_seats(&alice, &event_id, &[seat]).await;
        holds.push(hold_id(&body));
        let map = a.seat_map(&event_id).await;
        assert_eq!(map["event"]["held"], i + 1, "A sees B's hold {i} at once");
        assert_eq!(map["seq"], i + 1);
        assert_eq!(a.seat_statuses(&event_id).await[seat], "HELD");
    }
    let body = b
        .gql(Some(&alice), CONFIRM_HOLD, json!({"h": holds[0]}))
        .await;
    data(&body, "confirmHold");
    let body = b
        .gql(Some(&alice), RELEASE_HOLD, json!({"h": holds[1]}))
        .await;
    data(&body, "releaseHold");
    let statuses = a.seat_statuses(&event_id).await;
    assert_eq!(statuses[&seats[0]], "BOOKED");
    assert_eq!(statuses[&seats[1]], "AVAILABLE");
    // The section filter still counts the whole event.
    let body = a
        .gql(None, "query($e: ID!) { seatMap(eventId: $e, section: \"Main\") { event { booked held } seats { id } } }", json!({"e": event_id}))
        .await;
    assert_eq!(data(&body, "seatMap")["event"]["booked"], 1);
    assert_eq!(data(&body, "seatMap")["event"]["held"], 6);
    a.stop().await;
    b.stop().await;
}

/// With the cache off, the same answers come straight from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uncached_map_gives_the_same_answers() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options::default().set("SEATMAP_CACHE", "off"),
    )
    .await;
    let (event_id, seats) = app.create_event(1, 5).await;
    let body = app
        .hold_seats(&app.token("alice"), &event_id, &[&seats[1], &seats[3]])
        .await;
    data(&body, "holdSeats");
    let map = app.seat_map(&event_id).await;
    assert_eq!(map["seq"], 2);
    assert_eq!(map["event"]["held"], 2);
    assert_eq!(map["event"]["available"], 3);
    assert_eq!(map["seats"][1]["status"], "HELD");
    assert_eq!(map["seats"][0]["status"], "AVAILABLE");
    app.stop().await;
}
