//! Tickets and the door: one ticket per booked seat with an unguessable code, readable by
//! the booking's owner and admins; `checkIn` redeems a code exactly once under concurrency,
//! refuses invalid codes, answers a retry with the first answer and rate limits failed
//! look-ups; the sales report and the CSV export show check-ins.

use std::collections::HashSet;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::backoffice_connections::confirm;
use crate::both_backends;
use crate::helpers::*;

const CONFIRM: &str = "mutation($h: ID!) { confirmHold(holdId: $h) { id userId
  tickets { id bookingId eventId seatId areaId code checkedInAt } } }";
const MY_BOOKINGS: &str = "{ myBookings { id userId tickets { id code seatId } } }";
const EVENT_BOOKINGS: &str = "query($e: ID!) { eventBookings(eventId: $e) { edges { node { id userId tickets { id code seatId } } } } }";
const TICKET: &str =
    "query($c: String!) { ticket(code: $c) { id bookingId eventId seatId code checkedInAt } }";
const CHECK_IN: &str = "mutation($c: String!, $e: ID!, $k: String) { checkIn(code: $c, eventId: $e, idempotencyKey: $k) {
  ticket { id code checkedInAt } booking { id status userId } } }";

/// `user` holds and confirms `seats`; the booking (id, userId, tickets).
async fn book_seats(app: &TestApp, user: &str, event_id: &str, seats: &[&str]) -> Value {
    let token = app.token(user);
    let hold = hold_id(&app.hold_seats(&token, event_id, seats).await);
    let body = app.gql(Some(&token), CONFIRM, json!({"h": hold})).await;
    data(&body, "confirmHold").clone()
}

/// The codes of a booking's tickets, in ticket order.
fn codes_of(booking: &Value) -> Vec<String> {
    booking["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .map(|t| t["code"].as_str().expect("code").to_owned())
        .collect()
}

async fn check_in(
    app: &TestApp,
    token: Option<&str>,
    code: &str,
    event_id: &str,
    key: Option<&str>,
) -> Value {
    app.gql(token, CHECK_IN, json!({"c": code, "e": event_id, "k": key}))
        .await
}

both_backends!(
    booking_two_seats_gives_two_tickets_for_the_owner_and_admins_only,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(1, 4).await;
        let booking = book_seats(&app, "alice", &event_id, &[&seats[0], &seats[2]]).await;
        assert_eq!(booking["userId"], "alice");
        let tickets = booking["tickets"].as_array().expect("tickets");
        assert_eq!(tickets.len(), 2);
        let seat_ids: Vec<&str> = tickets
            .iter()
            .map(|t| t["seatId"].as_str().expect("seatId"))
            .collect();
        assert_eq!(seat_ids, [seats[0].as_str(), seats[2].as_str()]);
        let codes = codes_of(&booking);
        assert_ne!(codes[0], codes[1]);
        for (t, code) in tickets.iter().zip(&codes) {
            assert_eq!(code.len(), 26, "{code}");
            assert!(code.chars().all(|c| c.is_ascii_alphanumeric()), "{code}");
            assert_eq!(t["bookingId"], booking["id"]);
            assert_eq!(t["eventId"], event_id.as_str());
            assert!(t["areaId"].is_null());
            assert!(t["checkedInAt"].is_null());
        }

        // The owner reads them in their bookings, an admin in the event's bookings and by code.
        let mine = app
            .gql(Some(&app.token("alice")), MY_BOOKINGS, json!({}))
            .await;
        assert_eq!(
            data(&mine, "myBookings")[0]["tickets"],
            json!(
                tickets
                    .iter()
                    .map(|t| json!({"id": t["id"], "code": t["code"], "seatId": t["seatId"]}))
                    .collect::<Vec<_>>()
            )
        );
        let admin = app.admin_token();
        let all = app
            .gql(Some(&admin), EVENT_BOOKINGS, json!({"e": event_id}))
            .await;
        let node = &data(&all, "eventBookings")["edges"][0]["node"];
        assert_eq!(node["userId"], "alice");
        assert_eq!(codes_of(node), codes);
        let found = app.gql(Some(&admin), TICKET, json!({"c": codes[1]})).await;
        assert_eq!(data(&found, "ticket")["id"], tickets[1]["id"]);
        assert_eq!(data(&found, "ticket")["seatId"], seats[2].as_str());
        let lower = app
            .gql(
                Some(&admin),
                TICKET,
                json!({"c": codes[1].to_ascii_lowercase()}),
            )
            .await;
        assert_eq!(data(&lower, "ticket")["id"], tickets[1]["id"]);
        let unknown = app
            .gql(Some(&admin), TICKET, json!({"c": "A".repeat(26)}))
            .await;
        assert!(data(&unknown, "ticket").is_null());

        // Anyone else sees none of them.
        let eve = app.token("eve");
        let theirs = app.gql(Some(&eve), MY_BOOKINGS, json!({})).await;
        assert_eq!(data(&theirs, "myBookings"), &json!([]));
        let body = app
            .gql(Some(&eve), EVENT_BOOKINGS, json!({"e": event_id}))
            .await;
        assert_eq!(expect_error(&body), "FORBIDDEN");
        let body = app.gql(Some(&eve), TICKET, json!({"c": codes[0]})).await;
        assert_eq!(expect_error(&body), "FORBIDDEN");
        assert!(
            body["data"].is_null() || body["data"]["ticket"].is_null(),
            "{body}"
        );
        let body = app.gql(None, TICKET, json!({"c": codes[0]})).await;
        assert_eq!(expect_error(&body), "UNAUTHENTICATED");
        let body = app
            .gql(Some(&eve), ops::CANCEL_BOOKING, json!({"b": booking["id"]}))
            .await;
        assert_eq!(expect_error(&body), "FORBIDDEN");
        assert!(!body.to_string().contains(&codes[0]));
    }
);

