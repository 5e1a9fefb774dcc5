//! The CSV export: admin only (401, 403, 404), parsed back with a real CSV parser, one row
//! per booked seat, names with quotes and commas survive exactly and are neutralised against
//! formulas (inputs refuse control characters, so no name holds a newline; the unit test of
//! `backoffice::export::cell` covers CR and LF).

use serde_json::json;

use crate::backoffice_connections::{book, confirm};
use crate::both_backends;
use crate::helpers::*;

const HEADER: [&str; 13] = [
    "booking_id",
    "status",
    "user_id",
    "event_id",
    "ticket_code",
    "section",
    "row",
    "number",
    "area",
    "category",
    "price_cents",
    "checked_in_at",
    "created_at",
];

async fn export(app: &TestApp, token: Option<&str>, event_id: &str) -> reqwest::Response {
    let mut req =
        reqwest::Client::new().get(format!("{}/admin/events/{event_id}/bookings.csv", app.base));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("export answered")
}

both_backends!(
    csv_export_has_one_row_per_booked_seat_and_neutralises_formulas,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let admin = app.admin_token();
        let hostile = "=HYPERLINK(\"x\"), \"Bob\", Jr.";
        let input = json!({
            "name": "Gala", "venue": "Hall", "startsAt": "2030-01-01T20:00:00Z",
            "categories": [{"name": "Gold", "priceCents": 9000}],
            "sections": [{"name": hostile, "rows": [
                {"label": "A", "seats": 3, "priceCents": 0, "category": "Gold"},
                {"label": "-B", "seats": 3, "priceCents": 1500}
            ]}]
        });
        let body = app
            .gql(
                Some(&admin),
                "mutation($input: CreateEventInput!) { createEvent(input: $input) { id } }",
                json!({"input": input}),
            )
            .await;
        let event_id = data(&body, "createEvent")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let seats = app.statuses(&event_id).await.order;

        assert_eq!(export(&app, None, &event_id).await.status(), 401);
        assert_eq!(
            export(&app, Some(&app.token("eve")), &event_id)
                .await
                .status(),
            403
        );
        assert_eq!(export(&app, Some(&admin), "999999").await.status(), 404);

        // Two seats in one booking by "@alice", one by "+bob" (cancelled later), one hold.
        let alice = app.token("@alice");
        let hold = hold_id(
            &app.hold_seats(&alice, &event_id, &[&seats[0], &seats[4]])
                .await,
        );
        let first = confirm(&app, &alice, &hold).await;
        let bob = "+bob \"the, second\"";
        let second = book(&app, bob, &event_id, &seats[1]).await;
        let body = app
            .gql(
                Some(&app.token(bob)),
                ops::CANCEL_BOOKING,
                json!({"b": second}),
            )
            .await;
        assert_eq!(data(&body, "cancelBooking")["status"], "CANCELLED");
        app.hold_seats(&app.token("carol"), &event_id, &[&seats[2]])
            .await;

        let resp = export(&app, Some(&admin), &event_id).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
        let text = resp.text().await.expect("body");
        assert!(text.starts_with(&(HEADER.join(",") + "\r\n")), "{text}");
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().expect("header").iter().collect::<Vec<_>>(),
            HEADER
        );
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.expect("a CSV record").iter().map(str::to_owned).collect())
            .collect();
        let section = format!("'{hostile}");
        let short = |r: &Vec<String>| {
            vec![
                r[0].clone(),
                r[1].clone(),
                r[2].clone(),
                r[3].clone(),
                r[5].clone(),
                r[6].clone(),
                r[7].clone(),
                r[9].clone(),
                r[10].clone(),
            ]
        };
        let got: Vec<Vec<String>> = rows.iter().map(short).collect();
        let row = |b: &str, st: &str, u: &str, r: &str, n: &str, c: &str, p: &str| {
            vec![
                b.to_owned(),
                st.to_owned(),
                u.to_owned(),
                event_id.clone(),
                section.clone(),
                r.to_owned(),
                n.to_owned(),
                c.to_owned(),
                p.to_owned(),
            ]
        };
        assert_eq!(
            got,
            vec![
                row(&first, "CONFIRMED", "'@alice", "A", "1", "Gold", "9000"),
                row(&first, "CONFIRMED", "'@alice", "'-B", "2", "", "1500"),
                row(
                    &second,
                    "CANCELLED",
                    &format!("'{bob}"),
                    "A",
                    "2",
                    "Gold",
                    "9000"
                ),
            ]
        );
        for r in &rows {
            assert_eq!(r.len(), 13);
            assert!(
                chrono::DateTime::parse_from_rfc3339(&r[12]).is_ok(),
                "created_at {}",
                r[12]
            );
            assert!(r[12].ends_with('Z'));
        }
    }
);

both_backends!(
    csv_export_streams_many_bookings_in_batches,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(6, 100).await;
        // 600 seats booked in 6 bookings of 100 seats (several batches of rows).
        let mut expected = 0;
        for (i, row) in seats.chunks(100).enumerate() {
            let token = app.token(&format!("u{i}"));
            let ids: Vec<&str> = row.iter().map(String::as_str).collect();
            let body = app.hold_seats(&token, &event_id, &ids).await;
            if body["errors"].is_null() {
                confirm(&app, &token, &hold_id(&body)).await;
                expected += ids.len();
            } else {
                // Over the server's seats-per-hold cap: one booking per seat instead.
                for seat in ids {
                    book(&app, &format!("u{i}"), &event_id, seat).await;
                    expected += 1;
                }
            }
        }
        let text = export(&app, Some(&app.admin_token()), &event_id)
            .await
            .text()
            .await
            .expect("body");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let mut seen = std::collections::HashSet::new();
        for record in reader.records() {
            let record = record.expect("a CSV record");
            assert!(
                seen.insert((record[6].to_owned(), record[7].to_owned())),
                "a seat twice"
            );
        }
        assert_eq!(seen.len(), expected);
        assert_eq!(expected, 600);
    }
);
