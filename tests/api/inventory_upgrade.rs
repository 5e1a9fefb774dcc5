//! Upgrading a database of the previous release (migrations up to 000005, rows as that
//! release wrote them): the new migrations keep every event, seat, hold and booking, and the
//! old rows work with the new rules (on sale, one extension per hold, no limits, no
//! categories, nothing blocked).

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

/// Migrations of the release before the organizer features.
const PREVIOUS_RELEASE_MIGRATIONS: u32 = 5;

const HELD: &str = "6f1c1c9e-8a1e-4b7e-9d55-0c3b8f2f0a01";
const CONFIRMED: &str = "6f1c1c9e-8a1e-4b7e-9d55-0c3b8f2f0a02";
const BOOKING: &str = "6f1c1c9e-8a1e-4b7e-9d55-0c3b8f2f0b01";

async fn count(conn: &DatabaseConnection, table: &str) -> i64 {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .expect("count")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("n")
}

const TABLES: [&str; 6] = [
    "events",
    "seats",
    "holds",
    "hold_seats",
    "bookings",
    "booking_seats",
];

both_backends!(
    a_previous_release_database_upgrades_without_losing_a_row,
    |backend| async move {
        let url = match backend {
            Backend::Postgres => fresh_pg_database().await,
            Backend::Sqlite => fresh_sqlite_database(),
        };
        let conn = Database::connect(url.as_str()).await.expect("connect");
        Migrator::up(&conn, Some(PREVIOUS_RELEASE_MIGRATIONS))
            .await
            .expect("the previous release's schema");
        let now = onsale::domain::clock::now_ms();
        let later = now + 3_600_000;
        for sql in [
            "INSERT INTO events (id, name, venue, starts_at_ms, seq, created_at_ms) VALUES (1, 'Old Night', 'Old Hall', 1893456000000, 3, 0)".to_owned(),
            format!("INSERT INTO seats (id, event_id, section, row_label, number, price_cents, position, status, hold_id, hold_expires_at_ms, booking_id, version) VALUES (1, 1, 'Main', 'A', 1, 1000, 0, 'HELD', '{HELD}', {later}, NULL, 1)"),
            format!("INSERT INTO seats (id, event_id, section, row_label, number, price_cents, position, status, hold_id, hold_expires_at_ms, booking_id, version) VALUES (2, 1, 'Main', 'A', 2, 1000, 1, 'BOOKED', NULL, NULL, '{BOOKING}', 2)"),
            "INSERT INTO seats (id, event_id, section, row_label, number, price_cents, position, status, hold_id, hold_expires_at_ms, booking_id, version) VALUES (3, 1, 'Main', 'A', 3, 1000, 2, 'AVAILABLE', NULL, NULL, NULL, 0)".to_owned(),
            format!("INSERT INTO holds (id, event_id, user_id, status, expires_at_ms, total_cents, created_at_ms, updated_at_ms) VALUES ('{HELD}', 1, 'alice', 'ACTIVE', {later}, 1000, {now}, {now})"),
            format!("INSERT INTO holds (id, event_id, user_id, status, expires_at_ms, total_cents, created_at_ms, updated_at_ms) VALUES ('{CONFIRMED}', 1, 'alice', 'CONFIRMED', {later}, 1000, {now}, {now})"),
            format!("INSERT INTO hold_seats (hold_id, seat_id, active) VALUES ('{HELD}', 1, true)"),
            format!("INSERT INTO hold_seats (hold_id, seat_id, active) VALUES ('{CONFIRMED}', 2, false)"),
            format!("INSERT INTO bookings (id, event_id, hold_id, user_id, status, total_cents, payment_intent_id, created_at_ms, updated_at_ms) VALUES ('{BOOKING}', 1, '{CONFIRMED}', 'alice', 'CONFIRMED', 1000, NULL, {now}, {now})"),
            format!("INSERT INTO booking_seats (booking_id, seat_id, active) VALUES ('{BOOKING}', 2, true)"),
        ] {
            conn.execute_unprepared(&sql).await.expect(&sql);
        }
        let mut before = Vec::new();
        for table in TABLES {
            before.push(count(&conn, table).await);
        }

        // The new release starts on it and migrates.
        let app = TestApp::spawn_on(&url, Options::default()).await;
        let mut after = Vec::new();
        for table in TABLES {
            after.push(count(&conn, table).await);
        }
        assert_eq!(before, after, "rows of {TABLES:?}");
        let _ = conn.close().await;

        let body = app
            .gql(
                None,
                "{ event(id: \"1\") { name status onSaleNow seatCount available held booked blocked maxHoldExtensions maxSeatsPerOrder categories { id } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            data(&body, "event"),
            &json!({"name": "Old Night", "status": "ON_SALE", "onSaleNow": true, "seatCount": 3,
                    "available": 1, "held": 1, "booked": 1, "blocked": 0, "maxHoldExtensions": 1,
                    "maxSeatsPerOrder": null, "categories": []})
        );
        let alice = app.token("alice");
        let body = app
            .gql(
                Some(&alice),
                "{ myHolds { id status extensionsLeft seats { id status } } myBookings { id status seats { id } } }",
                json!({}),
            )
            .await;
        let holds = data(&body, "myHolds").as_array().expect("holds").clone();
        let held = holds
            .iter()
            .find(|h| h["id"] == HELD)
            .expect("the held hold");
        assert_eq!(held["status"], "ACTIVE");
        assert_eq!(held["extensionsLeft"], 1);
        assert_eq!(held["seats"], json!([{"id": "1", "status": "HELD"}]));
        assert!(
            holds
                .iter()
                .any(|h| h["id"] == CONFIRMED && h["status"] == "CONFIRMED")
        );
        assert_eq!(
            data(&body, "myBookings"),
            &json!([{"id": BOOKING, "status": "CONFIRMED", "seats": [{"id": "2"}]}])
        );

        // The old hold takes the new rules: extended once, then confirmed.
        let body = app
            .gql(
                Some(&alice),
                "mutation($h: ID!) { extendHold(holdId: $h) { extensionsLeft } }",
                json!({"h": HELD}),
            )
            .await;
        assert_eq!(data(&body, "extendHold")["extensionsLeft"], 0);
        let body = app
            .gql(Some(&alice), CONFIRM_HOLD, json!({"h": HELD}))
            .await;
        assert_eq!(data(&body, "confirmHold")["status"], "CONFIRMED");
        let body = app.hold_seats(&app.token("bob"), "1", &["3"]).await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
        app.stop().await;
    }
);