both_backends!(
    concurrent_check_ins_of_one_code_redeem_it_once,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(1, 4).await;
        let booking = book_seats(&app, "alice", &event_id, &[&seats[0], &seats[1]]).await;
        let codes = codes_of(&booking);
        let admin = app.admin_token();

        let results = join_all((0..50).map(|_| {
            let (app, admin, code, event_id) = (&app, &admin, &codes[0], &event_id);
            retrying(move || check_in(app, Some(admin), code, event_id, None))
        }))
        .await;
        let winners: Vec<&Value> = results.iter().filter(|b| b["errors"].is_null()).collect();
        assert_eq!(winners.len(), 1, "exactly one check-in: {results:?}");
        let won = &winners[0]["data"]["checkIn"];
        assert_eq!(won["ticket"]["code"], codes[0].as_str());
        assert_eq!(won["booking"]["id"], booking["id"]);
        assert_eq!(won["booking"]["status"], "CONFIRMED");
        let at = won["ticket"]["checkedInAt"]
            .as_str()
            .expect("checkedInAt")
            .to_owned();
        for body in results.iter().filter(|b| !b["errors"].is_null()) {
            assert_eq!(expect_error(body), "ALREADY_CHECKED_IN", "{body}");
            assert_eq!(body["errors"][0]["extensions"]["checkedInAt"], at.as_str());
        }
        let stored = app.gql(Some(&admin), TICKET, json!({"c": codes[0]})).await;
        assert_eq!(data(&stored, "ticket")["checkedInAt"], at.as_str());

        // With a key: the first answer again for the same key, ALREADY_CHECKED_IN without.
        let first = check_in(&app, Some(&admin), &codes[1], &event_id, Some("door-1")).await;
        let first = data(&first, "checkIn").clone();
        let again = check_in(&app, Some(&admin), &codes[1], &event_id, Some("door-1")).await;
        assert_eq!(data(&again, "checkIn"), &first);
        let other = check_in(&app, Some(&admin), &codes[1], &event_id, Some("door-2")).await;
        assert_eq!(expect_error(&other), "ALREADY_CHECKED_IN");
        assert_eq!(
            other["errors"][0]["extensions"]["checkedInAt"],
            first["ticket"]["checkedInAt"]
        );
        assert_healthy(&app).await;
    }
);

