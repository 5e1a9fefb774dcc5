//! `onsale-bench`: load scenarios against a running onsale server, each followed by a check
//! of the contract's invariants through the public API. See `BENCHMARKS.md`.

mod cli;
mod client;
mod ops;
mod report;
mod scenarios;
mod summary;
mod tokens;
mod verify;
mod ws;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use rand::Rng as _;

use crate::cli::{Cli, Scenario};
use crate::client::Api;
use crate::report::Report;
use crate::scenarios::Ctx;
use crate::tokens::Tokens;

/// Open files the bench asks for (thousands of sockets at once).
const NOFILE: u64 = 65_536;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("onsale-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the chosen scenario and prints its report; `Ok(false)` when a check failed.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let mut report: Report = match &cli.scenario {
        Scenario::Summary(args) => {
            print!("{}", summary::render(args)?);
            return Ok(true);
        }
        Scenario::HotSeat(args) => scenarios::hot_seat::run(&connect(&cli).await?, args).await?,
        Scenario::Distinct(args) => scenarios::distinct::run(&connect(&cli).await?, args).await?,
        Scenario::Mixed(args) => scenarios::mixed::run(&connect(&cli).await?, args).await?,
        Scenario::StormReaders(args) => {
            scenarios::storm_readers::run(&connect(&cli).await?, args).await?
        }
        Scenario::Fanout(args) => scenarios::fanout::run(&connect(&cli).await?, args).await?,
        Scenario::SeatmapRead(args) => {
            scenarios::seatmap_read::run(&connect(&cli).await?, args).await?
        }
        Scenario::WaitingRoom(args) => {
            scenarios::waiting_room::run(&connect(&cli).await?, args).await?
        }
    };
    report.label = cli.label;
    print!("{}", report.render());
    if cli.json {
        println!("{}", report.to_json());
    }
    Ok(report.ok())
}

/// Raises the open-file limit, prepares the client and token signer, and checks that the
/// server answers.
async fn connect(cli: &Cli) -> anyhow::Result<Ctx> {
    match rlimit::increase_nofile_limit(NOFILE) {
        Ok(limit) if limit < 4096 => eprintln!(
            "onsale-bench: warning: only {limit} open files allowed; large scenarios may fail"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("onsale-bench: warning: cannot raise the open-file limit: {e}"),
    }
    let secret = cli
        .jwt_secret
        .as_deref()
        .context("--jwt-secret (or JWT_SECRET) is required: the server's token secret")?;
    let ctx = Ctx {
        api: Api::new(&cli.url, Duration::from_secs(cli.timeout_secs))?,
        tokens: Tokens::new(secret),
        run_id: format!("{:06x}", rand::rng().random_range(0..0x100_0000u32)),
    };
    ctx.api
        .healthz()
        .await
        .with_context(|| format!("the server at {} does not answer", ctx.api.base()))?;
    Ok(ctx)
}
