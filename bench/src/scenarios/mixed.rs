//! An on-sale mix: each worker is a customer who mostly looks at the seat map, sometimes
//! tries to hold seats (some of them popular, so contended), and confirms or releases its
//! own holds. Proportions: 60% `seatMap`, 25% `holdSeats`, 10% `confirmHold`, 5%
//! `releaseHold`; a confirm or release with no hold to act on becomes a hold attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cli::MixedArgs;
use crate::client::{Answer, OK, Parse, TIMEOUT, TRANSPORT};
use crate::ops::{self, HoldInfo};
use crate::report::{Report, Section, Stats};
use crate::scenarios::distinct::HOLDS_PER_USER;
use crate::scenarios::{Ctx, User, hold, read_seat_map};
use crate::verify::{self, Tracked};

/// Share of requested seats drawn from the popular ones.
const HOT_SHARE: f64 = 0.3;

#[derive(Clone, Copy)]
enum Op {
    Read,
    Hold,
    Confirm,
    Release,
}

const OPS: [(Op, &str); 4] = [
    (Op::Read, "seatMap"),
    (Op::Hold, "holdSeats"),
    (Op::Confirm, "confirmHold"),
    (Op::Release, "releaseHold"),
];

pub async fn run(ctx: &Ctx, args: &MixedArgs) -> anyhow::Result<Report> {
    let mut report = Report::new("mixed");
    report.param("duration_secs", args.duration_secs);
    report.param("concurrency", args.concurrency);
    report.param("seats", args.seats);
    report.param("hot_seats", args.hot_seats);
    let event = ctx.create_event("mixed", args.seats).await?;
    report.param("event", event.id.as_str());

    let seats = Arc::new(event.seat_ids.clone());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let mut tasks = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let worker = Worker {
            ctx: ctx.clone(),
            name: format!("mixed-w{w}"),
            event_id: event.id.clone(),
            seats: seats.clone(),
            hot: args.hot_seats.clamp(1, seats.len()),
            rng: StdRng::from_rng(&mut rand::rng()),
            users: Vec::new(),
            holds_made: 0,
            mine: Vec::new(),
            tracked: Tracked::default(),
            stats: std::array::from_fn(|_| Stats::new()),
        };
        tasks.push(tokio::spawn(worker.run(deadline)));
    }
    let mut per_op: [Stats; 4] = std::array::from_fn(|_| Stats::new());
    let mut tracked = Tracked::default();
    let mut users = Vec::new();
    for task in tasks {
        let worker = task.await.context("a worker panicked")??;
        for (total, s) in per_op.iter_mut().zip(&worker.stats) {
            total.merge(s);
        }
        tracked.merge(worker.tracked);
        users.extend(worker.users);
    }
    let elapsed = started.elapsed();

    let mut all = Stats::new();
    for s in &per_op {
        all.merge(s);
    }
    let secs = elapsed.as_secs_f64();
    report.metric("requests/s", all.count() as f64 / secs, "req/s");
    report.metric("holds OK/s", per_op[1].code(OK) as f64 / secs, "holds/s");
    report.metric("bookings", tracked.confirmed.len() as f64, "bookings");
    report.total(Section::new("all", all, elapsed));
    for ((_, name), stats) in OPS.iter().zip(per_op) {
        report.section(Section::new(*name, stats, elapsed));
    }
    verify::check_event(ctx, &mut report, &event.id, &users, &tracked, true).await?;
    Ok(report)
}

/// One simulated customer (switching to a fresh user id every `HOLDS_PER_USER` holds).
struct Worker {
    ctx: Ctx,
    name: String,
    event_id: String,
    seats: Arc<Vec<String>>,
    hot: usize,
    rng: StdRng,
    users: Vec<User>,
    holds_made: usize,
    /// Own holds believed active: (user index, hold).
    mine: Vec<(usize, HoldInfo)>,
    tracked: Tracked,
    stats: [Stats; 4],
}

impl Worker {
    async fn run(mut self, deadline: Instant) -> anyhow::Result<Self> {
        while Instant::now() < deadline {
            let roll = self.rng.random_range(0..100);
            let op = match roll {
                0..60 => Op::Read,
                60..85 => Op::Hold,
                85..95 if !self.mine.is_empty() => Op::Confirm,
                95.. if !self.mine.is_empty() => Op::Release,
                _ => Op::Hold,
            };
            match op {
                Op::Read => {
                    let answer = read_seat_map(&self.ctx.api, &self.event_id).await;
                    self.stats[0].record_answer(&answer);
                }
                Op::Hold => self.hold().await?,
                Op::Confirm | Op::Release => self.finish(op).await,
            }
        }
        Ok(self)
    }

    /// Tries to hold one or two seats, some from the popular ones.
    async fn hold(&mut self) -> anyhow::Result<()> {
        let count = if self.rng.random_bool(0.8) { 1 } else { 2 };
        let mut picked: Vec<&str> = Vec::with_capacity(count);
        while picked.len() < count {
            let range = if self.rng.random_bool(HOT_SHARE) {
                self.hot
            } else {
                self.seats.len()
            };
            let seat = self.seats[self.rng.random_range(0..range)].as_str();
            if !picked.contains(&seat) {
                picked.push(seat);
            }
            if self.seats.len() < count {
                break;
            }
        }
        let user_index = self.holds_made / HOLDS_PER_USER;
        if user_index >= self.users.len() {
            let user = self
                .ctx
                .user(&format!("{}-{}", self.name, self.users.len()))?;
            self.users.push(user);
        }
        let answer = hold(
            &self.ctx.api,
            &self.users[user_index],
            &self.event_id,
            &picked,
        )
        .await;
        self.stats[1].record_answer(&answer);
        match answer.code.as_str() {
            OK => {
                if let Ok(h) = HoldInfo::from_json(&answer.data["holdSeats"]) {
                    self.tracked.ok_holds.insert(h.id.clone());
                    self.tracked.active.insert(h.id.clone(), h.seats.clone());
                    self.mine.push((user_index, h));
                }
                self.holds_made += 1;
            }
            TRANSPORT | TIMEOUT => self.tracked.uncertain = true,
            _ => {}
        }
        Ok(())
    }

    /// Confirms or releases one of its own active holds, picked at random.
    async fn finish(&mut self, op: Op) {
        let (user_index, hold) = self
            .mine
            .swap_remove(self.rng.random_range(0..self.mine.len()));
        let token = self.users[user_index].token.as_str();
        let (query, slot) = match op {
            Op::Confirm => (ops::CONFIRM_HOLD, 2),
            _ => (ops::RELEASE_HOLD, 3),
        };
        let answer: Answer = self
            .ctx
            .api
            .call(Some(token), query, ops::vars::hold(&hold.id), Parse::Full)
            .await;
        self.stats[slot].record_answer(&answer);
        match answer.code.as_str() {
            OK => {
                if let Some(seats) = self.tracked.active.remove(&hold.id)
                    && matches!(op, Op::Confirm)
                {
                    self.tracked.confirmed.insert(hold.id, seats);
                }
            }
            "HOLD_EXPIRED" | "HOLD_NOT_ACTIVE" => {
                self.tracked.active.remove(&hold.id);
            }
            "RETRY_LATER" => self.mine.push((user_index, hold)),
            TRANSPORT | TIMEOUT => self.tracked.uncertain = true,
            _ => {}
        }
    }
}
