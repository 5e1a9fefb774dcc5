//! Waiting room: N distinct users join an event's queue before its opening, wait for their
//! admission by polling `joinQueue`, and hold one seat each with the admission token. Reports
//! the join latency, the admission→hold latency and how closely admissions follow
//! `admitPerSecond`. Then, on two fresh events without a room, compares queued booking
//! (`requestSeats`, answered by the event's worker) with direct `holdSeats` at the same
//! concurrency. Needs the server to run with `REDIS_URL`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::Barrier;

use crate::cli::WaitingRoomArgs;
use crate::client::{Answer, OK, Parse, TIMEOUT, TRANSPORT};
use crate::ops::{self, HoldInfo};
use crate::report::{Report, Section, Stats};
use crate::scenarios::{Ctx, User, examples, hold, warm_connections};
use crate::verify::{self, Tracked};
use crate::ws::{Event, Subscription};

/// How long an admission stays valid: long enough that nobody loses a turn in the run.
const ADMISSION_TTL_SECS: i64 = 120;
/// Attempts of one request while the server answers `RETRY_LATER`.
const ATTEMPTS: usize = 20;
/// Polling interval while the admission is near (or the server gives no estimate).
const POLL_NEAR: Duration = Duration::from_millis(100);
/// Polling interval while the server estimates more than [`NEAR_SECS`] of wait.
const POLL_FAR: Duration = Duration::from_millis(500);
const NEAR_SECS: u64 = 2;
/// Extra time, beyond the ideal N/R, for every admission to be seen.
const ADMISSION_SLACK: Duration = Duration::from_secs(30);
/// Longest wait for every queued request to be answered.
const QUEUED_TIMEOUT: Duration = Duration::from_secs(120);
/// Most per-second windows reported as metrics.
const MAX_WINDOW_METRICS: usize = 30;

/// A ticket as `joinQueue` describes it.
#[derive(Debug, Clone)]
struct Ticket {
    id: String,
    admitted: bool,
    admission_token: Option<String>,
    admission_expires_at: Option<DateTime<Utc>>,
    estimated_wait_secs: Option<u64>,
    waiting_for_opening: bool,
}

