//! The `herald` command line (SPEC §8): one file per command. Errors end the
//! process with one line on stderr and a non-zero status.

mod broadcast;
mod publish;
mod retract;
mod scheduled;
mod schema;
mod serve;
mod token;
mod transport;
pub mod validate;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Real-time gateway for in-app messages"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway node (embedded without Redis, clustered with it).
    Serve(serve::Args),
    /// Publish a message to an audience.
    Publish(publish::Args),
    /// Raise an incident banner: sticky, urgent, to everyone. Prints its id.
    Broadcast(broadcast::Args),
    /// Take a message off every screen and out of the sticky set (or cancel it, while scheduled).
    Retract(retract::Args),
    /// List scheduled messages still waiting for their time.
    Scheduled(scheduled::Args),
    /// Mint a token for tests and demos with the configured HS256 key (or,
    /// in dev mode, from a running node's /dev/token).
    Token(token::Args),
    /// Check envelope and campaign files as a node would; say what is wrong.
    Validate(validate::Args),
    /// Print the JSON Schema of the envelope or the campaign, or the admin API's OpenAPI.
    Schema(schema::Args),
}

/// Parses the command line and runs it; returns the process exit status.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(a) => serve::run(a).await,
            Command::Publish(a) => publish::run(a).await,
            Command::Broadcast(a) => broadcast::run(a).await,
            Command::Retract(a) => retract::run(a).await,
            Command::Scheduled(a) => scheduled::run(a).await,
            Command::Token(a) => token::run(a).await,
            Command::Validate(a) => validate::run(a).await,
            Command::Schema(a) => schema::run(a).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `30m`, `1h`, `45s`: a duration with its unit.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30s, 10m, 1h)"))
}
