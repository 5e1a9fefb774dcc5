use clap::Parser;

use onsale::cli::{Cli, Command};
use onsale::config::Config;
use onsale::startup::Application;

/// mimalloc instead of the system allocator: a request allocates and frees many small
/// buffers, and glibc's malloc and free were about a sixth of the server's CPU in a hot-seat
/// profile (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stack of every runtime thread: requests are measured before anything recursive runs
/// (`graphql::limits`), and this leaves that recursion a wide margin, so the limits, not the
/// stack, decide what is refused.
const THREAD_STACK_BYTES: usize = 16 << 20;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    if let Some(Command::ExportSchema) = cli.command {
        print!("{}", onsale::graphql::sdl());
        return Ok(());
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("onsale: invalid configuration: {err}");
            std::process::exit(2);
        }
    };
    match cli.command {
        Some(Command::Token { sub, admin, ttl }) => {
            if config.jwt_secret_generated {
                eprintln!(
                    "warning: JWT_SECRET is unset; this token is signed with a throwaway secret no server shares"
                );
            }
            let jwt = onsale::auth::Jwt::new(&config.jwt_secret, config.jwt_leeway_secs)
                .with_issuer_audience(config.jwt_issuer.clone(), config.jwt_audience.clone());
            println!("{}", jwt.issue(&sub, admin, ttl)?);
        }
        Some(Command::Migrate) => {
            onsale::telemetry::init_logging(config.log_format);
            let db = onsale::db::Db::connect(
                &config.database_url,
                config.db_pool_max,
                config.lock_timeout,
                config.db_write_concurrency,
            )
            .await?;
            onsale::startup::migrate(&db).await?;
            tracing::info!("migrations applied");
        }
        Some(Command::ExportSchema) => unreachable!("handled above"),
        Some(Command::Serve) | None => {
            let telemetry = match onsale::telemetry::init(config.log_format) {
                Ok(telemetry) => telemetry,
                Err(err) => {
                    // The exporter's message names the variable it could not use.
                    eprintln!("onsale: invalid configuration: {err}");
                    std::process::exit(2);
                }
            };
            let served = match Application::build(config).await {
                Ok(app) => app.run_until_stopped().await.map_err(anyhow::Error::from),
                Err(err) => Err(err),
            };
            // Spans of the last requests (and of a failed start) are still queued.
            telemetry.shutdown().await;
            served?;
        }
    }
    Ok(())
}
