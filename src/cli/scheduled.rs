//! `herald scheduled`: the scheduled messages still waiting, soonest first.

use super::transport::Transport;

#[derive(clap::Args)]
pub struct Args {
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print the envelopes as JSON, one a line, instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    transport: Transport,
}

/// Unix milliseconds as RFC 3339 in UTC.
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| ms.to_string(), |t| t.to_string())
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let list = a.transport.scheduled(a.limit.clamp(1, 1000)).await?;
    for m in &list {
        if a.json {
            println!("{m}");
            continue;
        }
        let text = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let at = m.get("send_at").and_then(serde_json::Value::as_u64);
        println!(
            "{}\t{}\t{}\t{}",
            text("id"),
            at.map(rfc3339).unwrap_or_default(),
            text("kind"),
            if text("title").is_empty() {
                text("body")
            } else {
                text("title")
            }
        );
    }
    if list.is_empty() && !a.json {
        eprintln!("no scheduled messages");
    }
    Ok(())
}
