//! Seat-map reads: many concurrent readers of one large event's full seat map, the query a
//! live seat-map page makes on load and on reconnect. With `--changes-per-sec`, a writer
//! holds one fresh seat at a time meanwhile, and every reader must see every change (a map
//! whose `seq` has reached the change's) within [`VISIBLE_WITHIN`] of the hold's answer.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::cli::SeatmapReadArgs;
use crate::client::{Answer, Api};
use crate::ops;
use crate::report::{Report, Section, Stats};
use crate::scenarios::{Ctx, Readers, SeqLog, examples, hold, run_readers, warm_connections};

/// How soon after its hold answered every reader must have seen a change.
const VISIBLE_WITHIN: Duration = Duration::from_secs(1);
/// The writer stops this long before the readers, so they have time to see its last change.
const WRITER_STOPS_BEFORE_END: Duration = Duration::from_secs(2);

pub async fn run(ctx: &Ctx, args: &SeatmapReadArgs) -> anyhow::Result<Report> {
    let mut report = Report::new("seatmap-read");
    report.param("seats", args.seats);
    report.param("readers", args.readers);
    report.param("duration_secs", args.duration_secs);
    report.param("form", format!("{:?}", args.form));
    if args.changes_per_sec > 0 {
        report.param("changes_per_sec", args.changes_per_sec);
        if Duration::from_secs(args.duration_secs) <= WRITER_STOPS_BEFORE_END {
            bail!("--changes-per-sec needs --duration-secs above 2");
        }
    }
    let event = ctx.create_event("seatmap-read", args.seats).await?;
    report.param("event", event.id.as_str());
    let seq_before = seat_map_seq(&ctx.api, &event.id).await?;

    warm_connections(&ctx.api, args.readers + 1).await;
    // A live on-sale's map is warm: one read builds it before the readers and the writer
    // start, and that cold build is reported on its own (else the first change would be seen
    // only after it, by readers all waiting for the same build).
    let cold = Instant::now();
    let first = ctx
        .api
        .read(args.form, ops::SEAT_MAP, &ops::vars::event(&event.id), None)
        .await;
    if !first.answer.is_ok() {
        bail!("the first seat map read failed: {:?}", first.answer.message);
    }
    report.metric(
        "first (cold) map read",
        cold.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );
    let duration = Duration::from_secs(args.duration_secs);
    let writer = (args.changes_per_sec > 0).then(|| {
        let (ctx, event_id, seats) = (ctx.clone(), event.id.clone(), event.seat_ids.clone());
        let interval = Duration::from_secs_f64(1.0 / f64::from(args.changes_per_sec));
        let until = Instant::now() + duration - WRITER_STOPS_BEFORE_END;
        tokio::spawn(async move { write_changes(&ctx, &event_id, &seats, interval, until).await })
    });
    let readers = run_readers(&ctx.api, &event.id, args.readers, duration, args.form).await?;
    let changes = match writer {
        Some(task) => task.await.context("the writer task panicked")??,
        None => Changes::default(),
    };

    report.metric(
        "seat maps/s",
        readers.stats.count() as f64 / readers.elapsed.as_secs_f64(),
        "req/s",
    );
    report.metric(
        "seats served/s",
        (readers.stats.count() as f64 * args.seats as f64) / readers.elapsed.as_secs_f64(),
        "seats/s",
    );
    report.section(Section::new(
        "seatMap",
        readers.stats.clone(),
        readers.elapsed,
    ));

    let map = ops::seat_statuses(&ctx.api, &event.id).await?;
    let available = map.with_status("AVAILABLE").count();
    if args.changes_per_sec == 0 {
        report.check(
            "the seat map lists every seat, all AVAILABLE",
            map.order.len() == args.seats && available == args.seats,
            format!("{} seats, {available} AVAILABLE", map.order.len()),
        );
        return Ok(report);
    }

    let seq_after = seat_map_seq(&ctx.api, &event.id).await?;
    check_changes(&mut report, &changes, &readers, seq_before);
    let held = &changes.held;
    let not_held: Vec<&String> = held
        .iter()
        .filter(|seat| map.status.get(*seat).map(String::as_str) != Some("HELD"))
        .collect();
    report.check(
        "the seat map lists every seat, AVAILABLE = seats − holds, every held seat HELD",
        map.order.len() == args.seats
            && available + held.len() == args.seats
            && not_held.is_empty(),
        format!(
            "{} seats, {available} AVAILABLE, {} holds{}",
            map.order.len(),
            held.len(),
            if not_held.is_empty() {
                String::new()
            } else {
                format!(", not HELD: {}", examples(not_held, 5))
            }
        ),
    );
    let expected = seq_before + held.len() as u64;
    report.check(
        "the map's seq advanced by exactly one per hold",
        seq_after == expected,
        format!(
            "seq {seq_before} before, {seq_after} after, {} holds",
            held.len()
        ),
    );
    Ok(report)
}

