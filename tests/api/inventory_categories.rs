//! Price categories and accessible seats: created with the event, shown on the map, and
//! chosen by `holdBestAvailable(category:, accessible:)`.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

const CREATE: &str = "mutation($input: CreateEventInput!) { createEvent(input: $input) { id categories { id name priceCents color } } }";
const MAP: &str = "query($e: ID!) { seatMap(eventId: $e) { seats { id row number priceCents categoryId accessible } } }";
const BEST: &str = "mutation($e: ID!, $n: Int!, $c: ID, $a: Boolean) { holdBestAvailable(eventId: $e, count: $n, category: $c, accessible: $a) { totalCents seats { id row number } } }";

fn input(rows: Value) -> Value {
    json!({
        "name": "Gala", "venue": "Hall", "startsAt": "2030-01-01T20:00:00Z",
        "categories": [
            {"name": "Gold", "priceCents": 9000, "color": "#ffd700"},
            {"name": "Silver", "priceCents": 4000}
        ],
        "sections": [{"name": "Stalls", "rows": rows}]
    })
}

/// (row, number) of each seat of a hold.
fn places(hold: &Value) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = hold["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| {
            (
                s["row"].as_str().expect("row").to_owned(),
                s["number"].as_i64().expect("number"),
            )
        })
        .collect();
    out.sort();
    out
}

both_backends!(
    categories_price_seats_and_filter_best_available,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let admin = app.admin_token();
        let alice = app.token("alice");
        let rows = json!([
            {"label": "A", "seats": 6, "priceCents": 0, "category": "Gold", "accessible": [1, 2]},
            {"label": "B", "seats": 4, "priceCents": 4000, "category": "Silver"},
            {"label": "C", "seats": 4, "priceCents": 1500}
        ]);
        let body = app
            .gql(Some(&admin), CREATE, json!({"input": input(rows)}))
            .await;
        let event = data(&body, "createEvent").clone();
        let event_id = event["id"].as_str().expect("id").to_owned();
        let categories: HashMap<String, Value> = event["categories"]
            .as_array()
            .expect("categories")
            .iter()
            .map(|c| (c["name"].as_str().expect("name").to_owned(), c.clone()))
            .collect();
        assert_eq!(categories["Gold"]["priceCents"], 9000);
        assert_eq!(categories["Gold"]["color"], "#ffd700");
        assert!(categories["Silver"]["color"].is_null());
        let gold = categories["Gold"]["id"].as_str().expect("id").to_owned();
        let silver = categories["Silver"]["id"].as_str().expect("id").to_owned();

        let body = app.gql(None, MAP, json!({"e": event_id})).await;
        for seat in data(&body, "seatMap")["seats"].as_array().expect("seats") {
            let (row, number) = (seat["row"].as_str().expect("row"), seat["number"].as_i64());
            let (category, price) = match row {
                "A" => (Value::from(gold.as_str()), 9000),
                "B" => (Value::from(silver.as_str()), 4000),
                _ => (Value::Null, 1500),
            };
            assert_eq!(seat["categoryId"], category, "{seat}");
            assert_eq!(seat["priceCents"], price, "{seat}");
            let accessible = row == "A" && matches!(number, Some(1 | 2));
            assert_eq!(seat["accessible"], accessible, "{seat}");
        }

        // By category.
        let body = app
            .gql(
                Some(&alice),
                BEST,
                json!({"e": event_id, "n": 2, "c": silver}),
            )
            .await;
        let hold = data(&body, "holdBestAvailable");
        assert!(places(hold).iter().all(|(row, _)| row == "B"), "{hold}");
        assert_eq!(hold["totalCents"], 8000);
        // Accessible seats only, then a category without its accessible seats.
        let body = app
            .gql(
                Some(&alice),
                BEST,
                json!({"e": event_id, "n": 2, "a": true}),
            )
            .await;
        let hold = data(&body, "holdBestAvailable");
        assert_eq!(places(hold), vec![("A".into(), 1), ("A".into(), 2)]);
        let body = app
            .gql(
                Some(&alice),
                BEST,
                json!({"e": event_id, "n": 4, "c": gold, "a": false}),
            )
            .await;
        let hold = data(&body, "holdBestAvailable");
        assert_eq!(
            places(hold),
            vec![
                ("A".into(), 3),
                ("A".into(), 4),
                ("A".into(), 5),
                ("A".into(), 6)
            ]
        );
        // None left that fits.
        let body = app
            .gql(
                Some(&alice),
                BEST,
                json!({"e": event_id, "n": 1, "a": true}),
            )
            .await;
        assert_eq!(expect_error(&body), "SEAT_UNAVAILABLE");

        // Another event's category is refused.
        let body = app
            .gql(
                Some(&admin),
                CREATE,
                json!({"input": input(json!([{"label": "A", "seats": 1, "priceCents": 0, "category": "Gold"}]))}),
            )
            .await;
        let other_gold = data(&body, "createEvent")["categories"][0]["id"].clone();
        let body = app
            .gql(
                Some(&alice),
                BEST,
                json!({"e": event_id, "n": 1, "c": other_gold}),
            )
            .await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT");
        app.stop().await;
    }
);

both_backends!(
    a_rows_category_must_exist_and_match_its_price,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let admin = app.admin_token();
        for rows in [
            json!([{"label": "A", "seats": 2, "priceCents": 100, "category": "Gold"}]),
            json!([{"label": "A", "seats": 2, "priceCents": 0, "category": "Bronze"}]),
            json!([{"label": "A", "seats": 2, "priceCents": 0, "accessible": [3]}]),
        ] {
            let body = app
                .gql(Some(&admin), CREATE, json!({"input": input(rows.clone())}))
                .await;
            assert_eq!(expect_error(&body), "BAD_USER_INPUT", "{rows}");
        }
        let body = app.gql(None, "{ events { id } }", json!({})).await;
        assert_eq!(data(&body, "events"), &json!([]), "nothing was created");
        app.stop().await;
    }
);
