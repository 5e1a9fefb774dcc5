//! The queue worker runs queued requests that compete for nothing in common side by side
//! (a window of up to 64 taken requests) and still answers each exactly as running them one
//! after another in queue order would: the earlier request wins a seat or an area's last
//! places, a buyer's limit counts their earlier requests, a request that fails leaves the
//! others their answers, and the answers are recorded in queue order.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

/// `ops::SEAT_REQUEST` and when it was answered.
const SEAT_REQUEST: &str = "query($id: ID!) { seatRequest(id: $id) { id status errorCode answeredAt hold { id seats { id } } } }";

const REQUEST: &str = "mutation($e: ID!, $s: [ID!]!, $a: [AreaQuantityInput!], $k: String) { requestSeats(eventId: $e, seatIds: $s, areas: $a, idempotencyKey: $k) { id status queueNumber } }";
const CREATE: &str =
    "mutation($input: CreateEventInput!) { createEvent(input: $input) { id areas { id } } }";
const AREAS: &str = "query($id: ID!) { event(id: $id) { areas { available held } } }";

/// One queued request and the answer a sequential run in queue order gives it.
struct Case {
    buyer: &'static str,
    seats: Vec<usize>,
    places: i64,
    /// `None`: DONE; else the error code.
    fails_with: Option<&'static str>,
}

fn case(
    buyer: &'static str,
    seats: &[usize],
    places: i64,
    fails_with: Option<&'static str>,
) -> Case {
    Case {
        buyer,
        seats: seats.to_vec(),
        places,
        fails_with,
    }
}

