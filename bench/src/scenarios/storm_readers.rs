//! Readers under a storm: how much a hot-seat storm slows down people who are only looking
//! at the seat map. Readers run alone first (baseline), then while storm rounds run back to
//! back, each round N users racing for a fresh seat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cli::StormReadersArgs;
use crate::client::ReadForm;
use crate::ops;
use crate::report::{Report, Section, Stats};
use crate::scenarios::hot_seat::{Round, describe};
use crate::scenarios::{Ctx, Readers, examples, hold_burst, run_readers, warm_connections};

pub async fn run(ctx: &Ctx, args: &StormReadersArgs) -> anyhow::Result<Report> {
    let mut report = Report::new("storm-readers");
    report.param("users", args.users);
    report.param("readers", args.readers);
    report.param("phase_secs", args.phase_secs);
    report.param("seats", args.seats);
    let event = ctx.create_event("storm-readers", args.seats.max(1)).await?;
    report.param("event", event.id.as_str());
    let phase = Duration::from_secs(args.phase_secs.max(1));

    // Every round has its own users: a user may hold only a few seats per event.
    let first_users = ctx.users("storm-r0", args.users)?;
    warm_connections(&ctx.api, args.users + args.readers).await;
    let Readers {
        stats: baseline,
        elapsed: baseline_elapsed,
        ..
    } = run_readers(&ctx.api, &event.id, args.readers, phase, ReadForm::Post).await?;

    // The storm runs rounds until the readers' second phase is over.
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        let n = args.users;
        let (event_id, seats) = (event.id.clone(), event.seat_ids.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut stats = Stats::new();
            let mut rounds = Vec::new();
            let mut users = first_users;
            for (i, seat) in seats.iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if i > 0 {
                    users = ctx.users(&format!("storm-r{i}"), n)?;
                }
                let burst = hold_burst(&ctx.api, &users, &event_id, seat).await?;
                for (_, answer) in &burst.answers {
                    stats.record_answer(answer);
                }
                rounds.push(Round::of(&burst, &users, seat));
            }
            anyhow::Ok((stats, rounds, started.elapsed()))
        })
    };
    let Readers {
        stats: during,
        elapsed: during_elapsed,
        ..
    } = run_readers(&ctx.api, &event.id, args.readers, phase, ReadForm::Post).await?;
    stop.store(true, Ordering::Relaxed);
    let (storm_stats, rounds, storm_elapsed) = storm.await.context("the storm task panicked")??;

    let base_p99 = baseline.quantile_ms(0.99);
    let storm_p99 = during.quantile_ms(0.99);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    report.metric("readers p50 baseline", baseline.quantile_ms(0.5), "ms");
    report.metric("readers p50 during storm", during.quantile_ms(0.5), "ms");
    report.metric("readers p99 baseline", base_p99, "ms");
    report.metric("readers p99 during storm", storm_p99, "ms");
    report.metric(
        "readers p99 ratio (storm/baseline)",
        ratio(storm_p99, base_p99),
        "x",
    );
    report.metric(
        "readers throughput ratio (storm/baseline)",
        ratio(
            during.count() as f64 / during_elapsed.as_secs_f64(),
            baseline.count() as f64 / baseline_elapsed.as_secs_f64(),
        ),
        "x",
    );
    report.metric("storm rounds", rounds.len() as f64, "rounds");
    report.section(Section::new("seatMap baseline", baseline, baseline_elapsed));
    report.section(Section::new("seatMap during storm", during, during_elapsed));
    report.section(Section::new("holdSeats storm", storm_stats, storm_elapsed));

    let not_one: Vec<String> = rounds
        .iter()
        .filter(|r| r.winners.len() != 1)
        .map(|r| format!("seat {}: {} winners", r.seat, r.winners.len()))
        .collect();
    report.check(
        "every storm round has exactly one winner",
        !rounds.is_empty() && not_one.is_empty(),
        if not_one.is_empty() {
            format!("{} rounds", rounds.len())
        } else {
            examples(&not_one, 5)
        },
    );
    let mut unexpected = std::collections::BTreeMap::new();
    for round in &rounds {
        for (code, n) in &round.unexpected {
            *unexpected.entry(code.clone()).or_default() += n;
        }
    }
    report.check(
        "every loser gets SEAT_UNAVAILABLE or RETRY_LATER",
        unexpected.is_empty(),
        describe(&unexpected),
    );
    let map = ops::seat_statuses(&ctx.api, &event.id).await?;
    let mut problems = Vec::new();
    for round in &rounds {
        problems.extend(round.verify(ctx, &event.id, &map).await?);
    }
    report.check(
        "each round's seat shows HELD and is in its winner's active holds",
        problems.is_empty(),
        examples(&problems, 5),
    );
    Ok(report)
}
