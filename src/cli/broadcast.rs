//! `herald broadcast`: the SRE shortcut. A sticky, urgent banner to everyone.

use super::transport::Transport;
use crate::envelope::{Envelope, Kind, Priority};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    title: String,
    #[arg(long)]
    body: Option<String>,
    /// Styling hint for the banner, sent as theme.severity.
    #[arg(long, value_enum, default_value = "warning")]
    severity: Severity,
    /// Time to live, e.g. 30m; without it the banner stays until retracted.
    #[arg(long, value_parser = super::parse_duration)]
    ttl: Option<std::time::Duration>,
    /// Message id (generated when absent). To update the banner, broadcast
    /// again: the new one replaces it (collapse key "incident").
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    transport: Transport,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let severity = format!("{:?}", a.severity).to_lowercase();
    let mut theme = serde_json::Map::new();
    theme.insert("severity".into(), severity.into());
    let env = Envelope {
        id: a.id,
        to: Some(serde_json::json!("all")),
        kind: Some(Kind::Banner),
        priority: Priority::Urgent,
        title: Some(a.title),
        body: a.body,
        theme: Some(theme),
        sticky: true,
        collapse_key: Some("incident".into()),
        ttl_s: a.ttl.map(|t| t.as_secs().max(1)),
        ..Envelope::default()
    };
    super::publish::send(env, &a.transport).await
}
