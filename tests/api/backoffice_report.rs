//! The sales report: per category and in total, equal to a recount from `eventBookings` and
//! the seat map; admin only.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::backoffice_connections::book;
use crate::both_backends;
use crate::helpers::*;

const REPORT: &str = "query($e: ID!) { salesReport(eventId: $e) { eventId seq booked held available blocked checkedIn grossCents refundedCents
  byCategory { categoryId name booked held available blocked checkedIn grossCents refundedCents } } }";
const CREATE: &str = "mutation($input: CreateEventInput!) { createEvent(input: $input) { id categories { id name } } }";
const MAP: &str =
    "query($e: ID!) { seatMap(eventId: $e) { seq seats { id status categoryId priceCents } } }";
const BOOKINGS: &str = "query($e: ID!) { eventBookings(eventId: $e, first: 500) { edges { node { status totalCents seats { id } } } } }";

/// The report's numbers recounted from the seat map and the bookings: by category id
/// (`null` for seats without one) and in total.
fn recount(map: &Value, bookings: &Value) -> (HashMap<String, Value>, Value) {
    let seats = map["seats"].as_array().expect("seats");
    let category_of: HashMap<&str, (String, i64)> = seats
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id"),
                (
                    s["categoryId"].to_string(),
                    s["priceCents"].as_i64().expect("price"),
                ),
            )
        })
        .collect();
    let mut lines: HashMap<String, [i64; 5]> = HashMap::new();
    let mut total = [0i64; 5];
    for s in seats {
        let slot = match s["status"].as_str().expect("status") {
            "BOOKED" => 0,
            "HELD" => 1,
            "AVAILABLE" => 2,
            "BLOCKED" => 3,
            other => panic!("status {other}"),
        };
        lines.entry(s["categoryId"].to_string()).or_default()[slot] += 1;
        total[slot] += 1;
    }
    for edge in bookings["edges"].as_array().expect("edges") {
        let node = &edge["node"];
        if node["status"] != "CONFIRMED" {
            continue;
        }
        total[4] += node["totalCents"].as_i64().expect("total");
        for seat in node["seats"].as_array().expect("seats") {
            let (category, price) = &category_of[seat["id"].as_str().expect("id")];
            lines.entry(category.clone()).or_default()[4] += price;
        }
    }
    let as_json = |c: &[i64; 5]| {
        json!({"booked": c[0], "held": c[1], "available": c[2], "blocked": c[3], "checkedIn": 0,
               "grossCents": c[4], "refundedCents": 0})
    };
    (
        lines.iter().map(|(k, v)| (k.clone(), as_json(v))).collect(),
        as_json(&total),
    )
}

both_backends!(
    sales_report_equals_a_recount_from_bookings_and_the_seat_map,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let admin = app.admin_token();
        let input = json!({
            "name": "Gala", "venue": "Hall", "startsAt": "2030-01-01T20:00:00Z",
            "categories": [{"name": "Gold", "priceCents": 9000}, {"name": "Silver", "priceCents": 4000}],
            "sections": [{"name": "Stalls", "rows": [
                {"label": "A", "seats": 5, "priceCents": 0, "category": "Gold"},
                {"label": "B", "seats": 5, "priceCents": 0, "category": "Silver"},
                {"label": "C", "seats": 5, "priceCents": 1500}
            ]}]
        });
        let body = app.gql(Some(&admin), CREATE, json!({"input": input})).await;
        let event_id = data(&body, "createEvent")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let seats = app.statuses(&event_id).await.order;
        let vars = json!({"e": event_id});

        let body = app.gql(Some(&app.token("eve")), REPORT, vars.clone()).await;
        assert_eq!(expect_error(&body), "FORBIDDEN");
        let body = app.gql(None, REPORT, vars.clone()).await;
        assert_eq!(expect_error(&body), "UNAUTHENTICATED");

        // Bookings in every row, one cancelled; holds; a blocked seat.
        for (user, seat) in [("a", 0), ("b", 1), ("c", 5), ("d", 10), ("e", 11)] {
            book(&app, user, &event_id, &seats[seat]).await;
        }
        let cancelled = book(&app, "f", &event_id, &seats[6]).await;
        let body = app
            .gql(
                Some(&app.token("f")),
                ops::CANCEL_BOOKING,
                json!({"b": cancelled}),
            )
            .await;
        assert_eq!(data(&body, "cancelBooking")["status"], "CANCELLED");
        app.hold_seats(&app.token("g"), &event_id, &[&seats[2], &seats[12]])
            .await;
        let body = app
            .gql(
                Some(&admin),
                "mutation($e: ID!, $s: [ID!]!) { blockSeats(eventId: $e, seatIds: $s) { id } }",
                json!({"e": event_id, "s": [seats[7]]}),
            )
            .await;
        data(&body, "blockSeats");

        let report = app.gql(Some(&admin), REPORT, vars.clone()).await;
        let report = data(&report, "salesReport").clone();
        let map = app.gql(None, MAP, vars.clone()).await;
        let map = data(&map, "seatMap").clone();
        let bookings = app.gql(Some(&admin), BOOKINGS, vars.clone()).await;
        let (lines, total) = recount(&map, data(&bookings, "eventBookings"));

        assert_eq!(report["eventId"], event_id);
        assert_eq!(report["seq"], map["seq"]);
        for field in [
            "booked",
            "held",
            "available",
            "blocked",
            "checkedIn",
            "grossCents",
            "refundedCents",
        ] {
            assert_eq!(report[field], total[field], "{field}: {report}");
        }
        assert_eq!(
            total,
            json!({"booked": 5, "held": 2, "available": 7, "blocked": 1, "checkedIn": 0,
                   "grossCents": 9000 * 2 + 4000 + 1500 * 2, "refundedCents": 0})
        );
        let by_category = report["byCategory"].as_array().expect("byCategory");
        assert_eq!(by_category.len(), 3, "{report}");
        let names: Vec<&str> = by_category
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["(no category)", "Gold", "Silver"]);
        for line in by_category {
            let mut line = line.clone();
            let key = line["categoryId"].to_string();
            let object = line.as_object_mut().expect("a line");
            object.remove("categoryId");
            object.remove("name");
            assert_eq!(line, lines[&key], "category {key}");
        }
    }
);
