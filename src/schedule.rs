//! Scheduled messages (SPEC §10.3): an envelope with `send_at` in the
//! future is held by the bus ([`crate::bus::Schedule`]: Redis, or memory
//! when embedded) and published at its time by whichever node claims it
//! first. Every node runs [`run`], which polls every
//! `schedule.poll_interval`, claims what is due in bounded batches, and
//! publishes it through the normal publish path.
//!
//! With Redis the claim is one Lua script that reads Redis's own `TIME`,
//! so no node's clock decides when a message is due, and a message claimed
//! by one node is leased away from the others (see ARCHITECTURE.md, "The
//! scheduled-message claim"). Embedded, the same logic runs on a [`Clock`]
//! a test can set
//! ([`crate::clock::Clock`]).

use crate::bus::{Bus, Due, Schedule as _, Store as _};
use crate::envelope::{self, Command};
use crate::metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Claims and publishes due messages every `interval`, at most `batch` per
/// claim (claiming again at once while batches come back full), until
/// `shutdown`. Runs on every node: which one publishes does not matter.
pub async fn run(
    bus: Arc<Bus>,
    metrics: Arc<Metrics>,
    interval: Duration,
    batch: usize,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if !bus.is_up() {
            continue;
        }
        loop {
            let due = match bus.claim_due(batch).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::debug!(error = %e, "scheduled messages not claimed");
                    break;
                }
            };
            let full = due.len() >= batch;
            // Expiry by the clock the message was due by.
            let now = match bus.now_ms().await {
                Ok(now) => now,
                Err(_) => crate::auth::unix_now_ms(),
            };
            for d in &due {
                publish_due(&bus, &metrics, d, now).await;
            }
            if !full {
                break;
            }
        }
    }
}

/// Publishes one claimed message and settles its claim. A message that no
/// longer checks (it expired while waiting) is settled without publishing.
async fn publish_due(bus: &Bus, metrics: &Metrics, d: &Due, now: u64) {
    let cmd = envelope::decode(d.json.as_bytes(), usize::MAX).and_then(|e| envelope::check(e, now));
    let outcome = match cmd {
        Ok(Command::Publish(p)) if p.expired(now) => "expired",
        Ok(cmd @ Command::Publish(_)) => match bus.publish(&cmd).await {
            Ok(_) => "published",
            Err(e) => {
                // The lease runs out and a node claims it again.
                tracing::warn!(msg_id = %d.id, error = %e, "scheduled message not published; retried after the lease");
                return;
            }
        },
        Ok(_) | Err(_) => {
            tracing::warn!(msg_id = %d.id, "stored scheduled message no longer checks; dropped");
            "invalid"
        }
    };
    metrics.scheduled(outcome);
    tracing::info!(msg_id = %d.id, outcome, "scheduled message due");
    if let Err(e) = bus.settle(d).await {
        tracing::warn!(msg_id = %d.id, error = %e, "scheduled claim not settled");
    }
}