both_backends!(
    check_in_refuses_unknown_foreign_and_cancelled_tickets,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(1, 4).await;
        let (other_event, other_seats) = app.create_event(1, 2).await;
        let admin = app.admin_token();
        let kept = codes_of(&book_seats(&app, "alice", &event_id, &[&seats[0]]).await);
        let cancelled = book_seats(&app, "bob", &event_id, &[&seats[1]]).await;
        let body = app
            .gql(
                Some(&app.token("bob")),
                ops::CANCEL_BOOKING,
                json!({"b": cancelled["id"]}),
            )
            .await;
        assert_eq!(data(&body, "cancelBooking")["status"], "CANCELLED");
        let foreign = codes_of(&book_seats(&app, "carol", &other_event, &[&other_seats[0]]).await);

        let reason = |body: &Value| {
            assert_eq!(expect_error(body), "TICKET_INVALID", "{body}");
            body["errors"][0]["extensions"]["reason"]
                .as_str()
                .expect("reason")
                .to_owned()
        };
        for unknown in ["A".repeat(26), "not a code".to_owned(), String::new()] {
            let body = check_in(&app, Some(&admin), &unknown, &event_id, None).await;
            assert_eq!(reason(&body), "UNKNOWN");
        }
        let body = check_in(&app, Some(&admin), &foreign[0], &event_id, None).await;
        assert_eq!(reason(&body), "OTHER_EVENT");
        let body = check_in(
            &app,
            Some(&admin),
            &codes_of(&cancelled)[0],
            &event_id,
            None,
        )
        .await;
        assert_eq!(reason(&body), "BOOKING_CANCELLED");
        // The booking keeps its ticket; it just lets nobody in.
        let stored = app
            .gql(Some(&admin), TICKET, json!({"c": codes_of(&cancelled)[0]}))
            .await;
        assert!(data(&stored, "ticket")["checkedInAt"].is_null());

        // Only admins check in; nothing was redeemed by the refusals.
        let body = check_in(&app, Some(&app.token("alice")), &kept[0], &event_id, None).await;
        assert_eq!(expect_error(&body), "FORBIDDEN");
        let body = check_in(&app, None, &kept[0], &event_id, None).await;
        assert_eq!(expect_error(&body), "UNAUTHENTICATED");
        let body = check_in(&app, Some(&admin), &kept[0], "999999", None).await;
        assert_eq!(expect_error(&body), "NOT_FOUND");
        let body = check_in(&app, Some(&admin), &kept[0], &event_id, None).await;
        assert!(data(&body, "checkIn")["ticket"]["checkedInAt"].is_string());
        let body = check_in(&app, Some(&admin), &foreign[0], &other_event, None).await;
        assert!(data(&body, "checkIn")["ticket"]["checkedInAt"].is_string());
    }
);

both_backends!(
    failed_ticket_look_ups_are_rate_limited,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(1, 2).await;
        let good = codes_of(&book_seats(&app, "alice", &event_id, &[&seats[0]]).await);
        let admin = app.admin_token();
        let mut answers = Vec::new();
        for i in 0..30 {
            let guess = format!("{i:A<26}");
            answers.push(expect_error(
                &check_in(&app, Some(&admin), &guess, &event_id, None).await,
            ));
        }
        let invalid = answers.iter().filter(|c| *c == "TICKET_INVALID").count();
        let limited: Vec<_> = answers.iter().skip(invalid).collect();
        assert_eq!(invalid, 20, "{answers:?}");
        assert_eq!(limited.len(), 10);
        assert!(limited.iter().all(|c| *c == "RETRY_LATER"), "{answers:?}");
        // While limited, even a good code and a `ticket` look-up wait; the answer says how long.
        let body = check_in(&app, Some(&admin), &good[0], &event_id, None).await;
        assert_eq!(expect_error(&body), "RETRY_LATER");
        let wait = body["errors"][0]["extensions"]["retryAfterMs"]
            .as_u64()
            .expect("retryAfterMs");
        assert!((1..=10_000).contains(&wait), "{wait}");
        let body = app.gql(Some(&admin), TICKET, json!({"c": good[0]})).await;
        assert_eq!(expect_error(&body), "RETRY_LATER");
        // Another admin has a budget of their own.
        let other = sign(
            &json!({"sub": "door-2", "role": "admin", "exp": now() + 3600}),
            JWT_SECRET,
        );
        let body = check_in(&app, Some(&other), &good[0], &event_id, None).await;
        assert_eq!(data(&body, "checkIn")["ticket"]["code"], good[0].as_str());
    }
);