impl Ticket {
    fn from_json(value: &Value) -> Option<Self> {
        Some(Self {
            id: value["id"].as_str()?.to_owned(),
            admitted: value["admitted"].as_bool()?,
            admission_token: value["admissionToken"].as_str().map(str::to_owned),
            admission_expires_at: value["admissionExpiresAt"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            estimated_wait_secs: value["estimatedWaitSecs"].as_u64(),
            waiting_for_opening: value["waitingForOpening"].as_bool().unwrap_or(false),
        })
    }

    fn admission(&self) -> Option<&str> {
        self.admission_token.as_deref().filter(|_| self.admitted)
    }
}

/// What one queued user went through.
struct Outcome {
    user: usize,
    join: Stats,
    /// When the first join's answer arrived.
    joined_at: Option<Instant>,
    /// The first join found the room not open yet.
    joined_early: bool,
    ticket_id: Option<String>,
    poll: Stats,
    /// When the bench saw the admission.
    admitted_seen: Option<Instant>,
    /// When the server let the user in (`admissionExpiresAt` − TTL).
    admitted_server: Option<DateTime<Utc>>,
    hold: Stats,
    /// From the admission seen to the hold's final answer.
    after_admission: Stats,
    hold_code: Option<String>,
    hold_info: Option<HoldInfo>,
    uncertain: bool,
}

pub async fn run(ctx: &Ctx, args: &WaitingRoomArgs) -> anyhow::Result<Report> {
    let n = args.users.max(1);
    let rate = args.rate.max(1);
    let seats = args.seats.unwrap_or(n);
    let m = args.requests.unwrap_or(n.min(300)).max(1);
    let concurrency = args.concurrency.max(1);
    if seats < n {
        bail!("--seats ({seats}) must be at least --users ({n}): every user holds its own seat");
    }
    let mut report = Report::new("waiting-room");
    report.param("users", n);
    report.param("rate", rate);
    report.param("seats", seats);
    report.param("requests", m);
    report.param("concurrency", concurrency);

    // 1. The event and its room, opening shortly.
    let event = ctx.create_event("waiting-room", seats).await?;
    report.param("event", event.id.as_str());
    let users = ctx.users("wr", n)?;
    warm_connections(&ctx.api, n).await;
    let admin = ctx.tokens.admin(&format!("bench-{}-admin", ctx.run_id))?;
    let opens_at = Utc::now() + chrono::Duration::seconds(args.opens_in_secs as i64);
    ctx.api
        .expect(
            Some(&admin),
            ops::CONFIGURE_WAITING_ROOM,
            ops::vars::configure_waiting_room(
                &event.id,
                &ops::WaitingRoomInput {
                    enabled: true,
                    opens_at: Some(opens_at.to_rfc3339()),
                    admit_per_second: i64::from(rate),
                    admission_ttl_secs: ADMISSION_TTL_SECS,
                },
            ),
        )
        .await
        .context("cannot configure the waiting room (does the server run with REDIS_URL?)")?;
    let opening = Instant::now() + (opens_at - Utc::now()).to_std().unwrap_or_default();
    let ideal = Duration::from_secs_f64(n as f64 / f64::from(rate));
    let deadline = opening + ideal + ADMISSION_SLACK;

    // 2.–3. Everyone joins at once, waits for the admission, then holds its own seat.
    let barrier = Arc::new(Barrier::new(n + 1));
    let seat_ids = Arc::new(event.seat_ids.clone());
    let tasks: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let (ctx, user, barrier, seat_ids) =
                (ctx.clone(), user.clone(), barrier.clone(), seat_ids.clone());
            let event_id = event.id.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                queued_user(&ctx, i, &user, &event_id, &seat_ids[i], deadline).await
            })
        })
        .collect();
    barrier.wait().await;
    let released = Instant::now();
    let mut outcomes = Vec::with_capacity(n);
    for task in tasks {
        outcomes.push(task.await.context("a queued user's task panicked")?);
    }
    outcomes.sort_by_key(|o| o.user);

    let mut join = Stats::new();
    let mut poll = Stats::new();
    let mut holds = Stats::new();
    let mut after_admission = Stats::new();
    for o in &outcomes {
        join.merge(&o.join);
        poll.merge(&o.poll);
        holds.merge(&o.hold);
        after_admission.merge(&o.after_admission);
    }
    let join_elapsed = outcomes
        .iter()
        .filter_map(|o| o.joined_at)
        .max()
        .map_or(Duration::ZERO, |t| t - released);
    let last_seen = outcomes.iter().filter_map(|o| o.admitted_seen).max();
    let hold_span = outcomes
        .iter()
        .filter_map(|o| o.admitted_seen)
        .min()
        .zip(last_seen)
        .map_or(Duration::ZERO, |(a, b)| b - a);
    report.section(Section::new("joinQueue", join, join_elapsed));
    report.section(Section::new(
        "joinQueue polls (waiting for admission)",
        poll,
        last_seen.map_or(Duration::ZERO, |t| t - released),
    ));
    report.section(Section::new("holdSeats after admission", holds, hold_span));
    report.total(Section::new(
        "admission seen → hold answered",
        after_admission,
        hold_span,
    ));

    // 4. Pacing.
    let early = outcomes.iter().filter(|o| o.joined_early).count();
    report.metric("joined before the opening", early as f64, "users");
    let admitted = outcomes
        .iter()
        .filter(|o| o.admitted_seen.is_some())
        .count();
    report.metric("admitted", admitted as f64, "users");
    let server_offsets: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| o.admitted_server)
        .map(|t| (t - opens_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6)
        .collect();
    let seen_offsets: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| o.admitted_seen)
        .map(|t| signed_secs(t, opening))
        .collect();
    report.metric("ideal time to admit all (N/R)", ideal.as_secs_f64(), "s");
    for (what, offsets) in [("server", &server_offsets), ("seen", &seen_offsets)] {
        let Some(p) = Pacing::of(offsets) else {
            continue;
        };
        report.metric(
            &format!("first admission after opensAt ({what})"),
            p.first,
            "s",
        );
        report.metric(
            &format!("last admission after opensAt ({what})"),
            p.last,
            "s",
        );
        report.metric(
            &format!("admitted before opensAt ({what})"),
            p.before as f64,
            "users",
        );
        if what == "server" {
            for (k, count) in p.windows.iter().enumerate().take(MAX_WINDOW_METRICS) {
                report.metric(
                    &format!("admissions in second {} ({what})", k + 1),
                    *count as f64,
                    "/s",
                );
            }
        }
        if let Some(err) = p.max_error(rate) {
            report.metric(
                &format!("pacing error, full windows ({what})"),
                err * 100.0,
                "%",
            );
        }
    }

    // 6. Checks of the waiting-room part.
    let tickets: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| o.ticket_id.as_ref())
        .collect();
    let distinct: HashSet<&String> = tickets.iter().copied().collect();
    report.check(
        "every user got a ticket, all tickets distinct",
        tickets.len() == n && distinct.len() == n,
        format!(
            "{} tickets, {} distinct, {n} users",
            tickets.len(),
            distinct.len()
        ),
    );
    report.check(
        format!(
            "all {n} users admitted within N/R + {} s",
            ADMISSION_SLACK.as_secs()
        ),
        admitted == n,
        if admitted == n {
            format!("{admitted} admitted")
        } else {
            format!(
                "{admitted} admitted; not: {}",
                examples(
                    outcomes
                        .iter()
                        .filter(|o| o.admitted_seen.is_none())
                        .map(|o| users[o.user].sub.as_str()),
                    3
                )
            )
        },
    );
    let failed_holds: Vec<String> = outcomes
        .iter()
        .filter(|o| o.hold_code.as_deref() != Some(OK))
        .map(|o| {
            format!(
                "{}: {}",
                users[o.user].sub,
                o.hold_code.as_deref().unwrap_or("no hold sent")
            )
        })
        .collect();
    report.check(
        "every admitted user's hold of its own seat answered OK",
        failed_holds.is_empty(),
        if failed_holds.is_empty() {
            format!("{n} holds")
        } else {
            examples(&failed_holds, 5)
        },
    );
    let room = ctx
        .api
        .expect(Some(&admin), ops::WAITING_ROOM, ops::vars::event(&event.id))
        .await?;
    let room = &room["waitingRoom"];
    report.check(
        "the room counts every user joined and admitted",
        room["joined"].as_u64() == Some(n as u64) && room["admitted"].as_u64() == Some(n as u64),
        format!("joined {}, admitted {}", room["joined"], room["admitted"]),
    );
    let mut tracked = Tracked::default();
    for o in &outcomes {
        tracked.uncertain |= o.uncertain;
        if let Some(h) = &o.hold_info {
            tracked.ok_holds.insert(h.id.clone());
            tracked.active.insert(h.id.clone(), h.seats.clone());
        }
    }
    verify::check_event(ctx, &mut report, &event.id, &users, &tracked, false).await?;

    // 5. Queued against direct, same number of requests and concurrency, no room.
    let queued = queued_phase(ctx, &mut report, m, concurrency).await?;
    let direct = direct_phase(ctx, &mut report, m, concurrency).await?;
    report.metric(
        "queued throughput (requestSeats)",
        queued.pushed,
        "answers/s",
    );
    report.metric(
        "queued throughput by answer time (server clock)",
        queued.answered,
        "answers/s",
    );
    report.metric("direct throughput (holdSeats)", direct, "holds/s");
    if direct > 0.0 {
        report.metric("queued / direct", queued.pushed / direct, "x");
        report.metric(
            "queued by answer time / direct",
            queued.answered / direct,
            "x",
        );
    }
    Ok(report)
}

