//! Group commit (src/db/group.rs, `GROUP_COMMIT=on`): a member that fails leaves the rest of
//! its batch with their own answers. (The numbering of many writers' changes on the default
//! path is tested in sequencer.rs.)

use std::collections::HashMap;
use std::sync::Arc;

use crate::both_backends;
use crate::helpers::*;

/// The mean batch size so far, from the instance's metrics.
async fn mean_batch(app: &TestApp) -> f64 {
    histogram_mean(&app.metrics().await, "onsale_group_commit_members").0
}

both_backends!(
    members_that_fail_inside_a_batch_leave_the_others_their_answers,
    |backend| async move {
        const PAIRS: usize = 30;
        // Without the seat gate, so that every request reaches the database and conflicts are
        // decided inside the batches (the gate would turn some away before, while a request that
        // later fails still claims its seat).
        let options = Options::default()
            .set("GROUP_COMMIT", "on")
            .set("MAX_HOLDS_PER_USER", 1)
            .set("SEAT_GATE", "off");
        let app = Arc::new(TestApp::spawn_with(backend, options).await);
        let (event_id, seats) = app.create_event(2, PAIRS).await;
        // Requests that pass the check without locks together and conflict only inside the write:
        // X_i and Y_i both want seat i; X_i also wants seat PAIRS + i, as does Z_i. A buyer may
        // have one active hold, so at most one of X_i's two requests can win.
        let mut tasks = Vec::new();
        for i in 0..PAIRS {
            for (buyer, seat) in [
                (format!("x{i}"), &seats[i]),
                (format!("y{i}"), &seats[i]),
                (format!("x{i}"), &seats[PAIRS + i]),
                (format!("z{i}"), &seats[PAIRS + i]),
            ] {
                let (app, event_id, seat) = (app.clone(), event_id.clone(), seat.clone());
                tasks.push(tokio::spawn(async move {
                    let token = app.token(&buyer);
                    let ids = [seat.as_str()];
                    let body = retrying(|| app.hold_seats(&token, &event_id, &ids)).await;
                    (buyer, seat, body)
                }));
            }
        }
        let mut winners: HashMap<String, String> = HashMap::new();
        let mut holds_per_buyer: HashMap<String, usize> = HashMap::new();
        for task in tasks {
            let (buyer, seat, body) = task.await.expect("task");
            match error_code(&body).as_deref() {
                None => {
                    let got = data(&body, "holdSeats")["seats"][0]["id"]
                        .as_str()
                        .map(str::to_owned);
                    assert_eq!(got.as_deref(), Some(seat.as_str()), "{body}");
                    assert!(
                        winners.insert(seat.clone(), buyer.clone()).is_none(),
                        "{seat} held twice"
                    );
                    *holds_per_buyer.entry(buyer).or_default() += 1;
                }
                Some("SEAT_UNAVAILABLE") => {}
                // The per-buyer limit, decided inside the same transaction.
                Some("BAD_USER_INPUT" | "LIMIT_EXCEEDED") if buyer.starts_with('x') => {}
                other => panic!("{buyer} {seat}: {other:?}: {body}"),
            }
        }
        assert!(
            holds_per_buyer.values().all(|n| *n == 1),
            "{holds_per_buyer:?}"
        );
        // Y_i loses seat i only to X_i and Z_i loses seat PAIRS + i only to X_i: every seat is held.
        assert_eq!(winners.len(), 2 * PAIRS, "{winners:?}");
        let statuses = app.statuses(&event_id).await;
        assert!(
            statuses
                .order
                .iter()
                .all(|id| statuses.status[id] == "HELD")
        );
        assert_eq!(app.seat_map(&event_id).await["seq"], 2 * PAIRS as i64);
        println!("mean batch size {:.2}", mean_batch(&app).await);
    }
);
