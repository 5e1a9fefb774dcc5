//! The back office's connections: an event's bookings and holds, newest first by keyset
//! cursor, filtered, admin only; a page never repeats or skips a row while bookings arrive.

use std::collections::HashSet;

use futures::StreamExt;
use futures::future::join_all;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

const BOOKINGS: &str = "query($e: ID!, $first: Int, $after: String, $status: BookingStatus, $user: String) {
  eventBookings(eventId: $e, first: $first, after: $after, status: $status, userId: $user) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id status createdAt } } } }";
const HOLDS: &str = "query($e: ID!, $first: Int, $after: String, $status: HoldStatus) {
  eventHolds(eventId: $e, first: $first, after: $after, status: $status) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id status userId } } } }";

/// `user` holds `seat` and confirms it; the booking id.
pub async fn book(app: &TestApp, user: &str, event_id: &str, seat: &str) -> String {
    let token = app.token(user);
    // Under load a write may be answered RETRY_LATER (nothing was done): do as it says.
    let seats = [seat];
    let hold = hold_id(&retrying(|| app.hold_seats(&token, event_id, &seats)).await);
    confirm(app, &token, &hold).await
}

/// `token` confirms its hold `hold`; the booking id.
pub async fn confirm(app: &TestApp, token: &str, hold: &str) -> String {
    let body = retrying(|| {
        app.gql(
            Some(token),
            ops::CONFIRM_HOLD,
            json!({"h": hold, "k": null}),
        )
    })
    .await;
    data(&body, "confirmHold")["id"]
        .as_str()
        .expect("booking id")
        .to_owned()
}

/// Every page of `query` (`field`) with `variables`, `size` at a time, running `between`
/// after each page; the node ids in page order and the first page's totalCount.
async fn all_pages<F, Fut>(
    app: &TestApp,
    query: &str,
    field: &str,
    mut variables: Value,
    size: i64,
    mut between: F,
) -> (Vec<String>, i64)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let admin = app.admin_token();
    variables["first"] = json!(size);
    let mut ids = Vec::new();
    let mut total = None;
    for page in 0.. {
        let body = app.gql(Some(&admin), query, variables.clone()).await;
        let conn = data(&body, field);
        total.get_or_insert(conn["totalCount"].as_i64().expect("totalCount"));
        let edges = conn["edges"].as_array().expect("edges");
        assert!(
            edges.len() as i64 <= size,
            "a page larger than first: {body}"
        );
        for edge in edges {
            ids.push(edge["node"]["id"].as_str().expect("id").to_owned());
        }
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        assert_eq!(
            conn["pageInfo"]["endCursor"],
            edges.last().expect("an edge")["cursor"]
        );
        variables["after"] = conn["pageInfo"]["endCursor"].clone();
        between(page).await;
    }
    (ids, total.expect("a page"))
}