/// One user: join, poll until admitted (or `deadline`), hold `seat` with the admission.
async fn queued_user(
    ctx: &Ctx,
    i: usize,
    user: &User,
    event_id: &str,
    seat: &str,
    deadline: Instant,
) -> Outcome {
    let mut out = Outcome {
        user: i,
        join: Stats::new(),
        joined_at: None,
        joined_early: false,
        ticket_id: None,
        poll: Stats::new(),
        admitted_seen: None,
        admitted_server: None,
        hold: Stats::new(),
        after_admission: Stats::new(),
        hold_code: None,
        hold_info: None,
        uncertain: false,
    };
    let mut ticket = None;
    for _ in 0..ATTEMPTS {
        let answer = join_queue(ctx, user, event_id).await;
        out.join.record_answer(&answer);
        if !retry_later(&answer).await {
            out.joined_at = Some(answer.received_at);
            ticket = Ticket::from_json(&answer.data["joinQueue"]);
            if let Some(t) = &ticket {
                out.joined_early = t.waiting_for_opening;
                out.ticket_id = Some(t.id.clone());
                if t.admitted {
                    out.admitted_seen = Some(answer.received_at);
                }
            }
            break;
        }
    }
    let Some(mut ticket) = ticket else {
        return out;
    };
    while ticket.admission().is_none() {
        let wait = match ticket.estimated_wait_secs {
            Some(secs) if secs > NEAR_SECS => POLL_FAR,
            _ => POLL_NEAR,
        };
        if Instant::now() + wait > deadline {
            return out;
        }
        tokio::time::sleep(wait).await;
        let answer = join_queue(ctx, user, event_id).await;
        out.poll.record_answer(&answer);
        if retry_later(&answer).await {
            continue;
        }
        if let Some(t) = Ticket::from_json(&answer.data["joinQueue"]) {
            if t.admission().is_some() {
                out.admitted_seen = Some(answer.received_at);
            }
            ticket = t;
        }
    }
    let seen = out.admitted_seen.unwrap_or_else(Instant::now);
    out.admitted_seen = Some(seen);
    out.admitted_server = ticket
        .admission_expires_at
        .map(|t| t - chrono::Duration::seconds(ADMISSION_TTL_SECS));
    let admission = ticket.admission().unwrap_or_default().to_owned();
    for _ in 0..ATTEMPTS {
        let answer = ctx
            .api
            .call_with_headers(
                Some(&user.token),
                &[("x-admission-token", admission.as_str())],
                ops::HOLD_SEATS,
                ops::vars::seats(event_id, &[seat]),
                Parse::Full,
            )
            .await;
        out.hold.record_answer(&answer);
        if retry_later(&answer).await {
            continue;
        }
        out.after_admission
            .record(&answer.code, answer.received_at - seen);
        match answer.code.as_str() {
            OK => out.hold_info = HoldInfo::from_json(&answer.data["holdSeats"]).ok(),
            TRANSPORT | TIMEOUT => out.uncertain = true,
            _ => {}
        }
        out.hold_code = Some(answer.code);
        break;
    }
    out
}

