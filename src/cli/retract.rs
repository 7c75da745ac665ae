//! `herald retract ID`.

use super::transport::Transport;
use crate::envelope::Command;

#[derive(clap::Args)]
pub struct Args {
    /// The id printed by publish or broadcast.
    id: String,
    #[command(flatten)]
    transport: Transport,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    if a.id.is_empty() || a.id.len() > crate::envelope::MAX_ID {
        anyhow::bail!("id: must be 1 to {} bytes", crate::envelope::MAX_ID);
    }
    let cmd = Command::Retract {
        except: None,
        id: a.id.clone(),
        pos: None,
    };
    a.transport.send(&cmd, "").await?;
    println!("{}", a.id);
    Ok(())
}
