//! `herald serve`.

use crate::config::{Config, LogFormat, Overrides};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// TOML config file (see herald.example.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Public listener (WebSocket, demo, SDK), default 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Admin listener (HTTP API, metrics), default 127.0.0.1:9090.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Redis URL; without one Herald runs embedded (one node, in memory).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let flags = Overrides {
        listen: a.listen,
        admin_listen: a.admin_listen,
        redis: a.redis,
    };
    let config = Config::load(a.config.as_deref(), &flags)?;
    init_tracing(&config);
    let listeners = crate::Listeners::bind(&config).await?;
    crate::run(config, listeners, crate::shutdown_signal())
        .await
        .context("herald serve")?;
    Ok(())
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
