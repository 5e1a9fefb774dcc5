//! The scenarios, and what they share: the run context (API, tokens, run id), bench users,
//! a simultaneous burst of holds on one seat, and loops of seat-map readers.

pub mod distinct;
pub mod fanout;
pub mod hot_seat;
pub mod mixed;
pub mod seatmap_read;
pub mod storm_readers;
pub mod waiting_room;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Barrier;

use crate::client::{Answer, Api, Parse, ReadForm};
use crate::ops::{self, Event};
use crate::report::Stats;
use crate::tokens::Tokens;

/// What every scenario runs with (cheap to clone into worker tasks).
#[derive(Clone)]
pub struct Ctx {
    pub api: Api,
    pub tokens: Tokens,
    /// Random per run, part of every user id and event name, so runs never mix.
    pub run_id: String,
}

/// A bench user and its bearer token.
#[derive(Clone, Debug)]
pub struct User {
    pub sub: String,
    pub token: String,
}

impl Ctx {
    /// The user `name` of this run.
    pub fn user(&self, name: &str) -> anyhow::Result<User> {
        let sub = format!("bench-{}-{name}", self.run_id);
        let token = self.tokens.user(&sub)?;
        Ok(User { sub, token })
    }

    /// Users `{prefix}-0` … `{prefix}-{n-1}`.
    pub fn users(&self, prefix: &str, n: usize) -> anyhow::Result<Vec<User>> {
        (0..n)
            .map(|i| self.user(&format!("{prefix}-{i}")))
            .collect()
    }

    /// A fresh event for this run, created with an admin token.
    pub async fn create_event(&self, scenario: &str, seats: usize) -> anyhow::Result<Event> {
        let admin = self.tokens.admin(&format!("bench-{}-admin", self.run_id))?;
        ops::create_event(
            &self.api,
            &admin,
            &format!("bench {scenario} {}", self.run_id),
            seats,
        )
        .await
        .with_context(|| format!("cannot create the {scenario} event"))
    }
}

/// `holdSeats` of `seats` for `user`, answer fully parsed.
pub async fn hold(api: &Api, user: &User, event_id: &str, seats: &[&str]) -> Answer {
    api.call(
        Some(&user.token),
        ops::HOLD_SEATS,
        ops::vars::seats(event_id, seats),
        Parse::Full,
    )
    .await
}

/// One anonymous `seatMap` read; the body is parsed only if it carries errors.
pub async fn read_seat_map(api: &Api, event_id: &str) -> Answer {
    api.call(
        None,
        ops::SEAT_MAP,
        ops::vars::event(event_id),
        Parse::ErrorsOnly,
    )
    .await
}

/// When one reader first got each higher `seq`: (seq, answer received), seq increasing.
pub type SeqLog = Vec<(u64, Instant)>;

/// What a group of readers measured and saw.
pub struct Readers {
    /// Their answers, merged.
    pub stats: Stats,
    /// The wall-clock time they ran.
    pub elapsed: Duration,
    /// Per reader, when it first saw each higher `seq`.
    pub seqs: Vec<SeqLog>,
    /// Maps answered (not `304`) whose `seq` could not be read from the head.
    pub unreadable: u64,
    /// Maps whose `seq` was below one the same reader had already seen.
    pub backwards: u64,
}

/// `n` concurrent readers, each reading the seat map in a loop until `duration` is over,
/// noting the map's `seq` of every answer (a `304` keeps the reader's copy and its `seq`).
pub async fn run_readers(
    api: &Api,
    event_id: &str,
    n: usize,
    duration: Duration,
    form: ReadForm,
) -> anyhow::Result<Readers> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let api = api.clone();
            let event_id = event_id.to_owned();
            tokio::spawn(async move {
                let mut stats = Stats::new();
                let mut log = SeqLog::new();
                let (mut unreadable, mut backwards) = (0u64, 0u64);
                let variables = ops::vars::event(&event_id);
                let mut etag = None;
                while Instant::now() < deadline {
                    let read = api
                        .read(form, ops::SEAT_MAP, &variables, etag.as_deref())
                        .await;
                    stats.record_answer(&read.answer);
                    let last = log.last().map(|&(seq, _)| seq);
                    match read.seq {
                        Some(seq) if last.is_none_or(|last| seq > last) => {
                            log.push((seq, read.answer.received_at));
                        }
                        Some(seq) if last.is_some_and(|last| seq < last) => backwards += 1,
                        Some(_) => {}
                        // A 304 answers "unchanged since your ETag": the reader's seq stands.
                        None if read.answer.is_ok() && !read.not_modified => unreadable += 1,
                        None => {}
                    }
                    if form == ReadForm::GetEtag {
                        etag = read.etag;
                    }
                }
                (stats, log, unreadable, backwards)
            })
        })
        .collect();
    let mut readers = Readers {
        stats: Stats::new(),
        elapsed: Duration::ZERO,
        seqs: Vec::with_capacity(n),
        unreadable: 0,
        backwards: 0,
    };
    for task in tasks {
        let (stats, log, unreadable, backwards) = task.await.context("a reader task panicked")?;
        readers.stats.merge(&stats);
        readers.seqs.push(log);
        readers.unreadable += unreadable;
        readers.backwards += backwards;
    }
    readers.elapsed = started.elapsed();
    Ok(readers)
}

/// Opens about `n` keep-alive connections ahead of a burst, so the burst measures requests
/// rather than TCP handshakes. Best effort: a failed warm-up request is ignored.
pub async fn warm_connections(api: &Api, n: usize) {
    let requests = (0..n).map(|_| api.healthz());
    let _ = futures::future::join_all(requests).await;
}

/// The answers of a simultaneous burst, by user index.
pub struct Burst {
    pub answers: Vec<(usize, Answer)>,
    /// From the barrier's release to the last answer.
    pub elapsed: Duration,
}

/// Every user sends `holdSeats` for `seat` at the same instant (one task per user, released
/// together by a barrier).
pub async fn hold_burst(
    api: &Api,
    users: &[User],
    event_id: &str,
    seat: &str,
) -> anyhow::Result<Burst> {
    let barrier = Arc::new(Barrier::new(users.len() + 1));
    let tasks: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let (api, user, barrier) = (api.clone(), user.clone(), barrier.clone());
            let (event_id, seat) = (event_id.to_owned(), seat.to_owned());
            tokio::spawn(async move {
                barrier.wait().await;
                (i, hold(&api, &user, &event_id, &[&seat]).await)
            })
        })
        .collect();
    barrier.wait().await;
    let started = Instant::now();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.context("a burst task panicked")?);
    }
    Ok(Burst {
        answers,
        elapsed: started.elapsed(),
    })
}

/// Up to `n` examples from `items`, for a check's detail.
pub fn examples<T: std::fmt::Display>(items: impl IntoIterator<Item = T>, n: usize) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut more = 0usize;
    for item in items {
        if out.len() < n {
            out.push(item.to_string());
        } else {
            more += 1;
        }
    }
    if more > 0 {
        out.push(format!("… {more} more"));
    }
    out.join(", ")
}
