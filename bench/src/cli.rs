//! Command-line arguments: where the server is, how to sign tokens, and which scenario to run.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Load scenarios for an onsale server, each checked against the contract's invariants.
///
/// Exit codes: 0 all checks passed, 1 an invariant was violated (or a request failed with
/// `INTERNAL`, a 5xx or a transport error), 2 the benchmark itself could not run.
#[derive(Debug, Parser)]
#[command(name = "onsale-bench", version)]
pub struct Cli {
    /// Base URL of the server (without `/graphql`).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// The server's `JWT_SECRET`; the bench signs its own HS256 tokens with it.
    #[arg(long, global = true, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Also print a one-line JSON summary (the last line of the output).
    #[arg(long, global = true)]
    pub json: bool,

    /// A free-form label copied into the summary (e.g. the server configuration).
    #[arg(long, global = true)]
    pub label: Option<String>,

    /// Per-request timeout in seconds; a request that takes longer counts as `TIMEOUT`.
    #[arg(long, global = true, default_value_t = 30)]
    pub timeout_secs: u64,

    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N distinct users send `holdSeats` for the same seat at the same instant.
    HotSeat(HotSeatArgs),
    /// C workers hold different seats, one seat per hold, until seats or time run out.
    Distinct(DistinctArgs),
    /// An on-sale mix of seat-map reads, holds, confirms and releases.
    Mixed(MixedArgs),
    /// Seat-map latency of a few readers alone, then while hot-seat storms run.
    StormReaders(StormReadersArgs),
    /// Time from a hold's HTTP response to its `seatChanges` delivery at N subscribers.
    Fanout(FanoutArgs),
    /// Many concurrent readers of one large seat map.
    SeatmapRead(SeatmapReadArgs),
    /// A waiting room's admissions and holds, then queued (`requestSeats`) against direct
    /// (`holdSeats`) throughput. Needs the server to run with `REDIS_URL`.
    WaitingRoom(WaitingRoomArgs),
    /// Prints a Markdown table from the `--json` lines in the given files (no server needed).
    Summary(SummaryArgs),
}

#[derive(Debug, Args)]
pub struct HotSeatArgs {
    /// Distinct users, one request each, all at once.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Seats in the event created for the run (the first one is contended).
    #[arg(long, default_value_t = 100)]
    pub seats: usize,
}

#[derive(Debug, Args)]
pub struct DistinctArgs {
    /// Seats in the event: every hold takes the next unused one.
    #[arg(long, default_value_t = 2000)]
    pub seats: usize,
    /// Concurrent workers (each one request at a time).
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Stop after this long even if seats are left.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// A second instance of the same server (same database and Redis): worker i sends its
    /// holds to `--url` when i is even, to this URL when i is odd; checks go through both.
    #[arg(long)]
    pub also_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct MixedArgs {
    /// How long the mix runs.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Concurrent workers (each one request at a time).
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Seats in the event.
    #[arg(long, default_value_t = 2000)]
    pub seats: usize,
    /// The first this many seats are popular: 30% of requested seats come from them.
    #[arg(long, default_value_t = 20)]
    pub hot_seats: usize,
}

#[derive(Debug, Args)]
pub struct StormReadersArgs {
    /// Users in each hot-seat storm round.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Concurrent `seatMap` readers, measured in both phases.
    #[arg(long, default_value_t = 20)]
    pub readers: usize,
    /// Length of the baseline phase and of the storm phase.
    #[arg(long, default_value_t = 3)]
    pub phase_secs: u64,
    /// Seats in the event (the size of every seat map read).
    #[arg(long, default_value_t = 1000)]
    pub seats: usize,
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// WebSocket subscribers to `seatChanges`.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Seat changes to make (one hold of one fresh seat each).
    #[arg(long, default_value_t = 50)]
    pub changes: usize,
    /// Changes made concurrently in each step.
    #[arg(long, default_value_t = 1)]
    pub burst: usize,
    /// After each step, wait at most this long for every subscriber to receive it.
    #[arg(long, default_value_t = 2000)]
    pub wait_ms: u64,
    /// WebSocket handshakes in flight at once while subscribing.
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
}

#[derive(Debug, Args)]
pub struct SeatmapReadArgs {
    /// Seats in the event.
    #[arg(long, default_value_t = 10_000)]
    pub seats: usize,
    /// Concurrent readers (each one request at a time).
    #[arg(long, default_value_t = 200)]
    pub readers: usize,
    /// How long the readers run.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// How readers ask: plain POST, POST with gzip, or GET with a persisted query and ETag.
    #[arg(long, value_enum, default_value = "post")]
    pub form: crate::client::ReadForm,
    /// Seat changes per second made meanwhile (a hold of one fresh seat each, until about
    /// 2 s before the end), each of which every reader must see within 1 s; 0: none.
    #[arg(long, default_value_t = 0)]
    pub changes_per_sec: u32,
}

#[derive(Debug, Args)]
pub struct WaitingRoomArgs {
    /// Distinct users who join the queue before the opening, then hold one seat each.
    #[arg(long, default_value_t = 500)]
    pub users: usize,
    /// The room's `admitPerSecond`.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Seats in the waiting-room event (default: one per user).
    #[arg(long)]
    pub seats: Option<usize>,
    /// Seconds from configuring the room to its opening (everyone joins in between).
    #[arg(long, default_value_t = 2)]
    pub opens_in_secs: u64,
    /// Concurrent requests in the queued-against-direct comparison.
    #[arg(long, default_value_t = 20)]
    pub concurrency: usize,
    /// Requests in the queued-against-direct comparison (default: min(users, 300)).
    #[arg(long)]
    pub requests: Option<usize>,
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Files holding `--json` summary lines (other lines are ignored).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}
