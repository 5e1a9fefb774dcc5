//! Distinct seats: C workers each hold a seat nobody else asks for, one seat per hold, until
//! the seats or the time run out. Measures the write path without contention. With
//! `--also-url`, the workers alternate between two instances of one server (same event, same
//! database), and the checks run through both.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cli::DistinctArgs;
use crate::client::{OK, TIMEOUT, TRANSPORT};
use crate::ops::HoldInfo;
use crate::report::{Report, Section, Stats};
use crate::scenarios::{Ctx, User, hold};
use crate::verify::{self, Tracked};

/// A worker switches to a new user after this many holds: the server refuses more active
/// holds per user and event than `MAX_HOLDS_PER_USER` (default 10).
pub const HOLDS_PER_USER: usize = 10;
/// Attempts per seat when the server answers `RETRY_LATER`.
const ATTEMPTS: usize = 5;

pub async fn run(ctx: &Ctx, args: &DistinctArgs) -> anyhow::Result<Report> {
    let mut report = Report::new("distinct");
    report.param("seats", args.seats);
    report.param("concurrency", args.concurrency);
    report.param("duration_secs", args.duration_secs);
    if let Some(url) = &args.also_url {
        report.param("also_url", url.as_str());
    }
    let event = ctx.create_event("distinct", args.seats).await?;
    report.param("event", event.id.as_str());
    // Worker i sends its holds to instance i % 2.
    let mut apis = vec![ctx.api.clone()];
    if let Some(url) = &args.also_url {
        let second = ctx.api.at(url);
        second
            .healthz()
            .await
            .with_context(|| format!("the second instance at {url} does not answer"))?;
        apis.push(second);
    }
    let instances = apis.len();

    let seats = Arc::new(event.seat_ids.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let mut tasks = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let (ctx, seats, next) = (ctx.clone(), seats.clone(), next.clone());
        let event_id = event.id.clone();
        let api = apis[w % instances].clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::new();
            let mut tracked = Tracked::default();
            let mut users: Vec<User> = Vec::new();
            let mut made = 0usize;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(seat) = seats.get(i) else { break };
                if made / HOLDS_PER_USER >= users.len() {
                    users.push(ctx.user(&format!("distinct-w{w}-{}", users.len()))?);
                }
                let user = &users[made / HOLDS_PER_USER];
                for _ in 0..ATTEMPTS {
                    let answer = hold(&api, user, &event_id, &[seat]).await;
                    stats.record_answer(&answer);
                    match answer.code.as_str() {
                        OK => {
                            if let Ok(h) = HoldInfo::from_json(&answer.data["holdSeats"]) {
                                tracked.ok_holds.insert(h.id.clone());
                                tracked.active.insert(h.id, h.seats);
                            }
                            made += 1;
                        }
                        "RETRY_LATER" => {
                            let wait = answer.retry_after.unwrap_or(Duration::from_millis(100));
                            tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
                            continue;
                        }
                        TRANSPORT | TIMEOUT => tracked.uncertain = true,
                        _ => {}
                    }
                    break;
                }
            }
            anyhow::Ok((stats, tracked, users))
        }));
    }
    let mut stats = Stats::new();
    let mut per_instance = vec![0u64; instances];
    let mut tracked = Tracked::default();
    let mut users = Vec::new();
    for (w, task) in tasks.into_iter().enumerate() {
        let (s, t, u) = task.await.context("a worker panicked")??;
        per_instance[w % instances] += s.code(OK);
        stats.merge(&s);
        tracked.merge(t);
        users.extend(u);
    }
    let elapsed = started.elapsed();

    let holds = stats.code(OK);
    report.metric("holds/s", holds as f64 / elapsed.as_secs_f64(), "holds/s");
    report.metric("holds", holds as f64, "holds");
    if instances > 1 {
        report.metric("holds via --url", per_instance[0] as f64, "holds");
        report.metric("holds via --also-url", per_instance[1] as f64, "holds");
    }
    report.section(Section::new("holdSeats", stats, elapsed));
    let mut seen = std::collections::HashSet::new();
    let twice = tracked
        .active
        .values()
        .flatten()
        .filter(|s| !seen.insert(*s))
        .count();
    report.check(
        "no seat answered OK to two holds",
        twice == 0,
        format!("{twice} seats"),
    );
    verify::check_event(ctx, &mut report, &event.id, &users, &tracked, false).await?;
    if let Some(second) = apis.get(1) {
        // The same invariants as the other instance sees them.
        let ctx = Ctx {
            api: second.clone(),
            ..ctx.clone()
        };
        let mut through = Report::new("distinct");
        verify::check_event(&ctx, &mut through, &event.id, &users, &tracked, false).await?;
        report.add_checks_of(through, " (through --also-url)");
    }
    Ok(report)
}
