//! The `onsale` command line.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "onsale",
    version,
    about = "A GraphQL server for the moment tickets go on sale"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run migrations, seed the demo event if the database is empty, serve (the default).
    Serve,
    /// Run migrations and exit.
    Migrate,
    /// Print a signed JWT for local use (signed with JWT_SECRET).
    Token {
        /// The user id (`sub` claim).
        #[arg(long)]
        sub: String,
        /// Give the token the admin role.
        #[arg(long)]
        admin: bool,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Print the GraphQL SDL (what schema.graphql holds).
    ExportSchema,
}