async fn join_queue(ctx: &Ctx, user: &User, event_id: &str) -> Answer {
    ctx.api
        .call(
            Some(&user.token),
            ops::JOIN_QUEUE,
            ops::vars::event(event_id),
            Parse::Full,
        )
        .await
}

/// Sleeps `retryAfterMs` (at most 1 s) and says so if the answer was `RETRY_LATER`.
async fn retry_later(answer: &Answer) -> bool {
    if answer.code != "RETRY_LATER" {
        return false;
    }
    let wait = answer.retry_after.unwrap_or(Duration::from_millis(100));
    tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
    true
}

/// Seconds from `origin` to `t`, negative when `t` came first.
fn signed_secs(t: Instant, origin: Instant) -> f64 {
    if t >= origin {
        (t - origin).as_secs_f64()
    } else {
        -(origin - t).as_secs_f64()
    }
}

/// Admissions per 1-s window after the opening.
#[derive(Debug, PartialEq)]
struct Pacing {
    /// Admissions in [k, k+1) s after the opening (those before it count in window 0).
    windows: Vec<u64>,
    /// Admissions before the opening.
    before: usize,
    /// Seconds from the opening to the first admission.
    first: f64,
    /// Seconds from the opening to the last admission.
    last: f64,
}

impl Pacing {
    fn of(offsets: &[f64]) -> Option<Self> {
        let last = offsets.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !last.is_finite() {
            return None;
        }
        let mut windows = vec![0u64; last.max(0.0).floor() as usize + 1];
        for &t in offsets {
            windows[t.max(0.0).floor() as usize] += 1;
        }
        Some(Self {
            windows,
            before: offsets.iter().filter(|&&t| t < 0.0).count(),
            first: offsets.iter().copied().fold(f64::INFINITY, f64::min),
            last,
        })
    }

