//! `herald publish`: build an envelope from flags (or a JSON file), check it
//! as a node would, send it.

use super::transport::{Transport, report};
use crate::envelope::{self, Command, Envelope, Kind, Priority};
use anyhow::{Context, bail};
use std::io::Read;

#[derive(clap::Args)]
pub struct Args {
    /// Audience: all, user:ID[,ID…], segment:NAME[,…] or where:EXPR.
    #[arg(long)]
    to: Option<String>,
    /// banner, modal, card, toast, tooltip, fullscreen or custom.
    #[arg(long, value_parser = parse_kind)]
    kind: Option<Kind>,
    #[arg(long)]
    title: Option<String>,
    #[arg(long)]
    body: Option<String>,
    /// low, normal, high or urgent.
    #[arg(long, value_parser = parse_priority)]
    priority: Option<Priority>,
    /// Time to live, e.g. 30m.
    #[arg(long, value_parser = super::parse_duration)]
    ttl: Option<std::time::Duration>,
    /// Keep it active for sessions that connect later, until it expires or is retracted.
    #[arg(long)]
    sticky: bool,
    /// Message id (generated when absent).
    #[arg(long)]
    id: Option<String>,
    /// Publish at this time instead of now, RFC 3339 (e.g. 2026-12-24T09:00:00Z); at most 30 days ahead.
    #[arg(long, value_name = "TIME", value_parser = parse_at)]
    at: Option<u64>,
    /// A whole envelope from a file, or - for stdin; flags override its fields.
    #[arg(long, value_name = "FILE|-")]
    json: Option<String>,
    #[command(flatten)]
    transport: Transport,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| "expected banner, modal, card, toast, tooltip, fullscreen or custom".into())
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| "expected low, normal, high or urgent".into())
}

/// An RFC 3339 time (`2026-12-24T09:00:00Z`, `2026-12-24T10:00:00+01:00`)
/// to unix milliseconds.
pub fn parse_at(s: &str) -> Result<u64, String> {
    let t: jiff::Timestamp = s
        .parse()
        .map_err(|e| format!("{e} (write an RFC 3339 time, e.g. 2026-12-24T09:00:00Z)"))?;
    u64::try_from(t.as_millisecond()).map_err(|_| "a time before 1970".to_owned())
}

/// `all`, `user:a,b`, `segment:x,y`, `where:EXPR` to the envelope's `to`.
pub fn parse_to(s: &str) -> anyhow::Result<serde_json::Value> {
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    };
    Ok(match s.split_once(':') {
        None if s == "all" => serde_json::json!("all"),
        Some(("user" | "users", v)) => serde_json::json!({ "users": list(v) }),
        Some(("segment" | "segments", v)) => serde_json::json!({ "segments": list(v) }),
        Some(("where", v)) => serde_json::json!({ "where": v }),
        _ => bail!("--to: expected all, user:ID[,ID…], segment:NAME[,…] or where:EXPR, got {s:?}"),
    })
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let mut env: Envelope = match a.json.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the envelope from stdin")?;
            serde_json::from_str(&s).context("the envelope on stdin")?
        }
        Some(path) => {
            let s = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            serde_json::from_str(&s).with_context(|| format!("the envelope in {path}"))?
        }
        None => Envelope::default(),
    };
    if let Some(to) = &a.to {
        env.to = Some(parse_to(to)?);
    }
    env.kind = a.kind.or(env.kind);
    env.title = a.title.or(env.title);
    env.body = a.body.or(env.body);
    env.priority = a.priority.unwrap_or(env.priority);
    env.id = a.id.or(env.id);
    env.sticky |= a.sticky;
    env.send_at = a.at.or(env.send_at);
    if let Some(ttl) = a.ttl {
        env.ttl_s = Some(ttl.as_secs().max(1));
    }
    send(env, &a.transport).await
}

/// Checks the envelope as a node would, then sends it and prints its id.
pub async fn send(env: Envelope, transport: &Transport) -> anyhow::Result<()> {
    envelope::from_publisher(&env)?;
    let cmd = envelope::check(env, crate::auth::unix_now_ms())?;
    let Command::Publish(p) = &cmd else {
        bail!("use herald retract to retract a message");
    };
    let json = p.to_json();
    let (id, reach) = transport.send(&cmd, &json).await?;
    report(id.as_deref().unwrap_or(p.id()), reach);
    if let Some(at) = p.send_later(crate::auth::unix_now_ms()) {
        eprintln!("scheduled for {}", super::scheduled::rfc3339(at));
    }
    Ok(())
}
