//! `herald validate FILE…`: checks envelope and campaign files exactly as a
//! node would (a file with a `trigger` is a campaign), and says what is
//! wrong, field by field.

use crate::campaigns::{Campaign, Compiled};
use crate::envelope::{self, Command};
use anyhow::bail;

#[derive(clap::Args)]
pub struct Args {
    /// JSON files: publish envelopes, or campaigns (objects with a "trigger").
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
}

/// What a file holds, once checked.
pub fn check_text(text: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    // An array (a `campaigns.file`) is checked element by element.
    if let serde_json::Value::Array(items) = &value {
        let mut kinds = Vec::new();
        for (i, item) in items.iter().enumerate() {
            kinds.push(check_text(&item.to_string()).map_err(|e| format!("[{i}]: {e}"))?);
        }
        return Ok(format!("{} items: {}", items.len(), kinds.join(", ")));
    }
    if value.get("trigger").is_some() {
        let c: Campaign = serde_json::from_value(value).map_err(|e| format!("campaign: {e}"))?;
        let c = Compiled::new(c, None).map_err(|e| format!("campaign {e}"))?;
        return Ok(format!("campaign {:?}", c.campaign.id));
    }
    // As the API takes it: what only Herald sets is refused.
    let checked = envelope::decode(text.as_bytes(), 64 * 1024).and_then(|e| {
        envelope::from_publisher(&e)?;
        envelope::check(e, crate::auth::unix_now_ms())
    });
    match checked.map_err(|e| format!("envelope {e}"))? {
        Command::Publish(p) => {
            let kind = serde_json::to_value(p.envelope.kind).unwrap_or_default();
            let when = p
                .send_later(crate::auth::unix_now_ms())
                .map(|at| format!(", scheduled for {}", super::scheduled::rfc3339(at)))
                .unwrap_or_default();
            Ok(format!(
                "envelope, kind {}{when}",
                kind.as_str().unwrap_or("?")
            ))
        }
        Command::Retract { id, .. } => Ok(format!("retract {id:?}")),
        Command::Disconnect { .. } => Ok("disconnect".into()),
        Command::Campaign { id } => Ok(format!("campaign change {id:?}")),
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let mut failed = 0;
    for file in &a.files {
        let result = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| check_text(&t));
        match result {
            Ok(what) => println!("{}: ok ({what})", file.display()),
            Err(why) => {
                failed += 1;
                println!("{}: {why}", file.display());
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} files invalid", a.files.len());
    }
    Ok(())
}
