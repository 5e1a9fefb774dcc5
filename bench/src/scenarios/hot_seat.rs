//! Hot seat: N distinct users ask for the same seat at the same instant. Exactly one may win;
//! everyone else must get a clean refusal.

use std::collections::BTreeMap;

use crate::cli::HotSeatArgs;
use crate::client::OK;
use crate::ops::{self, HoldInfo, SeatStatuses};
use crate::report::{Report, Section, Stats};
use crate::scenarios::{Burst, Ctx, User, examples, hold_burst, warm_connections};

/// Refusals the contract allows a loser.
const LOSER_CODES: [&str; 2] = ["SEAT_UNAVAILABLE", "RETRY_LATER"];

pub async fn run(ctx: &Ctx, args: &HotSeatArgs) -> anyhow::Result<Report> {
    let mut report = Report::new("hot-seat");
    report.param("users", args.users);
    let event = ctx.create_event("hot-seat", args.seats.max(1)).await?;
    let seat = event.seat_ids[0].clone();
    report.param("event", event.id.as_str());
    report.param("seat", seat.as_str());
    let users = ctx.users("hot", args.users)?;

    warm_connections(&ctx.api, args.users).await;
    let burst = hold_burst(&ctx.api, &users, &event.id, &seat).await?;

    let mut stats = Stats::new();
    for (_, answer) in &burst.answers {
        stats.record_answer(answer);
    }
    report.section(Section::new("holdSeats", stats, burst.elapsed));

    let round = Round::of(&burst, &users, &seat);
    let winners: Vec<&str> = round.winners.iter().map(|(u, _)| u.sub.as_str()).collect();
    report.check(
        "exactly one winner",
        winners.len() == 1,
        format!(
            "{} OK among {}: {}",
            winners.len(),
            burst.answers.len(),
            examples(&winners, 3)
        ),
    );
    report.check(
        "every loser gets SEAT_UNAVAILABLE or RETRY_LATER",
        round.unexpected.is_empty(),
        describe(&round.unexpected),
    );
    let map = ops::seat_statuses(&ctx.api, &event.id).await?;
    let problems = round.verify(ctx, &event.id, &map).await?;
    report.check(
        "the seat shows HELD and the winner's active holds contain it",
        problems.is_empty(),
        problems.join("; "),
    );
    Ok(report)
}

/// What one burst on one seat produced.
pub struct Round {
    pub seat: String,
    /// The user and hold of every `OK` answer.
    pub winners: Vec<(User, HoldInfo)>,
    /// Answers that are neither a win nor an allowed refusal, by code.
    pub unexpected: BTreeMap<String, u64>,
}

impl Round {
    /// Classifies the answers of a burst by `users` for `seat`.
    pub fn of(burst: &Burst, users: &[User], seat: &str) -> Self {
        let mut winners = Vec::new();
        let mut unexpected = BTreeMap::new();
        for (user, answer) in &burst.answers {
            if answer.code == OK {
                match HoldInfo::from_json(&answer.data["holdSeats"]) {
                    Ok(hold) => winners.push((users[*user].clone(), hold)),
                    Err(_) => {
                        *unexpected
                            .entry("OK without a hold".to_owned())
                            .or_default() += 1
                    }
                }
            } else if !LOSER_CODES.contains(&answer.code.as_str()) {
                *unexpected.entry(answer.code.clone()).or_default() += 1;
            }
        }
        Self {
            seat: seat.to_owned(),
            winners,
            unexpected,
        }
    }

    /// Problems with the single winner's hold as the API shows it now: the seat must be
    /// HELD on `map` and be in one of the winner's active holds.
    pub async fn verify(
        &self,
        ctx: &Ctx,
        event_id: &str,
        map: &SeatStatuses,
    ) -> anyhow::Result<Vec<String>> {
        let mut problems = Vec::new();
        let status = map.status.get(&self.seat).map_or("missing", String::as_str);
        if status != "HELD" {
            problems.push(format!("seat {} shows {status}", self.seat));
        }
        let [(user, hold)] = self.winners.as_slice() else {
            return Ok(problems);
        };
        if hold.seats != [self.seat.clone()] {
            problems.push(format!("hold {} answered seats {:?}", hold.id, hold.seats));
        }
        let active = ops::active_holds(&ctx.api, &user.token, event_id).await?;
        if !active
            .iter()
            .any(|h| h.id == hold.id && h.seats.contains(&self.seat))
        {
            problems.push(format!(
                "hold {} is not among the winner's active holds",
                hold.id
            ));
        }
        Ok(problems)
    }
}

/// "CODE n, CODE n" or "none".
pub fn describe(codes: &BTreeMap<String, u64>) -> String {
    if codes.is_empty() {
        "none".to_owned()
    } else {
        codes
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
