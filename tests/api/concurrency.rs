//! Many real parallel HTTP requests for the same seats: exactly one winner per seat, clean
//! answers for everyone else.

use std::collections::{HashMap, HashSet};

use futures::future::join_all;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

both_backends!(hot_seat_500_users_one_winner, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (event_id, seats) = app.create_event(1, 10).await;
    let seat = seats[4].clone();
    let requests = (0..500).map(|i| {
        let token = app.token(&format!("fan-{i}"));
        let body = json!({"query": HOLD_SEATS, "variables": {"e": event_id, "s": [seat]}});
        let app = &app;
        async move { app.post(Some(&token), &body).await }
    });
    let results = join_all(requests).await;
    let counts = tally(&results);
    println!("hot seat answers ({backend:?}): {counts:?}");
    assert_eq!(counts.get("OK"), Some(&1), "exactly one winner: {counts:?}");
    let losers =
        counts.get("SEAT_UNAVAILABLE").unwrap_or(&0) + counts.get("RETRY_LATER").unwrap_or(&0);
    assert_eq!(
        losers, 499,
        "everyone else is told the seat is taken or to retry: {counts:?}"
    );
    for (_, body) in &results {
        if error_code(body).as_deref() == Some("SEAT_UNAVAILABLE") {
            assert_eq!(body["errors"][0]["extensions"]["seatIds"], json!([seat]));
        }
        if error_code(body).as_deref() == Some("RETRY_LATER") {
            assert!(
                body["errors"][0]["extensions"]["retryAfterMs"]
                    .as_u64()
                    .is_some()
            );
        }
    }
    // The winner's hold is the one the seat map shows.
    let winner = results
        .iter()
        .find(|(_, b)| b["errors"].is_null())
        .map(|(_, b)| b["data"]["holdSeats"]["id"].clone())
        .expect("a winner");
    assert!(winner.is_string());
    let map = app.seat_map(&event_id).await;
    assert_eq!(map["event"]["held"], 1);
    assert_eq!(map["seq"], 1, "one change logged");
    app.stop().await;
});

both_backends!(
    overlapping_multi_seat_holds_never_share_a_seat,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (event_id, seats) = app.create_event(3, 5).await;
        let requests = (0..200).map(|i| {
            let mut rng = rand::rng();
            let mut pool = seats.clone();
            pool.shuffle(&mut rng);
            let n = if i % 2 == 0 { 3 } else { 4 };
            let pick: Vec<String> = pool.into_iter().take(n).collect();
            let token = app.token(&format!("user-{i}"));
            let body = json!({"query": HOLD_SEATS, "variables": {"e": event_id, "s": pick}});
            let app = &app;
            async move { (pick, app.post(Some(&token), &body).await) }
        });
        let results = join_all(requests).await;
        let answers: Vec<(u16, Value)> = results.iter().map(|(_, r)| r.clone()).collect();
        let counts = tally(&answers);
        println!("overlapping holds answers ({backend:?}): {counts:?}");
        assert!(!counts.contains_key("INTERNAL"), "{counts:?}");
        assert_eq!(
            counts.get("OK").unwrap_or(&0)
                + counts.get("SEAT_UNAVAILABLE").unwrap_or(&0)
                + counts.get("RETRY_LATER").unwrap_or(&0),
            200,
            "{counts:?}"
        );
        assert!(counts.get("OK").is_some_and(|n| *n >= 1), "{counts:?}");

        // No seat in two successful holds; each won hold has exactly the seats it asked for.
        let mut owner: HashMap<String, String> = HashMap::new();
        for (pick, (_, body)) in &results {
            if !body["errors"].is_null() {
                continue;
            }
            let hold = &body["data"]["holdSeats"];
            let got: HashSet<String> = hold["seats"]
                .as_array()
                .expect("seats")
                .iter()
                .map(|s| s["id"].as_str().expect("id").to_owned())
                .collect();
            let asked: HashSet<String> = pick.iter().cloned().collect();
            assert_eq!(got, asked, "all-or-nothing");
            for seat in got {
                let previous =
                    owner.insert(seat.clone(), hold["id"].as_str().expect("id").to_owned());
                assert!(previous.is_none(), "seat {seat} in two holds");
            }
        }
        // Every HELD seat on the map belongs to exactly one won hold, and vice versa.
        let statuses = app.seat_statuses(&event_id).await;
        let held: HashSet<String> = statuses
            .into_iter()
            .filter(|(_, s)| s == "HELD")
            .map(|(id, _)| id)
            .collect();
        let owned: HashSet<String> = owner.keys().cloned().collect();
        assert_eq!(held, owned);
        app.stop().await;
    }
);
