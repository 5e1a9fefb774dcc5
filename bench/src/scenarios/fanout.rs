//! Fan-out: N WebSocket subscribers follow one event's `seatChanges` while the bench makes M
//! seat changes (a hold of a fresh seat each). For every (change, subscriber) pair it measures
//! the time from the mutation's HTTP response (taken as its commit) to the subscriber's
//! receipt, and counts pairs never delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use tokio::sync::watch;

use crate::cli::FanoutArgs;
use crate::client::{Answer, OK};
use crate::ops;
use crate::report::{Report, Section, Stats};
use crate::scenarios::{Ctx, User, examples, hold};
use crate::ws::{Event, Subscription};

/// How long the first (probe) change may take to reach every subscriber.
const PROBE_WAIT: Duration = Duration::from_secs(10);

pub async fn run(ctx: &Ctx, args: &FanoutArgs) -> anyhow::Result<Report> {
    let mut report = Report::new("fanout");
    report.param("subscribers", args.subscribers);
    report.param("changes", args.changes);
    report.param("burst", args.burst);
    if args.changes == 0 {
        bail!("--changes must be at least 1");
    }
    // Seat 0 is the probe that proves every subscription is live; the rest are the changes.
    let event = ctx.create_event("fanout", args.changes + 1).await?;
    report.param("event", event.id.as_str());
    // One user per change: a user may hold only a few seats per event.
    let users = ctx.users("fanout", event.seat_ids.len())?;
    let counters: Arc<HashMap<String, AtomicUsize>> = Arc::new(
        event
            .seat_ids
            .iter()
            .map(|s| (s.clone(), AtomicUsize::new(0)))
            .collect(),
    );

    // Subscribe.
    let subscribe_started = Instant::now();
    let ws_url = ctx.api.ws_url();
    let attempts: Vec<(Duration, anyhow::Result<Subscription>)> =
        futures::stream::iter(0..args.subscribers)
            .map(|_| {
                let (url, event_id) = (ws_url.clone(), event.id.clone());
                async move {
                    let started = Instant::now();
                    let sub = Subscription::start(
                        &url,
                        ops::SEAT_CHANGES,
                        ops::vars::event(&event_id),
                        Duration::from_secs(10),
                    )
                    .await;
                    (started.elapsed(), sub)
                }
            })
            .buffer_unordered(args.connect_concurrency.max(1))
            .collect()
            .await;
    let subscribe_elapsed = subscribe_started.elapsed();
    let mut subscribe_stats = Stats::new();
    let mut connect_errors = Vec::new();
    let (stop, stopped) = watch::channel(false);
    let mut listeners = Vec::new();
    for (latency, attempt) in attempts {
        match attempt {
            Ok(sub) => {
                subscribe_stats.record(OK, latency);
                listeners.push(tokio::spawn(listen(sub, counters.clone(), stopped.clone())));
            }
            Err(e) => {
                subscribe_stats.record("CONNECT_FAILED", latency);
                connect_errors.push(format!("{e:#}"));
            }
        }
    }
    let connected = listeners.len();

    // Probe: one change every live subscription must see before measuring starts.
    let probe_seat = &event.seat_ids[0];
    let probe = hold(&ctx.api, &users[0], &event.id, &[probe_seat]).await;
    if !probe.is_ok() {
        bail!(
            "the probe hold failed with {}: {}",
            probe.code,
            probe.message.unwrap_or_default()
        );
    }
    let live = wait_for(
        &counters,
        std::slice::from_ref(probe_seat),
        connected,
        PROBE_WAIT,
    )
    .await;

    // The measured changes.
    let changes_started = Instant::now();
    let mut hold_stats = Stats::new();
    let mut made: Vec<(String, Instant, Answer)> = Vec::new();
    let burst = args.burst.max(1);
    for (n, step) in event.seat_ids[1..].chunks(burst).enumerate() {
        let answers = futures::future::join_all(
            step.iter()
                .enumerate()
                .map(|(i, seat)| change(&ctx.api, &users[1 + n * burst + i], &event.id, seat)),
        )
        .await;
        for (seat, (sent, answer)) in step.iter().zip(answers) {
            hold_stats.record_answer(&answer);
            made.push((seat.clone(), sent, answer));
        }
        let wait = Duration::from_millis(args.wait_ms);
        wait_for(&counters, step, live, wait).await;
    }
    let changes_elapsed = changes_started.elapsed();

    let _ = stop.send(true);
    let mut logs = Vec::with_capacity(listeners.len());
    for listener in listeners {
        logs.push(listener.await.context("a subscriber task panicked")?);
    }

    // Every (successful change, subscriber) pair.
    let mut after_response = Stats::new();
    let mut after_request = Stats::new();
    let mut early = 0u64;
    for (seat, sent, answer) in made.iter().filter(|(_, _, a)| a.is_ok()) {
        for log in &logs {
            match log.received.get(seat) {
                Some(&at) => {
                    early += u64::from(at < answer.received_at);
                    after_response.record(
                        "DELIVERED",
                        at.saturating_duration_since(answer.received_at),
                    );
                    after_request.record("DELIVERED", at.saturating_duration_since(*sent));
                }
                None => {
                    after_response.count_only("MISSED");
                    after_request.count_only("MISSED");
                }
            }
        }
    }
    let missed = after_response.code("MISSED");
    let ok_changes = made.iter().filter(|(_, _, a)| a.is_ok()).count();
    report.metric("subscribers connected", connected as f64, "subscribers");
    report.metric(
        "subscribers live (got the probe)",
        live as f64,
        "subscribers",
    );
    report.metric("changes made", ok_changes as f64, "changes");
    report.metric(
        "deliveries expected",
        (ok_changes * logs.len()) as f64,
        "deliveries",
    );
    report.metric("deliveries missed", missed as f64, "deliveries");
    report.metric(
        "delivered before the HTTP response",
        early as f64,
        "deliveries",
    );
    report.section(Section::new(
        "subscribe (handshake + ack)",
        subscribe_stats,
        subscribe_elapsed,
    ));
    report.section(Section::new("holdSeats", hold_stats, changes_elapsed));
    report.section(Section::new(
        "delivery after HTTP response",
        after_response,
        changes_elapsed,
    ));
    report.section(Section::new(
        "delivery after request sent",
        after_request,
        changes_elapsed,
    ));

    report.check(
        "every subscriber connected",
        connected == args.subscribers,
        if connect_errors.is_empty() {
            format!("{connected}")
        } else {
            examples(&connect_errors, 3)
        },
    );
    report.check(
        "every subscription delivered the probe change",
        live == connected,
        format!("{live} of {connected}"),
    );
    report.check(
        "every change made reached every subscriber",
        missed == 0 && ok_changes == args.changes,
        format!(
            "{ok_changes} of {} changes made, {missed} deliveries missed",
            args.changes
        ),
    );
    let disorder: Vec<String> = logs.iter().filter_map(|l| l.problem.clone()).collect();
    report.check(
        "every subscriber saw seq strictly increasing by one, without errors",
        disorder.is_empty(),
        examples(&disorder, 3),
    );
    Ok(report)
}