    /// max |observed − R| / R over the windows that ended before the last admission (the
    /// last one is partial); `None` if there is no full window.
    fn max_error(&self, rate: u32) -> Option<f64> {
        let full = self.last.floor().max(0.0) as usize;
        let rate = f64::from(rate);
        self.windows[..full.min(self.windows.len())]
            .iter()
            .map(|&c| (c as f64 - rate).abs() / rate)
            .reduce(f64::max)
    }
}

/// `m` users each queue a request for their own seat on a fresh event without a room, `c`
/// at a time, then every request is polled until answered. Returns answers per second, from
/// the first request sent to the last answer seen.
/// Queued booking's throughput: by when each answer reached its requester (`pushed`), and
/// by when the worker recorded it (`answered`: the request's `answeredAt`, the server's clock,
/// the same machine's here).
struct Queued {
    pushed: f64,
    answered: f64,
}

async fn queued_phase(
    ctx: &Ctx,
    report: &mut Report,
    m: usize,
    c: usize,
) -> anyhow::Result<Queued> {
    let event = ctx.create_event("waiting-room-queued", m).await?;
    report.param("queued_event", event.id.as_str());
    let users = ctx.users("wrq", m)?;
    warm_connections(&ctx.api, c).await;
    let started = Instant::now();
    let started_wall = Utc::now();
    let mut last_answered = started_wall;
    let ws_url = ctx.api.ws_url();
    type Sent = (usize, Stats, Option<(String, Follower)>, bool);
    let sent: Vec<Sent> = futures::stream::iter(0..m)
        .map(|i| {
            let (api, user, ws_url) = (ctx.api.clone(), users[i].clone(), ws_url.clone());
            let (event_id, seat) = (event.id.clone(), event.seat_ids[i].clone());
            let key = format!("bench-{}-wrq-{i}", ctx.run_id);
            async move {
                let mut stats = Stats::new();
                for _ in 0..ATTEMPTS {
                    let answer = api
                        .call(
                            Some(&user.token),
                            ops::REQUEST_SEATS,
                            ops::vars::seats_keyed(&event_id, &[&seat], &key),
                            Parse::Full,
                        )
                        .await;
                    stats.record_answer(&answer);
                    if retry_later(&answer).await {
                        continue;
                    }
                    let uncertain = matches!(answer.code.as_str(), TRANSPORT | TIMEOUT);
                    // The requester follows its request's answer as a client would: over
                    // the `seatRequest` subscription, from the moment it is accepted.
                    let id = answer.data["requestSeats"]["id"].as_str().map(|id| {
                        let follower =
                            tokio::spawn(follow(ws_url, user.token.clone(), id.to_owned()));
                        (id.to_owned(), follower)
                    });
                    return (i, stats, id, uncertain);
                }
                (i, stats, None, false)
            }
        })
        .buffer_unordered(c)
        .collect()
        .await;
    let sent_elapsed = started.elapsed();
    let mut send_stats = Stats::new();
    let mut pending: HashMap<String, usize> = HashMap::new();
    let mut followers = Vec::new();
    let mut tracked = Tracked::default();
    for (i, stats, id, uncertain) in sent {
        send_stats.merge(&stats);
        tracked.uncertain |= uncertain;
        if let Some((id, follower)) = id {
            pending.insert(id, i);
            followers.push(follower);
        }
    }
    let accepted = pending.len();
    report.section(Section::new("requestSeats", send_stats, sent_elapsed));

    let mut follow_stats = Stats::new();
    let mut answered: Vec<(usize, String, Option<HoldInfo>, String)> = Vec::new();
    let mut last_answer = started;
    for follower in followers {
        let Ok(followed) = follower.await else {
            follow_stats.count_only("PANIC");
            continue;
        };
        let request = match followed.outcome {
            Ok(request) => request,
            Err(err) => {
                follow_stats.record(&followed.code, followed.latency);
                eprintln!("seatRequest {}: {err:#}", followed.id);
                continue;
            }
        };
        follow_stats.record(OK, followed.latency);
        last_answer = last_answer.max(followed.at);
        if let Some(at) = request["answeredAt"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            last_answered = last_answered.max(at.with_timezone(&Utc));
        }
        let status = request["status"].as_str().unwrap_or_default();
        let hold = HoldInfo::from_json(&request["hold"]).ok();
        let outcome = if status == "DONE" {
            status.to_owned()
        } else {
            format!("FAILED {}", request["errorCode"].as_str().unwrap_or("?"))
        };
        if let Some(i) = pending.remove(&followed.id) {
            answered.push((i, followed.id, hold, outcome));
        }
    }
    let elapsed = last_answer - started;
    report.section(Section::new(
        "seatRequest subscriptions (accepted → answer pushed)",
        follow_stats,
        elapsed,
    ));

    let mut problems: Vec<String> = Vec::new();
    let mut seen_holds: HashSet<String> = HashSet::new();
    let mut seen_requests: HashSet<String> = HashSet::new();
    for (i, id, hold, outcome) in &answered {
        if !seen_requests.insert(id.clone()) {
            problems.push(format!("request {id} answered twice"));
        }
        match hold {
            Some(h) if outcome == "DONE" => {
                if h.seats != [event.seat_ids[*i].clone()] {
                    problems.push(format!(
                        "request {id}: hold {} has seats {:?}",
                        h.id, h.seats
                    ));
                }
                if !seen_holds.insert(h.id.clone()) {
                    problems.push(format!("hold {} made by two requests", h.id));
                }
                tracked.ok_holds.insert(h.id.clone());
                tracked.active.insert(h.id.clone(), h.seats.clone());
            }
            _ => problems.push(format!("request {id}: {outcome}")),
        }
    }
    problems.extend(
        pending
            .keys()
            .map(|id| format!("request {id}: still QUEUED")),
    );
    report.check(
        "every queued request ends DONE with its own seat, exactly once",
        problems.is_empty() && accepted == m && answered.len() == m,
        format!(
            "{m} sent, {accepted} accepted, {} DONE; {}",
            answered.iter().filter(|a| a.3 == "DONE").count(),
            examples(&problems, 5)
        ),
    );
    verify::check_event(ctx, report, &event.id, &users, &tracked, false).await?;
    let per_sec = |secs: f64| {
        if secs > 0.0 {
            answered.len() as f64 / secs
        } else {
            0.0
        }
    };
    let answer_secs = (last_answered - started_wall)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1e6;
    Ok(Queued {
        pushed: per_sec(elapsed.as_secs_f64()),
        answered: per_sec(answer_secs),
    })
}