both_backends!(sales_report_and_csv_show_check_ins, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, seats) = app.create_event(1, 4).await;
    let admin = app.admin_token();
    let token = app.token("alice");
    let hold = hold_id(
        &app.hold_seats(&token, &event_id, &[&seats[0], &seats[1]])
            .await,
    );
    let booking_id = confirm(&app, &token, &hold).await;
    let body = app.gql(Some(&token), MY_BOOKINGS, json!({})).await;
    let codes = codes_of(&data(&body, "myBookings")[0]);
    let body = check_in(&app, Some(&admin), &codes[1], &event_id, None).await;
    let at = data(&body, "checkIn")["ticket"]["checkedInAt"]
        .as_str()
        .expect("checkedInAt")
        .to_owned();

    let report = app
            .gql(
                Some(&admin),
                "query($e: ID!) { salesReport(eventId: $e) { booked checkedIn byCategory { booked checkedIn } } }",
                json!({"e": event_id}),
            )
            .await;
    let report = data(&report, "salesReport");
    assert_eq!(report["booked"], 2);
    assert_eq!(report["checkedIn"], 1);
    assert_eq!(report["byCategory"], json!([{"booked": 2, "checkedIn": 1}]));

    let text = reqwest::Client::new()
        .get(format!("{}/admin/events/{event_id}/bookings.csv", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("export answered")
        .text()
        .await
        .expect("body");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let instant = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("a time");
    let rows: Vec<(String, String, String)> = reader
        .records()
        .map(|r| {
            let r = r.expect("a CSV record");
            (r[0].to_owned(), r[4].to_owned(), r[11].to_owned())
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (booking_id.clone(), codes[0].clone(), String::new()),
            (booking_id, codes[1].clone(), rows[1].2.clone()),
        ]
    );
    assert_eq!(instant(&rows[1].2), instant(&at));
    let distinct: HashSet<&String> = codes.iter().collect();
    assert_eq!(distinct.len(), 2);
});