both_backends!(
    a_chunk_of_queued_requests_answers_as_a_sequential_run,
    |backend| async move {
        const SEATS: usize = 40;
        let app = TestApp::spawn_with(
            backend,
            Options::default()
                .set("REDIS_URL", redis_url())
                .set("GROUP_COMMIT", "on"),
        )
        .await;
        let body = app
            .gql(
                Some(&app.admin_token()),
                CREATE,
                json!({"input": {
                    "name": "Queued Night", "venue": "Hall", "startsAt": "2030-01-01T20:00:00Z",
                    "maxSeatsPerBuyer": 2,
                    "categories": [{"name": "Floor", "priceCents": 2500}],
                    "areas": [{"name": "Floor", "capacity": 3, "category": "Floor"}],
                    "sections": [{"name": "Stalls", "rows": [{"label": "A", "seats": SEATS, "priceCents": 1000}]}]
                }}),
            )
            .await;
        let event = data(&body, "createEvent");
        let event_id = event["id"].as_str().expect("event id").to_owned();
        let area = event["areas"][0]["id"].as_str().expect("area").to_owned();
        let seats = app.seat_ids(&event_id).await;
        let body = app
            .gql(
                Some(&app.admin_token()),
                ops::CONFIGURE_WAITING_ROOM,
                ops::vars::configure_waiting_room(
                    &event_id,
                    &ops::WaitingRoomInput {
                        enabled: false,
                        opens_at: None,
                        admit_per_second: 10.into(),
                        admission_ttl_secs: 60.into(),
                    },
                ),
            )
            .await;
        assert!(body["errors"].is_null(), "{body}");
        let db = sea_orm::Database::connect(app.database_url.as_str())
            .await
            .expect("db");
        let prefix = queue_prefix(&db, &event_id).await;
        let mut redis = redis::Client::open(redis_url().as_str())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        // Someone else holds the queue's lease while the requests arrive, so that the worker
        // finds them all queued and takes them into its window at once.
        let lease = format!("{prefix}:worker");
        let _: () = redis::cmd("SET")
            .arg(&lease)
            .arg("somebody-else")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut redis)
            .await
            .expect("set lease");

        let mut cases = vec![
            case("alice", &[0], 0, None),
            case("bob", &[0], 0, Some("SEAT_UNAVAILABLE")),
            case("carol", &[1, 2], 0, None),
            case("dave", &[2], 0, Some("SEAT_UNAVAILABLE")),
            case("erin", &[3, 4], 0, None),
            case("erin", &[5], 0, Some("LIMIT_EXCEEDED")),
            // Free: erin's request for it failed.
            case("frank", &[5], 0, None),
            case("gina", &[], 2, None),
            case("hank", &[], 2, Some("SEAT_UNAVAILABLE")),
            case("ivan", &[], 1, None),
            case("judy", &[6], 1, Some("SEAT_UNAVAILABLE")),
            // judy's failed hold took nothing.
            case("judy", &[6], 0, None),
        ];
        const BUYERS: [&str; 24] = [
            "b00", "b01", "b02", "b03", "b04", "b05", "b06", "b07", "b08", "b09", "b10", "b11",
            "b12", "b13", "b14", "b15", "b16", "b17", "b18", "b19", "b20", "b21", "b22", "b23",
        ];
        for (i, buyer) in BUYERS.iter().enumerate() {
            cases.push(case(buyer, &[7 + i], 0, None));
        }
        cases.push(case("alice", &[31], 0, None));
        cases.push(case("alice", &[32], 0, Some("LIMIT_EXCEEDED")));
        // One that cannot be held at all: a seat that does not exist.
        let unknown = cases.len();
        cases.push(case("kim", &[], 0, Some("NOT_FOUND")));
        assert!(cases.len() <= 40, "all in the window at once");

        let mut ids = Vec::new();
        for (i, c) in cases.iter().enumerate() {
            let mut wanted: Vec<&str> = c.seats.iter().map(|&s| seats[s].as_str()).collect();
            if i == unknown {
                wanted.push("99999999");
            }
            let areas = if c.places > 0 {
                json!([{"areaId": area, "quantity": c.places}])
            } else {
                json!([])
            };
            let token = app.token(c.buyer);
            let body = retrying(|| {
                app.gql(
                    Some(&token),
                    REQUEST,
                    json!({"e": event_id, "s": wanted, "a": areas, "k": format!("req-{i}")}),
                )
            })
            .await;
            let queued = data(&body, "requestSeats");
            assert_eq!(queued["queueNumber"], i + 1, "{body}");
            ids.push(queued["id"].as_str().expect("request id").to_owned());
        }

        // Not answered yet: no answer time.
        let body = app
            .gql(
                Some(&app.token(cases[0].buyer)),
                SEAT_REQUEST,
                json!({"id": ids[0]}),
            )
            .await;
        let waiting = data(&body, "seatRequest");
        assert_eq!(waiting["status"], "QUEUED", "{body}");
        assert!(waiting["answeredAt"].is_null(), "{body}");
        let released_at = chrono::Utc::now();
        let _: () = redis::cmd("DEL")
            .arg(&lease)
            .query_async(&mut redis)
            .await
            .expect("del lease");
        let answers: Vec<Value> = wait_for(
            "every request answered",
            Duration::from_secs(30),
            || async {
                let mut answers = Vec::new();
                for (i, id) in ids.iter().enumerate() {
                    let token = app.token(cases[i].buyer);
                    let body = app.gql(Some(&token), SEAT_REQUEST, json!({"id": id})).await;
                    let request = data(&body, "seatRequest").clone();
                    if request["status"] == "QUEUED" {
                        return None;
                    }
                    answers.push(request);
                }
                Some(answers)
            },
        )
        .await;

        let mut held_seats = Vec::new();
        for (i, (c, answer)) in cases.iter().zip(&answers).enumerate() {
            match c.fails_with {
                None => {
                    assert_eq!(answer["status"], "DONE", "request {i}: {answer}");
                    let got: Vec<&str> = answer["hold"]["seats"]
                        .as_array()
                        .expect("seats")
                        .iter()
                        .map(|s| s["id"].as_str().expect("id"))
                        .collect();
                    let want: Vec<&str> = c.seats.iter().map(|&s| seats[s].as_str()).collect();
                    assert_eq!(got, want, "request {i}");
                    held_seats.extend(want);
                }
                Some(code) => {
                    assert_eq!(answer["status"], "FAILED", "request {i}: {answer}");
                    assert_eq!(answer["errorCode"], code, "request {i}: {answer}");
                }
            }
        }
        // Each answer has its time, after the queue was let go, in queue order.
        let times: Vec<chrono::DateTime<chrono::Utc>> = answers
            .iter()
            .map(|a| {
                let at = a["answeredAt"].as_str().expect("answeredAt");
                chrono::DateTime::parse_from_rfc3339(at)
                    .expect("RFC 3339")
                    .with_timezone(&chrono::Utc)
            })
            .collect();
        assert!(
            times[0] >= released_at - chrono::Duration::milliseconds(5),
            "{:?} vs {released_at:?}",
            times[0]
        );
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        // Answered in queue order, each once.
        let numbers = answer_numbers(&mut redis, &prefix, ids.iter().map(String::as_str)).await;
        assert_eq!(
            numbers,
            (1..=ids.len() as i64).map(Some).collect::<Vec<_>>()
        );
        // The database holds exactly what the answers say.
        let statuses = app.seat_statuses(&event_id).await;
        for (i, seat) in seats.iter().enumerate() {
            let want = if held_seats.contains(&seat.as_str()) {
                "HELD"
            } else {
                "AVAILABLE"
            };
            assert_eq!(statuses[seat.as_str()], want, "seat {i}");
        }
        let body = app
            .gql(Some(&app.token("alice")), AREAS, json!({"id": event_id}))
            .await;
        let areas = &data(&body, "event")["areas"][0];
        assert_eq!(
            (areas["available"].as_i64(), areas["held"].as_i64()),
            (Some(0), Some(3))
        );
        // The worker ran them together: their writes shared batches.
        let (mean, count) = histogram_mean(&app.metrics().await, "onsale_group_commit_members");
        assert!(count >= 1.0, "batches committed");
        assert!(
            mean > 1.0,
            "the chunk's writes shared batches (mean {mean:.2} members in {count} batches)"
        );
        app.stop().await;
    }
);