/// `m` users each hold their own seat on a fresh event without a room, `c` at a time.
/// Returns successful holds per second.
async fn direct_phase(ctx: &Ctx, report: &mut Report, m: usize, c: usize) -> anyhow::Result<f64> {
    let event = ctx.create_event("waiting-room-direct", m).await?;
    report.param("direct_event", event.id.as_str());
    let users = ctx.users("wrd", m)?;
    warm_connections(&ctx.api, c).await;
    let started = Instant::now();
    let results: Vec<(Stats, Option<HoldInfo>, bool)> = futures::stream::iter(0..m)
        .map(|i| {
            let (api, user) = (ctx.api.clone(), users[i].clone());
            let (event_id, seat) = (event.id.clone(), event.seat_ids[i].clone());
            async move {
                let mut stats = Stats::new();
                for _ in 0..ATTEMPTS {
                    let answer = hold(&api, &user, &event_id, &[&seat]).await;
                    stats.record_answer(&answer);
                    if retry_later(&answer).await {
                        continue;
                    }
                    let uncertain = matches!(answer.code.as_str(), TRANSPORT | TIMEOUT);
                    let info = (answer.code == OK)
                        .then(|| HoldInfo::from_json(&answer.data["holdSeats"]).ok())
                        .flatten();
                    return (stats, info, uncertain);
                }
                (stats, None, false)
            }
        })
        .buffer_unordered(c)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut stats = Stats::new();
    let mut tracked = Tracked::default();
    for (s, info, uncertain) in results {
        stats.merge(&s);
        tracked.uncertain |= uncertain;
        if let Some(h) = info {
            tracked.ok_holds.insert(h.id.clone());
            tracked.active.insert(h.id, h.seats);
        }
    }
    let ok = tracked.active.len();
    report.section(Section::new("holdSeats direct", stats, elapsed));
    report.check(
        "every direct hold of a free seat answered OK",
        ok == m,
        format!("{ok} of {m}"),
    );
    verify::check_event(ctx, report, &event.id, &users, &tracked, false).await?;
    Ok(ok as f64 / elapsed.as_secs_f64().max(f64::EPSILON))
}