both_backends!(
    bookings_made_before_tickets_get_one_per_seat_on_upgrade,
    |backend| async move {
        use migration::{Migrator, MigratorTrait};
        use sea_orm::{ConnectionTrait, Database};

        const HOLD: &str = "6f1c1c9e-8a1e-4b7e-9d55-0c3b8f2f0a02";
        const BOOKING: &str = "6f1c1c9e-8a1e-4b7e-9d55-0c3b8f2f0b01";
        let url = match backend {
            Backend::Postgres => fresh_pg_database().await,
            Backend::Sqlite => fresh_sqlite_database(),
        };
        let conn = Database::connect(url.as_str()).await.expect("connect");
        // Every migration before the tickets one.
        Migrator::up(&conn, Some(10))
            .await
            .expect("the schema before tickets");
        let now = onsale::domain::clock::now_ms();
        let mut statements = vec![
            "INSERT INTO events (id, name, venue, starts_at_ms, seq, created_at_ms) VALUES (1, 'Old Night', 'Old Hall', 1893456000000, 2, 0)".to_owned(),
            format!("INSERT INTO holds (id, event_id, user_id, status, expires_at_ms, total_cents, created_at_ms, updated_at_ms) VALUES ('{HOLD}', 1, 'alice', 'CONFIRMED', {now}, 2000, {now}, {now})"),
            format!("INSERT INTO bookings (id, event_id, hold_id, user_id, status, total_cents, payment_intent_id, created_at_ms, updated_at_ms) VALUES ('{BOOKING}', 1, '{HOLD}', 'alice', 'CONFIRMED', 2000, NULL, {now}, {now})"),
        ];
        for seat in 1..=2 {
            statements.push(format!("INSERT INTO seats (id, event_id, section, row_label, number, price_cents, position, status, hold_id, hold_expires_at_ms, booking_id, version) VALUES ({seat}, 1, 'Main', 'A', {seat}, 1000, {seat}, 'BOOKED', NULL, NULL, '{BOOKING}', 1)"));
            statements.push(format!("INSERT INTO booking_seats (booking_id, seat_id, active) VALUES ('{BOOKING}', {seat}, true)"));
        }
        for sql in statements {
            conn.execute_unprepared(&sql).await.expect(&sql);
        }
        let _ = conn.close().await;

        let app = TestApp::spawn_on(&url, Options::default()).await;
        let body = app
            .gql(Some(&app.token("alice")), MY_BOOKINGS, json!({}))
            .await;
        let booking = &data(&body, "myBookings")[0];
        let seat_ids: Vec<&Value> = booking["tickets"]
            .as_array()
            .expect("tickets")
            .iter()
            .map(|t| &t["seatId"])
            .collect();
        assert_eq!(seat_ids, [&json!("1"), &json!("2")]);
        let codes = codes_of(booking);
        assert_ne!(codes[0], codes[1]);
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 26 && c.chars().all(|c| c.is_ascii_alphanumeric()))
        );
        let body = check_in(&app, Some(&app.admin_token()), &codes[0], "1", None).await;
        assert_eq!(data(&body, "checkIn")["booking"]["id"], BOOKING);
        app.stop().await;

        // The table takes a seat or an area, exactly one, and never a code twice.
        let conn = Database::connect(url.as_str()).await.expect("connect");
        let insert = |code: &str, seat: &str, area: &str| {
            format!(
                "INSERT INTO tickets (code, booking_id, event_id, seat_id, area_id, created_at_ms) VALUES ('{code}', '{BOOKING}', 1, {seat}, {area}, 0)"
            )
        };
        for sql in [
            insert("NEITHER", "NULL", "NULL"),
            insert("BOTH", "1", "7"),
            insert(&codes[1], "NULL", "7"),
        ] {
            assert!(
                conn.execute_unprepared(&sql).await.is_err(),
                "accepted: {sql}"
            );
        }
        conn.execute_unprepared(&insert("AREAPLACE", "NULL", "7"))
            .await
            .expect("an area's ticket");
        let _ = conn.close().await;
    }
);

/// A paid booking gets its ticket in the saga's transaction; once refunded, it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paid_booking_has_a_ticket_that_its_refund_invalidates() {
    use crate::payments::{bookings, held_and_started, intent_status, pay, payments, stripe_base};
    let settles = std::time::Duration::from_secs(15);
    let app = TestApp::spawn_with(Backend::Postgres, payments(&stripe_base())).await;
    let alice = app.token("alice");
    let (event_id, seats, hold_id, _, intent) = held_and_started(&app, &alice).await;
    assert_eq!(pay(&app.client, &intent, "pm_card_visa").await, 200);
    let body = app
        .gql(
            Some(&alice),
            "mutation($h: ID!) { completeCheckout(holdId: $h) { id tickets { code seatId } } }",
            json!({"h": hold_id}),
        )
        .await;
    let booking = data(&body, "completeCheckout").clone();
    assert_eq!(booking["tickets"][0]["seatId"], seats[0].as_str());
    let code = codes_of(&booking).remove(0);
    wait_until("the payment is captured", settles, || async {
        intent_status(&app.client, &intent).await == "succeeded"
    })
    .await;
    let body = app
        .gql(
            Some(&alice),
            ops::CANCEL_BOOKING,
            json!({"b": booking["id"]}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    wait_until("refunded", settles, || async {
        bookings(&app, &alice)
            .await
            .first()
            .is_some_and(|b| b["status"] == "REFUNDED")
    })
    .await;
    let body = check_in(&app, Some(&app.admin_token()), &code, &event_id, None).await;
    assert_eq!(expect_error(&body), "TICKET_INVALID");
    assert_eq!(
        body["errors"][0]["extensions"]["reason"],
        "BOOKING_REFUNDED"
    );
    app.stop().await;
}