/// Makes one change; returns when its request was sent and the answer.
async fn change(
    api: &crate::client::Api,
    user: &User,
    event_id: &str,
    seat: &str,
) -> (Instant, Answer) {
    let sent = Instant::now();
    (sent, hold(api, user, event_id, &[seat]).await)
}

/// Waits until every seat in `seats` was received `target` times, or `timeout`; returns how
/// many subscribers received the first seat.
async fn wait_for(
    counters: &HashMap<String, AtomicUsize>,
    seats: &[String],
    target: usize,
    timeout: Duration,
) -> usize {
    let deadline = Instant::now() + timeout;
    let count = |seat: &String| counters.get(seat).map_or(0, |c| c.load(Ordering::Relaxed));
    while Instant::now() < deadline && seats.iter().any(|s| count(s) < target) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    seats.first().map_or(0, count)
}

/// What one subscriber received.
struct Log {
    /// Seat id → when its HELD change arrived.
    received: HashMap<String, Instant>,
    /// The first ordering problem or error, if any.
    problem: Option<String>,
}

/// Reads one subscription until told to stop, timestamping every change.
async fn listen(
    mut sub: Subscription,
    counters: Arc<HashMap<String, AtomicUsize>>,
    mut stop: watch::Receiver<bool>,
) -> Log {
    let mut log = Log {
        received: HashMap::new(),
        problem: None,
    };
    let mut last_seq: Option<i64> = None;
    loop {
        let event = tokio::select! {
            _ = stop.changed() => break,
            event = sub.next_event() => event,
        };
        let at = Instant::now();
        let data = match event {
            Ok(Event::Data(data)) => data,
            Ok(Event::Error(e)) => {
                log.problem
                    .get_or_insert(format!("subscription error: {e}"));
                break;
            }
            Ok(Event::Done) => {
                log.problem
                    .get_or_insert("the server ended the subscription".to_owned());
                break;
            }
            Err(e) => {
                log.problem.get_or_insert(format!("{e:#}"));
                break;
            }
        };
        let change = &data["seatChanges"];
        let seq = change["seq"].as_i64().unwrap_or(-1);
        if let Some(last) = last_seq
            && seq != last + 1
        {
            log.problem.get_or_insert(format!("seq {seq} after {last}"));
        }
        last_seq = Some(seq);
        if let Some(seat) = change["seatId"].as_str() {
            log.received.entry(seat.to_owned()).or_insert(at);
            if let Some(counter) = counters.get(seat) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    sub.close().await;
    log
}
