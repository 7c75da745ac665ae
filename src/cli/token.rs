//! `herald token`: mint a token for tests and demos.

use crate::auth::{Claims, Signer};
use crate::config::{Config, Overrides};
use anyhow::{Context, bail};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The user id (`sub`).
    #[arg(long)]
    sub: String,
    /// Comma-separated segments.
    #[arg(long, value_delimiter = ',')]
    segments: Vec<String>,
    /// An attribute, key=value (numbers and booleans typed); repeatable.
    #[arg(long = "attr", value_name = "K=V")]
    attrs: Vec<String>,
    /// Lifetime, e.g. 1h.
    #[arg(long, default_value = "1h", value_parser = super::parse_duration)]
    ttl: std::time::Duration,
    /// Config file holding auth.hs256_secret (HERALD_AUTH__HS256_SECRET works too).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Without a configured key: ask this dev-mode node's /dev/token.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let config = Config::load(a.config.as_deref(), &Overrides::default())?;
    let attrs = crate::auth::parse_attrs(&a.attrs.join(",")).map_err(anyhow::Error::msg)?;
    if let Some(secret) = &config.auth.hs256_secret {
        let claims = Claims {
            sub: a.sub,
            exp: crate::auth::unix_now() + a.ttl.as_secs(),
            iat: Some(crate::auth::unix_now()),
            segments: (!a.segments.is_empty()).then_some(a.segments),
            attrs: (!attrs.is_empty()).then_some(attrs),
        };
        println!("{}", Signer::hs256(secret).mint(&claims)?);
        return Ok(());
    }
    if config.auth.has_key() {
        bail!("herald token mints HS256 only; sign RS256/ES256 tokens with your private key");
    }
    // Dev mode: the running node holds the generated secret.
    let base = a.url.trim_end_matches('/');
    let res = reqwest::Client::new()
        .get(format!("{base}/dev/token"))
        .query(&[
            ("sub", a.sub.as_str()),
            ("segments", &a.segments.join(",")),
            ("attrs", &a.attrs.join(",")),
            ("ttl", &humantime::format_duration(a.ttl).to_string()),
        ])
        .send()
        .await
        .with_context(|| {
            format!("no auth.hs256_secret configured, and no dev-mode node answers at {base}")
        })?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{base}/dev/token answered {status}: {}", text.trim());
    }
    let body: serde_json::Value =
        serde_json::from_str(&text).context("unexpected /dev/token answer")?;
    match body.get("token").and_then(|t| t.as_str()) {
        Some(token) => println!("{token}"),
        None => bail!("unexpected /dev/token answer"),
    }
    Ok(())
}