/// Adds the writer's section and the (reader, change) visibility figures and checks.
fn check_changes(report: &mut Report, changes: &Changes, readers: &Readers, seq_before: u64) {
    // The writer is the only one changing the event and holds one seat at a time, so its
    // j-th successful hold (from 1) is the change numbered seq_before + j; the seq check
    // proves it.
    let made: Vec<(u64, &Answer)> = changes
        .answers
        .iter()
        .filter(|a| a.is_ok())
        .zip(1..)
        .map(|(answer, j)| (seq_before + j, answer))
        .collect();
    let mut visible = Stats::new();
    let (mut early, mut late) = (0u64, 0u64);
    for (seq, answer) in &made {
        for log in &readers.seqs {
            match first_seen(log, *seq) {
                Some(at) => {
                    let after = at.saturating_duration_since(answer.received_at);
                    early += u64::from(at < answer.received_at);
                    late += u64::from(after > VISIBLE_WITHIN);
                    visible.record("SEEN", after);
                }
                None => visible.count_only("MISSED"),
            }
        }
    }
    let missed = visible.code("MISSED");
    let pairs = made.len() * readers.seqs.len();
    report.metric("changes made", made.len() as f64, "changes");
    report.metric("(reader, change) pairs", pairs as f64, "pairs");
    report.metric("change visible p50", visible.quantile_ms(0.50), "ms");
    report.metric("change visible p99", visible.quantile_ms(0.99), "ms");
    report.metric("change visible max", visible.max_ms(), "ms");
    report.metric("pairs visible after more than 1 s", late as f64, "pairs");
    report.metric("pairs never visible", missed as f64, "pairs");
    report.metric("pairs seen before the hold answered", early as f64, "pairs");
    report.metric(
        "maps with a lower seq than already seen",
        readers.backwards as f64,
        "maps",
    );
    report.section(Section::new(
        "holdSeats (changes)",
        changes.stats.clone(),
        changes.elapsed,
    ));
    report.total(Section::new(
        "change visible after hold answered",
        visible,
        changes.elapsed,
    ));
    report.check(
        "every hold of the writer answered OK",
        !changes.answers.is_empty() && made.len() == changes.answers.len(),
        format!("{} of {} holds", made.len(), changes.answers.len()),
    );
    report.check(
        "every map answer carried a readable seq",
        readers.unreadable == 0,
        format!("{} without", readers.unreadable),
    );
    report.check(
        "every reader saw every change within 1 s of its hold's answer",
        pairs > 0 && missed == 0 && late == 0,
        format!("{pairs} pairs, {late} later than 1 s, {missed} never"),
    );
}

/// When a reader first had a map at or past `seq`.
fn first_seen(log: &SeqLog, seq: u64) -> Option<Instant> {
    let i = log.partition_point(|&(seen, _)| seen < seq);
    log.get(i).map(|&(_, at)| at)
}

/// What the writer did.
#[derive(Default)]
struct Changes {
    /// Every hold's answer, in order.
    answers: Vec<Answer>,
    /// The seats of the holds answered OK.
    held: Vec<String>,
    stats: Stats,
    elapsed: Duration,
}

/// Holds seat k (layout order) as user `changer-k`, one every `interval`, one at a time,
/// until `until` or the seats run out.
async fn write_changes(
    ctx: &Ctx,
    event_id: &str,
    seats: &[String],
    interval: Duration,
    until: Instant,
) -> anyhow::Result<Changes> {
    let started = Instant::now();
    let mut changes = Changes::default();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for (k, seat) in seats.iter().enumerate() {
        ticks.tick().await;
        if Instant::now() >= until {
            break;
        }
        let user = ctx.user(&format!("changer-{k}"))?;
        let answer = hold(&ctx.api, &user, event_id, &[seat]).await;
        changes.stats.record_answer(&answer);
        if answer.is_ok() {
            changes.held.push(seat.clone());
        }
        changes.answers.push(answer);
    }
    changes.elapsed = started.elapsed();
    Ok(changes)
}

/// The event's seat-map `seq`.
async fn seat_map_seq(api: &Api, event_id: &str) -> anyhow::Result<u64> {
    let data = api
        .expect(None, ops::SEAT_SEQ, ops::vars::event(event_id))
        .await?;
    data["seatMap"]["seq"]
        .as_u64()
        .with_context(|| format!("seatMap answered without a seq: {data}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_seen_by_the_first_map_at_or_past_its_seq() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let log: SeqLog = vec![(3, at(10)), (5, at(20)), (9, at(30))];
        assert_eq!(first_seen(&log, 1), Some(at(10)));
        assert_eq!(first_seen(&log, 3), Some(at(10)));
        assert_eq!(first_seen(&log, 4), Some(at(20)));
        assert_eq!(first_seen(&log, 9), Some(at(30)));
        assert_eq!(first_seen(&log, 10), None);
        assert_eq!(first_seen(&SeqLog::new(), 1), None);
    }
}