both_backends!(
    event_bookings_are_admin_only_filtered_and_paged_newest_first,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(2, 10).await;
        let vars = json!({"e": event_id});

        // Admin only.
        let body = app.gql(None, BOOKINGS, vars.clone()).await;
        assert_eq!(expect_error(&body), "UNAUTHENTICATED");
        let body = app
            .gql(Some(&app.token("eve")), BOOKINGS, vars.clone())
            .await;
        assert_eq!(expect_error(&body), "FORBIDDEN");
        let body = app.gql(Some(&app.token("eve")), HOLDS, vars.clone()).await;
        assert_eq!(expect_error(&body), "FORBIDDEN");

        // 12 bookings (alice has 2), one of them cancelled.
        let mut booked = Vec::new();
        for (i, seat) in seats.iter().take(12).enumerate() {
            let user = if i < 2 {
                "alice".to_owned()
            } else {
                format!("u{i}")
            };
            booked.push(book(&app, &user, &event_id, seat).await);
        }
        let body = app
            .gql(
                Some(&app.token("u5")),
                ops::CANCEL_BOOKING,
                json!({"b": booked[5]}),
            )
            .await;
        assert_eq!(data(&body, "cancelBooking")["status"], "CANCELLED");

        // Newest first, by 5: every booking once, in reverse creation order.
        let (ids, total) = all_pages(
            &app,
            BOOKINGS,
            "eventBookings",
            vars.clone(),
            5,
            |_| async {},
        )
        .await;
        assert_eq!(total, 12);
        let newest_first: Vec<String> = booked.iter().rev().cloned().collect();
        assert_eq!(ids, newest_first);

        // Filters.
        let (ids, total) = all_pages(
            &app,
            BOOKINGS,
            "eventBookings",
            json!({"e": event_id, "user": "alice"}),
            50,
            |_| async {},
        )
        .await;
        assert_eq!(
            (ids, total),
            (vec![booked[1].clone(), booked[0].clone()], 2)
        );
        let (ids, total) = all_pages(
            &app,
            BOOKINGS,
            "eventBookings",
            json!({"e": event_id, "status": "CANCELLED"}),
            50,
            |_| async {},
        )
        .await;
        assert_eq!((ids, total), (vec![booked[5].clone()], 1));
        let (_, total) = all_pages(
            &app,
            BOOKINGS,
            "eventBookings",
            json!({"e": event_id, "status": "CONFIRMED"}),
            50,
            |_| async {},
        )
        .await;
        assert_eq!(total, 11);

        // first defaults to 50 and is capped at 500; a cursor of another query is refused.
        let admin = app.admin_token();
        let body = app
            .gql(Some(&admin), BOOKINGS, json!({"e": event_id, "first": 501}))
            .await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT");
        let body = app
            .gql(Some(&admin), BOOKINGS, json!({"e": event_id, "first": 3}))
            .await;
        let cursor = data(&body, "eventBookings")["pageInfo"]["endCursor"].clone();
        let body = app
            .gql(
                Some(&admin),
                BOOKINGS,
                json!({"e": event_id, "after": cursor, "status": "CONFIRMED"}),
            )
            .await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT");
        let body = app
            .gql(Some(&admin), HOLDS, json!({"e": event_id, "after": cursor}))
            .await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT");
        let body = app
            .gql(
                Some(&admin),
                BOOKINGS,
                json!({"e": event_id, "after": "not-a-cursor"}),
            )
            .await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT");
        let body = app
            .gql(Some(&admin), BOOKINGS, json!({"e": "999999"}))
            .await;
        assert_eq!(expect_error(&body), "NOT_FOUND");

        // Holds: 12 confirmed, then two active and one released.
        let h1 = hold_id(
            &app.hold_seats(&app.token("h1"), &event_id, &[&seats[12]])
                .await,
        );
        let h2 = hold_id(
            &app.hold_seats(&app.token("h2"), &event_id, &[&seats[13]])
                .await,
        );
        let body = app
            .gql(
                Some(&app.token("h2")),
                "mutation($h: ID!) { releaseHold(holdId: $h) { id status } }",
                json!({"h": h2}),
            )
            .await;
        assert_eq!(data(&body, "releaseHold")["status"], "RELEASED");
        let h3 = hold_id(
            &app.hold_seats(&app.token("h3"), &event_id, &[&seats[14]])
                .await,
        );
        let (ids, total) = all_pages(
            &app,
            HOLDS,
            "eventHolds",
            json!({"e": event_id, "status": "ACTIVE"}),
            1,
            |_| async {},
        )
        .await;
        assert_eq!((ids, total), (vec![h3.clone(), h1.clone()], 2));
        let (ids, total) = all_pages(
            &app,
            HOLDS,
            "eventHolds",
            json!({"e": event_id, "status": "RELEASED"}),
            10,
            |_| async {},
        )
        .await;
        assert_eq!((ids, total), (vec![h2.clone()], 1));
        let (ids, total) =
            all_pages(&app, HOLDS, "eventHolds", vars.clone(), 4, |_| async {}).await;
        assert_eq!(total, 15);
        assert_eq!(ids[..3], [h3, h2, h1]);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 15);
    }
);

both_backends!(
    paging_while_bookings_arrive_shows_every_earlier_booking_once_and_no_later_one,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(15, 100).await;
        let initial = 1234;
        let arriving = 200;
        let before: Vec<String> = futures::stream::iter((0..initial).map(|i| {
            let (app, event_id, seat) = (&app, &event_id, &seats[i]);
            async move { book(app, &format!("b{i}"), event_id, seat).await }
        }))
        .buffered(32)
        .collect()
        .await;

        // Page by 100; before each next page, 17 more bookings are made at once.
        let later = std::sync::Mutex::new(Vec::new());
        let (ids, total) = all_pages(
            &app,
            BOOKINGS,
            "eventBookings",
            json!({"e": event_id}),
            100,
            |page| {
                let (app, event_id, seats, later) = (&app, &event_id, &seats, &later);
                async move {
                    let made = join_all((0..17).map(|j| {
                        let i = initial + page * 17 + j;
                        async move {
                            if i < initial + arriving {
                                Some(book(app, &format!("n{i}"), event_id, &seats[i]).await)
                            } else {
                                None
                            }
                        }
                    }))
                    .await;
                    later
                        .lock()
                        .expect("lock")
                        .extend(made.into_iter().flatten());
                }
            },
        )
        .await;
        assert_eq!(total, initial as i64);
        let later = later.into_inner().expect("lock");
        assert_eq!(later.len(), arriving);
        let seen: HashSet<&String> = ids.iter().collect();
        assert_eq!(seen.len(), ids.len(), "a booking repeated across pages");
        assert_eq!(
            seen,
            before.iter().collect::<HashSet<_>>(),
            "every earlier booking once, no later one"
        );

        // totalCount counts what exists at the time of the query.
        let body = app
            .gql(
                Some(&app.admin_token()),
                BOOKINGS,
                json!({"e": event_id, "first": 0}),
            )
            .await;
        assert_eq!(
            data(&body, "eventBookings")["totalCount"],
            (initial + arriving) as i64
        );
    }
);
