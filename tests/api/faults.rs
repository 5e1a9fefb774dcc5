//! Faults with real processes: an instance killed with SIGKILL in the middle of a hot-seat
//! storm and restarted; PostgreSQL restarted under traffic; Redis lost and back under two
//! instances. Each ends with the seat invariants checked straight in the database.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::Rng;
use sea_orm::Database;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::procs::{OnsaleProcess, OwnPostgres, assert_seat_invariants, ints, texts};
use crate::ws::{Protocol, Subscription};

/// What one request came to, as far as the client knows.
enum Answer {
    /// An HTTP answer: status and body.
    Http(u16, Value),
    /// No answer: connection refused or cut (the instance is down), or a timeout.
    Lost,
}

impl Answer {
    fn code(&self) -> String {
        match self {
            Self::Http(200, body) => error_code(body).unwrap_or_else(|| "OK".into()),
            Self::Http(status, _) => format!("HTTP {status}"),
            Self::Lost => "LOST".into(),
        }
    }
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    vars: Value,
) -> Answer {
    let sent = client
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": vars}))
        .send()
        .await;
    let Ok(resp) = sent else { return Answer::Lost };
    let status = resp.status().as_u16();
    match resp.text().await {
        Ok(text) => Answer::Http(
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ),
        Err(_) => Answer::Lost,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the storm's clients were told, to hold the database to it afterwards.
#[derive(Default)]
struct Ledger {
    /// Answers per operation and code, e.g. ("holdSeats", "SEAT_UNAVAILABLE").
    codes: HashMap<(&'static str, String), usize>,
    /// Holds the clients saw created.
    holds: HashSet<String>,
    /// Holds something was attempted on after creation (confirm or release).
    touched_holds: HashSet<String>,
    released: HashSet<String>,
    /// Bookings the clients saw CONFIRMED, with how many seats each has.
    bookings: HashMap<String, usize>,
    /// Bookings a cancel was attempted on (whatever came of it).
    cancel_tried: HashSet<String>,
    cancelled: HashSet<String>,
    /// Answers (not LOST) per instance and phase: [before kill, down, after restart].
    answered: [[usize; 3]; 2],
}

const PHASE_UP: u8 = 0;
const PHASE_DOWN: u8 = 1;
const PHASE_BACK: u8 = 2;

/// Longest a storm phase may take to reach the traffic it waits for.
const STORM_WITHIN: Duration = Duration::from_secs(30);

/// Answers (not LOST) from `instance` in `phase` so far.
fn answered(ledger: &Mutex<Ledger>, instance: usize, phase: u8) -> usize {
    lock(ledger).answered[instance][phase as usize]
}

/// One client of the storm: holds one or two of the hot seats, then keeps, confirms (and maybe
/// cancels) or releases what it got; again and again until told to stop.
#[expect(clippy::too_many_arguments, reason = "a test worker's whole context")]
async fn storm_worker(
    client: reqwest::Client,
    bases: [String; 2],
    token: String,
    event_id: String,
    hot: Vec<String>,
    ledger: Arc<Mutex<Ledger>>,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    in_flight_on_child: Arc<AtomicUsize>,
) {
    let note = |op: &'static str, instance: usize, answer: &Answer| {
        let mut l = lock(&ledger);
        *l.codes.entry((op, answer.code())).or_default() += 1;
        if !matches!(answer, Answer::Lost) {
            l.answered[instance][phase.load(Ordering::SeqCst) as usize] += 1;
        }
    };
    while !stop.load(Ordering::SeqCst) {
        // Mostly the child process (the one that gets killed), some the in-process instance.
        let (instance, n, pick, fate, cancel) = {
            let mut rng = rand::rng();
            (
                usize::from(rng.random_bool(0.25)),
                rng.random_range(1..=2),
                rng.random_range(0..hot.len()),
                rng.random_range(0..20),
                rng.random_bool(0.8),
            )
        };
        let base = &bases[instance];
        let seats: Vec<&String> = (0..n).map(|i| &hot[(pick + i) % hot.len()]).collect();
        if instance == 0 {
            in_flight_on_child.fetch_add(1, Ordering::SeqCst);
        }
        let answer = post(
            &client,
            base,
            &token,
            HOLD_SEATS,
            json!({"e": event_id, "s": seats}),
        )
        .await;
        if instance == 0 {
            in_flight_on_child.fetch_sub(1, Ordering::SeqCst);
        }
        note("holdSeats", instance, &answer);
        let hold_id = match &answer {
            Answer::Http(200, body) if body["errors"].is_null() => {
                body["data"]["holdSeats"]["id"].as_str().map(str::to_owned)
            }
            Answer::Lost => {
                // Pacing: a client whose instance is down tries again a little later.
                tokio::time::sleep(Duration::from_millis(20)).await;
                None
            }
            _ => None,
        };
        let Some(hold_id) = hold_id else { continue };
        lock(&ledger).holds.insert(hold_id.clone());
        match fate {
            // Keep it: it must still be ACTIVE at the end.
            0 => {}
            1..=9 => {
                lock(&ledger).touched_holds.insert(hold_id.clone());
                let answer = post(&client, base, &token, CONFIRM_HOLD, json!({"h": hold_id})).await;
                note("confirmHold", instance, &answer);
                let Answer::Http(200, body) = &answer else {
                    continue;
                };
                let Some(booking_id) = body["data"]["confirmHold"]["id"].as_str() else {
                    continue;
                };
                let seat_count = body["data"]["confirmHold"]["seats"]
                    .as_array()
                    .map_or(0, Vec::len);
                lock(&ledger)
                    .bookings
                    .insert(booking_id.to_owned(), seat_count);
                if cancel {
                    lock(&ledger).cancel_tried.insert(booking_id.to_owned());
                    let answer = post(
                        &client,
                        base,
                        &token,
                        CANCEL_BOOKING,
                        json!({"b": booking_id}),
                    )
                    .await;
                    note("cancelBooking", instance, &answer);
                    if let Answer::Http(200, body) = &answer
                        && body["data"]["cancelBooking"]["status"] == "CANCELLED"
                    {
                        lock(&ledger).cancelled.insert(booking_id.to_owned());
                    }
                }
            }
            _ => {
                lock(&ledger).touched_holds.insert(hold_id.clone());
                let answer = post(&client, base, &token, RELEASE_HOLD, json!({"h": hold_id})).await;
                note("releaseHold", instance, &answer);
                if let Answer::Http(200, body) = &answer
                    && body["data"]["releaseHold"]["status"] == "RELEASED"
                {
                    lock(&ledger).released.insert(hold_id);
                }
            }
        }
    }
}

/// Seat statuses by id as an instance serves them.
async fn served_statuses(
    client: &reqwest::Client,
    base: &str,
    event_id: &str,
) -> HashMap<String, String> {
    let answer = post(
        client,
        base,
        "",
        ops::SEAT_STATUSES,
        ops::vars::event(event_id),
    )
    .await;
    let Answer::Http(200, body) = answer else {
        panic!("seatMap from {base}: no answer")
    };
    ops::SeatStatuses::from_json(data(&body, "seatMap"))
        .expect("a seat map")
        .status
}

/// kill -9 of an instance in the middle of a hot-seat storm, then a restart on the same
/// database, while a second instance keeps serving: no seat ends up in two holds or two
/// bookings, every HELD seat belongs to exactly one ACTIVE hold, nothing the clients were told
/// is lost (confirmed bookings stay CONFIRMED, kept holds stay ACTIVE, releases and
/// cancellations stand), the change log has no gap, both instances serve the same seat map,
/// and the restarted instance books again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_storm_then_restart_loses_nothing() {
    let redis = redis_url();
    // No per-user throttles: the storm is meant to hit the seats, not the rate limiter.
    let unthrottled = [
        ("RATE_LIMIT_USER_PER_SEC", "0"),
        ("MAX_HOLDS_PER_USER", "1000"),
    ];
    let mut options = Options::default().set("REDIS_URL", &redis);
    for (key, value) in unthrottled {
        options = options.set(key, value);
    }
    let other = TestApp::spawn_with(Backend::Postgres, options).await;
    let database_url = other.database_url.clone();
    let (event_id, seats) = other.create_event(1, 22).await;
    let hot: Vec<String> = seats[..20].to_vec();
    let spare = seats[21].clone();

    let port = free_port();
    let mut child = OnsaleProcess::start(&database_url, Some(&redis), port, &unthrottled).await;
    let bases = [child.base.clone(), other.base.clone()];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let phase = Arc::new(AtomicU8::new(PHASE_UP));
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..48)
        .map(|i| {
            tokio::spawn(storm_worker(
                client.clone(),
                bases.clone(),
                other.token(&format!("fan-{i}")),
                event_id.clone(),
                hot.clone(),
                ledger.clone(),
                phase.clone(),
                stop.clone(),
                in_flight.clone(),
            ))
        })
        .collect();

    wait_until(
        "the storm is under way on the child",
        STORM_WITHIN,
        || async { answered(&ledger, 0, PHASE_UP) >= 100 },
    )
    .await;
    let in_flight_at_kill = in_flight.load(Ordering::SeqCst);
    phase.store(PHASE_DOWN, Ordering::SeqCst);
    child.kill();
    let down_at = Instant::now();
    wait_until(
        "the other instance carries the storm",
        STORM_WITHIN,
        || async { answered(&ledger, 1, PHASE_DOWN) >= 20 },
    )
    .await;
    let restarted = OnsaleProcess::start(&database_url, Some(&redis), port, &unthrottled).await;
    let down_for = down_at.elapsed();
    phase.store(PHASE_BACK, Ordering::SeqCst);
    wait_until(
        "the restarted child serves the storm",
        STORM_WITHIN,
        || async { answered(&ledger, 0, PHASE_BACK) >= 100 },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in join_all(workers).await {
        w.expect("storm worker");
    }

    let ledger = Arc::try_unwrap(ledger)
        .unwrap_or_else(|_| panic!("workers are done"))
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let mut codes: Vec<_> = ledger.codes.iter().collect();
    codes.sort();
    println!(
        "kill -9 storm: {in_flight_at_kill} requests in flight at the kill, down {down_for:?}; \
         answers per [instance][before, down, after]: {:?}; {} holds, {} bookings seen; {codes:?}",
        ledger.answered,
        ledger.holds.len(),
        ledger.bookings.len()
    );
    assert!(in_flight_at_kill > 0, "killed in the middle of the storm");
    let allowed = ["OK", "SEAT_UNAVAILABLE", "RETRY_LATER", "LOST"];
    let unexpected: Vec<_> = codes
        .iter()
        .filter(|((op, code), _)| {
            !(allowed.contains(&code.as_str()) || (*op == "holdSeats" && code == "HOLD_NOT_ACTIVE"))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "answers outside the contract's transient set: {unexpected:?}\n{}",
        restarted.log_tail()
    );
    assert!(
        ledger.answered[0][PHASE_UP as usize] > 0,
        "the child served before the kill"
    );
    assert!(
        ledger.answered[1][PHASE_DOWN as usize] > 0,
        "the other instance carried traffic meanwhile"
    );
    assert!(
        ledger.answered[0][PHASE_BACK as usize] > 0,
        "the restarted child serves the storm"
    );
    assert!(!ledger.bookings.is_empty(), "some bookings were confirmed");

    assert_seat_invariants(&database_url, &event_id).await;

    // Everything the clients were told still holds.
    let conn = Database::connect(database_url.as_str())
        .await
        .expect("connect");
    for hold in &ledger.holds {
        let status = texts(
            &conn,
            &format!("SELECT status FROM holds WHERE id = '{hold}'"),
        )
        .await;
        assert_eq!(status.len(), 1, "hold {hold} the client saw exists");
        if !ledger.touched_holds.contains(hold) {
            assert_eq!(status[0], "ACTIVE", "kept hold {hold}");
        }
        if ledger.released.contains(hold) {
            assert_eq!(status[0], "RELEASED", "released hold {hold}");
        }
    }
    for (booking, seat_count) in &ledger.bookings {
        let status = texts(
            &conn,
            &format!("SELECT status FROM bookings WHERE id = '{booking}'"),
        )
        .await;
        if ledger.cancelled.contains(booking) {
            assert_eq!(status, vec!["CANCELLED"], "cancelled booking {booking}");
        } else if !ledger.cancel_tried.contains(booking) {
            assert_eq!(
                status,
                vec!["CONFIRMED"],
                "confirmed booking {booking} is not lost"
            );
            let booked = ints(
                &conn,
                &format!("SELECT COUNT(*) FROM seats WHERE booking_id = '{booking}' AND status = 'BOOKED'"),
            )
            .await;
            assert_eq!(
                booked,
                vec![*seat_count as i64],
                "booking {booking} still has its seats"
            );
        }
    }
    let ids = ints(
        &conn,
        &format!("SELECT id FROM seats WHERE event_id = {event_id} ORDER BY id"),
    )
    .await;
    let stored = texts(
        &conn,
        &format!("SELECT status FROM seats WHERE event_id = {event_id} ORDER BY id"),
    )
    .await;
    let stored: HashMap<String, String> = ids.iter().map(i64::to_string).zip(stored).collect();
    let _ = conn.close().await;

    // Both instances serve exactly what the database holds.
    assert_eq!(
        served_statuses(&client, &restarted.base, &event_id).await,
        stored,
        "restarted instance"
    );
    assert_eq!(
        served_statuses(&client, &other.base, &event_id).await,
        stored,
        "other instance"
    );

    // And the restarted instance books again.
    let token = other.token("after-the-crash");
    let answer = post(
        &client,
        &restarted.base,
        &token,
        HOLD_SEATS,
        json!({"e": event_id, "s": [spare]}),
    )
    .await;
    let Answer::Http(200, body) = answer else {
        panic!("no answer from the restarted instance")
    };
    let hold_id = hold_id(&body);
    let answer = post(
        &client,
        &restarted.base,
        &token,
        CONFIRM_HOLD,
        json!({"h": hold_id}),
    )
    .await;
    let Answer::Http(200, body) = answer else {
        panic!("no answer from the restarted instance")
    };
    assert_eq!(data(&body, "confirmHold")["status"], "CONFIRMED");
    let ready = client
        .get(format!("{}/readyz", restarted.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    assert_seat_invariants(&database_url, &event_id).await;
    drop(restarted);
    other.stop().await;
}

/// One request of the PostgreSQL-restart test.
struct Sent {
    op: &'static str,
    sent_at: Instant,
    took: Duration,
    status: u16,
    body: Value,
}

/// What a request came to: "OK", its error code, or "HTTP <status>".
fn answer_code(sent: &Sent) -> String {
    if sent.status == 200 {
        error_code(&sent.body).unwrap_or_else(|| "OK".into())
    } else {
        format!("HTTP {}", sent.status)
    }
}

/// How many holds sent at or after `since` have come back with `code`.
fn holds_answered(log: &Mutex<Vec<Sent>>, since: Instant, code: &str) -> usize {
    lock(log)
        .iter()
        .filter(|s| s.op == "holdSeats" && s.sent_at >= since && answer_code(s) == code)
        .count()
}

/// PostgreSQL (a cluster of the test's own) restarts under continuous holds and seat-map
/// reads: every request is answered within 10 s, with HTTP 200 and either success or
/// RETRY_LATER (with retryAfterMs) — never INTERNAL, never a 5xx, never a hang — readiness
/// reports the outage, and holds succeed again within seconds after PostgreSQL is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_answers_retry_later_then_recovers() {
    let pg = OwnPostgres::start().await;
    let app = TestApp::spawn_on(
        &pg.url(),
        Options::default()
            .set("RATE_LIMIT_USER_PER_SEC", 0)
            .set("MAX_HOLDS_PER_USER", 1000),
    )
    .await;
    let (event_id, seats) = app.create_event(20, 50).await;
    let started = Instant::now();
    let next_seat = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Sent>>> = Arc::default();
    // Seats a worker got SEAT_UNAVAILABLE for on a retry: fine only if its own earlier attempt
    // committed although the answer was lost with the connection.
    let own_retries: Arc<Mutex<Vec<(String, String, u32)>>> = Arc::default();
    let app = Arc::new(app);

    let record = |log: &Mutex<Vec<Sent>>, op, sent_at: Instant, status, body| {
        lock(log).push(Sent {
            op,
            sent_at,
            took: sent_at.elapsed(),
            status,
            body,
        });
    };
    let mut workers = Vec::new();
    for w in 0..6 {
        let (app, seats, next_seat, stop, log, own_retries, event_id) = (
            app.clone(),
            seats.clone(),
            next_seat.clone(),
            stop.clone(),
            log.clone(),
            own_retries.clone(),
            event_id.clone(),
        );
        workers.push(tokio::spawn(async move {
            let user = format!("steady-{w}");
            let token = app.token(&user);
            while !stop.load(Ordering::SeqCst) {
                let Some(seat) = seats.get(next_seat.fetch_add(1, Ordering::SeqCst)).cloned() else {
                    break;
                };
                let mut attempt = 0;
                while !stop.load(Ordering::SeqCst) {
                    attempt += 1;
                    let sent_at = Instant::now();
                    let (status, body) = app
                        .post(Some(&token), &json!({"query": HOLD_SEATS, "variables": {"e": event_id, "s": [seat]}}))
                        .await;
                    let code = if status == 200 { error_code(&body) } else { None };
                    let wait = body["errors"][0]["extensions"]["retryAfterMs"].as_u64().unwrap_or(50);
                    record(&log, "holdSeats", sent_at, status, body);
                    match code.as_deref() {
                        Some("RETRY_LATER") => {
                            // Pacing: the answer says when to try again.
                            tokio::time::sleep(Duration::from_millis(wait.clamp(20, 200))).await;
                        }
                        Some("SEAT_UNAVAILABLE") => {
                            lock(&own_retries).push((seat.clone(), user.clone(), attempt));
                            break;
                        }
                        _ => break,
                    }
                }
            }
        }));
    }
    {
        let (app, stop, log, event_id) = (app.clone(), stop.clone(), log.clone(), event_id.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let sent_at = Instant::now();
                let (status, body) = app
                    .post(
                        None,
                        &json!({"query": ops::SEAT_SEQ, "variables": {"e": event_id}}),
                    )
                    .await;
                record(&log, "seatMap", sent_at, status, body);
                // Pacing: a reader looks a few times a second.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    wait_until("holds succeed before the restart", STORM_WITHIN, || async {
        holds_answered(&log, started, "OK") >= 20
    })
    .await;
    let stopping_at = Instant::now();
    pg.stop().await;
    let stopped_at = Instant::now();
    wait_until(
        "readiness reports the database down",
        STORM_WITHIN,
        || async { app.readiness().await == 503 },
    )
    .await;
    let alive = app.get("/healthz").await.status();
    wait_until(
        "the outage is answered RETRY_LATER",
        STORM_WITHIN,
        || async { holds_answered(&log, stopping_at, "RETRY_LATER") >= 5 },
    )
    .await;
    pg.start_again().await;
    let back_at = Instant::now();

    // Wait for holds to succeed again, then a little more traffic.
    let recovered_at = wait_for(
        "holds succeed again after PostgreSQL came back",
        Duration::from_secs(20),
        || async {
            lock(&log)
                .iter()
                .filter(|s| s.op == "holdSeats" && s.sent_at >= back_at && answer_code(s) == "OK")
                .map(|s| s.sent_at + s.took)
                .min()
        },
    )
    .await;
    wait_until("holds go on after the recovery", STORM_WITHIN, || async {
        holds_answered(&log, recovered_at, "OK") >= 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in join_all(workers).await {
        w.expect("traffic worker");
    }
    let ready_back = app.readiness().await;

    let log = std::mem::take(&mut *lock(&log));
    let mut counts: HashMap<(&str, String), usize> = HashMap::new();
    let mut problems = Vec::new();
    let mut retry_later_in_outage = 0;
    for s in &log {
        let code = answer_code(s);
        *counts.entry((s.op, code.clone())).or_default() += 1;
        if s.took >= Duration::from_secs(10) {
            problems.push(format!("{} took {:?}", s.op, s.took));
        }
        match code.as_str() {
            "OK" => {}
            "RETRY_LATER" => {
                if s.body["errors"][0]["extensions"]["retryAfterMs"]
                    .as_u64()
                    .is_none()
                {
                    problems.push(format!("RETRY_LATER without retryAfterMs: {}", s.body));
                }
                if s.sent_at >= stopping_at && s.sent_at < back_at {
                    retry_later_in_outage += 1;
                }
            }
            "SEAT_UNAVAILABLE" if s.op == "holdSeats" => {} // checked against own_retries below
            _ => problems.push(format!("{} answered {code}: {}", s.op, s.body)),
        }
    }
    let slowest = log.iter().map(|s| s.took).max().unwrap_or_default();
    println!(
        "PostgreSQL restart: stop took {:?}, down {:?}, first hold OK {:?} after it was back; \
         slowest answer {slowest:?}; {counts:?}",
        stopped_at - stopping_at,
        back_at - stopped_at,
        recovered_at.saturating_duration_since(back_at),
    );
    assert!(
        problems.is_empty(),
        "outside the contract during the restart:\n  {}",
        problems.join("\n  ")
    );
    assert!(
        retry_later_in_outage > 0,
        "the outage was seen as RETRY_LATER"
    );
    assert_eq!(alive, 200, "liveness does not depend on the database");
    assert_eq!(ready_back, 200);
    assert!(
        recovered_at.saturating_duration_since(back_at) < Duration::from_secs(5),
        "holds succeed within 5 s after PostgreSQL is back"
    );

    // A SEAT_UNAVAILABLE on a retry is only right if the seat is held by that same client:
    // its earlier attempt committed, but the connection was cut before the answer came back,
    // so it was told RETRY_LATER (an idempotencyKey makes such a retry return the hold).
    let conn = Database::connect(pg.url().as_str()).await.expect("connect");
    let own_retries = std::mem::take(&mut *lock(&own_retries));
    for (seat, user, attempt) in &own_retries {
        assert!(
            *attempt > 1,
            "seat {seat} refused to {user} on the first try"
        );
        let holder = texts(
            &conn,
            &format!(
                "SELECT h.user_id FROM hold_seats hs JOIN holds h ON h.id = hs.hold_id \
                 WHERE hs.seat_id = {seat} AND hs.active"
            ),
        )
        .await;
        assert_eq!(
            holder,
            vec![user.clone()],
            "seat {seat} refused to its own holder's retry"
        );
    }
    // Every hold a client was told about survived the restart.
    let told: Vec<String> = log
        .iter()
        .filter_map(|s| {
            s.body["data"]["holdSeats"]["id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(!told.is_empty());
    for hold in &told {
        let status = texts(
            &conn,
            &format!("SELECT status FROM holds WHERE id = '{hold}'"),
        )
        .await;
        assert_eq!(status, vec!["ACTIVE"], "hold {hold}");
    }
    let _ = conn.close().await;
    assert_seat_invariants(&pg.url(), &event_id).await;

    let app = Arc::try_unwrap(app).unwrap_or_else(|_| panic!("workers are done"));
    app.stop().await;
    drop(pg);
}

/// Redis dies under two instances in the middle of a hot-seat storm spread over both: still
/// exactly one winner and no INTERNAL; bookings go on without it; once Redis is back, the
/// subscriber on one instance gets every change made on the other in `seq` order with the
/// missed ones filled in, and the seat gate is in force again on both instances (a claim in
/// Redis turns a request for a free seat away before the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_under_two_instances_gate_and_feed_recover() {
    let redis_port = free_port();
    let mut redis = OwnRedis::start(redis_port);
    let options = Options::default().set("REDIS_URL", redis.url());
    let a = TestApp::spawn_with(Backend::Postgres, options.clone()).await;
    let b = TestApp::spawn_on(&a.database_url, options).await;
    let (event_id, seats) = a.create_event(2, 20).await;
    let mut sub = Subscription::seat_changes(&a.base, Protocol::TransportWs, &event_id, None).await;

    // A storm on one seat over both instances; Redis is killed 20 ms in.
    let body = json!({"query": HOLD_SEATS, "variables": {"e": event_id, "s": [seats[0]]}});
    let tokens: Vec<String> = (0..300).map(|i| a.token(&format!("fan-{i}"))).collect();
    let (results, ()) = tokio::join!(
        join_all(tokens.iter().enumerate().map(|(i, t)| {
            let app = if i.is_multiple_of(2) { &a } else { &b };
            app.post(Some(t), &body)
        })),
        async {
            // The point: Redis dies while the storm is in flight.
            tokio::time::sleep(Duration::from_millis(20)).await;
            redis.kill();
        }
    );
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
        *counts
            .entry(error_code(body).unwrap_or_else(|| "OK".into()))
            .or_default() += 1;
    }
    println!("two-instance storm with Redis dying: {counts:?}");
    assert_eq!(counts.get("OK"), Some(&1), "{counts:?}");
    assert_eq!(
        counts.get("SEAT_UNAVAILABLE").unwrap_or(&0) + counts.get("RETRY_LATER").unwrap_or(&0),
        299,
        "{counts:?}"
    );

    // Without Redis, both instances keep booking.
    let alice = a.token("alice");
    for (app, seat) in [(&a, &seats[1]), (&b, &seats[2])] {
        let started = Instant::now();
        let body = app.hold_seats(&alice, &event_id, &[seat]).await;
        let hold = data(&body, "holdSeats")["id"].clone();
        let body = app
            .gql(Some(&alice), CONFIRM_HOLD, json!({"h": hold}))
            .await;
        assert_eq!(data(&body, "confirmHold")["status"], "CONFIRMED");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "no long wait on a dead Redis"
        );
    }

    // Redis comes back on the same port. Changes on B reach A's subscriber again, and the
    // ones A missed meanwhile are filled in, in order.
    let _redis = OwnRedis::start(redis_port);
    let mut seen: Vec<i64> = Vec::new();
    let mut probe = 3;
    let resumed_after = Instant::now();
    'resume: while resumed_after.elapsed() < Duration::from_secs(15) {
        let resumer = b.token(&format!("resume-{probe}"));
        b.hold_seats(&resumer, &event_id, &[&seats[probe]]).await;
        probe += 1;
        let latest = b.seat_map(&event_id).await["seq"].as_i64().expect("seq");
        while let Some(payload) = sub.next(Duration::from_millis(700)).await {
            assert!(payload["errors"].is_null(), "{payload}");
            seen.push(payload["data"]["seatChanges"]["seq"].as_i64().expect("seq"));
            if seen.last() == Some(&latest) {
                break 'resume;
            }
        }
    }
    let latest = a.seat_map(&event_id).await["seq"].as_i64().expect("seq");
    assert_eq!(
        seen,
        (1..=latest).collect::<Vec<_>>(),
        "every change, in order, no gap"
    );
    println!(
        "subscriber resumed {:?} after Redis came back",
        resumed_after.elapsed()
    );

    // The gate claims in Redis again on both instances (its breaker closes after a cool-down):
    // a seat claimed in Redis by someone else is refused although the database has it free.
    let client = redis::Client::open(_redis.url().as_str()).expect("redis url");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let namespace = redis_namespace(&a).await;
    let next_probe = AtomicUsize::new(probe);
    for app in [&a, &b] {
        // Each probe claims a fresh seat in Redis and asks the instance for it; while the
        // breaker is still open the database gives the seat out, and the next probe comes later.
        wait_for_every(
            "the gate to be in force again",
            Duration::from_secs(20),
            Duration::from_millis(500),
            || {
                let n = next_probe.fetch_add(1, Ordering::SeqCst);
                let seat = seats[n].clone();
                let token = a.token(&format!("prober-{n}"));
                let (namespace, event_id, mut conn) = (&namespace, &event_id, conn.clone());
                async move {
                    let key = onsale::booking::gate::keys(
                        namespace,
                        event_id.parse().expect("id"),
                        &[seat.parse().expect("id")],
                    )
                    .remove(0);
                    let _: () = redis::cmd("SET")
                        .arg(&key)
                        .arg("someone-else")
                        .arg("PX")
                        .arg(10_000)
                        .query_async(&mut conn)
                        .await
                        .expect("set");
                    let body = app.hold_seats(&token, event_id, &[&seat]).await;
                    if error_code(&body).as_deref() == Some("SEAT_UNAVAILABLE") {
                        assert_eq!(body["errors"][0]["extensions"]["seatIds"], json!([seat]));
                        return Some(());
                    }
                    // Bypassed (breaker still open): the database gave the seat out.
                    data(&body, "holdSeats");
                    None
                }
            },
        )
        .await;
    }
    println!(
        "gate in force again {:?} after Redis came back",
        resumed_after.elapsed()
    );
    let map = a.seat_map(&event_id).await;
    assert_eq!(map["event"]["booked"], 2);
    assert_seat_invariants(&a.database_url, &event_id).await;
    a.stop().await;
    b.stop().await;
}