type Follower = tokio::task::JoinHandle<Followed>;

/// What following one queued request over its subscription came to.
struct Followed {
    id: String,
    /// The request once DONE or FAILED, or why it was not seen so.
    outcome: anyhow::Result<Value>,
    /// `OK`, or what went wrong (`WS_ERROR`, `TIMEOUT`).
    code: String,
    /// From subscribing to the answer.
    latency: Duration,
    /// When the answer arrived.
    at: Instant,
}

/// Subscribes to `seatRequest(id)` as its requester and waits until it is DONE or FAILED.
async fn follow(ws_url: String, token: String, id: String) -> Followed {
    let started = Instant::now();
    let answer = async {
        let mut sub = Subscription::start_as(
            &ws_url,
            Some(&token),
            ops::SEAT_REQUEST_UPDATES,
            ops::vars::id(&id),
            Duration::from_secs(10),
        )
        .await?;
        loop {
            match sub.next_event().await? {
                Event::Data(data) => {
                    let request = &data["seatRequest"];
                    if matches!(request["status"].as_str(), Some("DONE" | "FAILED")) {
                        let request = request.clone();
                        sub.close().await;
                        return Ok(request);
                    }
                }
                Event::Error(err) => bail!("the subscription answered an error: {err}"),
                Event::Done => bail!("the subscription ended before the answer"),
            }
        }
    };
    let (outcome, code) = match tokio::time::timeout(QUEUED_TIMEOUT, answer).await {
        Ok(Ok(request)) => (Ok(request), OK.to_owned()),
        Ok(Err(err)) => (Err(err), "WS_ERROR".to_owned()),
        Err(_) => (
            Err(anyhow::anyhow!("no answer in {QUEUED_TIMEOUT:?}")),
            TIMEOUT.to_owned(),
        ),
    };
    Followed {
        id,
        outcome,
        code,
        latency: started.elapsed(),
        at: Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_windows_and_error() {
        let offsets = [-0.1, 0.2, 0.5, 1.1, 1.2, 1.3, 2.4];
        let p = Pacing::of(&offsets).expect("admissions");
        assert_eq!(p.windows, vec![3, 3, 1]);
        assert_eq!(p.before, 1);
        assert_eq!((p.first, p.last), (-0.1, 2.4));
        // Full windows: [0,1) and [1,2); rate 3 → both exact.
        assert_eq!(p.max_error(3), Some(0.0));
        assert_eq!(p.max_error(2), Some(0.5));
        assert!(Pacing::of(&[]).is_none());
        assert_eq!(Pacing::of(&[0.5]).map(|p| p.max_error(1)), Some(None));
    }
}
