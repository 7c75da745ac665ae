//! Durable publishing: the `{prefix}:ingress` stream, consumed by every node
//! in the consumer group `herald` (SPEC §7).
//!
//! Read, publish (through the same Lua step as the API: stored, in the
//! history, published), then acknowledge and delete; an entry whose node
//! died before acknowledging is claimed by another after `claim_after`.
//! Consumption is at least once; an entry without an `id` gets
//! `ingress-{entry id}`, so a redelivered entry carries the same id and nodes
//! deliver it once.

use super::BusError;
use super::conn::Conn;
use super::{RedisBus, unavailable};
use crate::envelope::{self, Command, Envelope};
use crate::error;
use crate::logs::Repeated;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const GROUP: &str = "herald";
const BATCH: usize = 100;
const BLOCK_MS: u64 = 1000;

impl RedisBus {
    /// Consumes the ingress stream until `shutdown`.
    pub async fn consume_ingress(
        self: Arc<Self>,
        claim_after: Duration,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                r = self.ingress_session(claim_after) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, retry_in = ?backoff, "ingress consumer paused");
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// A dedicated connection: the blocking read must not hold up the
    /// node's shared command connection.
    async fn ingress_session(&self, claim_after: Duration) -> Result<(), BusError> {
        let mut conn = self
            .backend()
            .dedicated(Duration::from_millis(BLOCK_MS + 2000))
            .await
            .map_err(unavailable)?;
        let key = self.keys().ingress();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(unavailable(e));
        }
        let mut last_claim = tokio::time::Instant::now();
        loop {
            if last_claim.elapsed() >= claim_after / 2 {
                last_claim = tokio::time::Instant::now();
                let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(&key)
                    .arg(GROUP)
                    .arg(self.node())
                    .arg(claim_after.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(BATCH)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                if !claimed.claimed.is_empty() {
                    tracing::info!(
                        entries = claimed.claimed.len(),
                        "claimed ingress entries of a silent node"
                    );
                }
                self.ingest_all(&mut conn, &key, claimed.claimed).await?;
            }
            let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(self.node())
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(BLOCK_MS.min(claim_after.as_millis() as u64 / 2).max(10))
                .arg("STREAMS")
                .arg(&key)
                .arg(">")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let entries = read
                .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                .unwrap_or_default();
            self.ingest_all(&mut conn, &key, entries).await?;
        }
    }

    async fn ingest_all(
        &self,
        conn: &mut Conn,
        key: &str,
        entries: Vec<StreamId>,
    ) -> Result<(), BusError> {
        for entry in entries {
            let payload: Option<String> = entry.get("e");
            match self.ingest(&entry.id, payload.as_deref()).await {
                Ok(()) => {}
                // Redis is gone: leave it pending, to be read again.
                Err(e) => return Err(e),
            }
            let () = redis::pipe()
                .cmd("XACK")
                .arg(key)
                .arg(GROUP)
                .arg(&entry.id)
                .ignore()
                .cmd("XDEL")
                .arg(key)
                .arg(&entry.id)
                .ignore()
                .query_async(conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Publishes one entry; a refused one goes to the dead stream (and is
    /// acknowledged: retrying cannot fix it).
    async fn ingest(&self, entry_id: &str, payload: Option<&str>) -> Result<(), BusError> {
        let checked = payload
            .ok_or_else(|| {
                error::FieldError::new("e", "the entry has no field e holding the envelope")
            })
            .and_then(|text| {
                let mut e: Envelope =
                    serde_json::from_str(text).map_err(error::FieldError::from_serde)?;
                envelope::from_publisher(&e)?;
                if e.id.is_none() {
                    e.id = Some(format!("ingress-{entry_id}"));
                }
                envelope::check(e, crate::auth::unix_now_ms())
            });
        // A send_at in the future is held until then (SPEC §10.3).
        let later = match &checked {
            Ok(Command::Publish(p)) if p.envelope.send_at.is_some() => {
                p.send_later(self.now_ms().await?)
            }
            _ => None,
        };
        let checked = match (checked, later) {
            (Ok(Command::Publish(p)), Some(at)) => match self.schedule(&p, at).await {
                Ok(()) => {
                    tracing::debug!(entry = entry_id, msg_id = p.id(), "ingress entry scheduled");
                    return Ok(());
                }
                Err(BusError::ScheduleFull(n)) => Err(error::FieldError::new(
                    "send_at",
                    format!("{n} scheduled messages are waiting already"),
                )),
                Err(e) => return Err(e),
            },
            (checked, _) => checked,
        };
        match checked {
            Ok(cmd) => {
                self.publish(&cmd).await?;
                tracing::debug!(entry = entry_id, "ingress entry published");
                Ok(())
            }
            Err(e) => {
                self.metrics()
                    .invalid_envelopes
                    .get_or_create(&crate::metrics::Source { source: "ingress" })
                    .inc();
                static REFUSED: Repeated = Repeated::new("ingress envelope refused");
                if REFUSED.first(|| format!("entry={entry_id} error={e}")) {
                    tracing::warn!(entry = entry_id, error = %e, "ingress envelope refused");
                }
                self.record_dead(
                    entry_id,
                    &e.to_string(),
                    "ingress",
                    payload.unwrap_or_default(),
                )
                .await;
                Ok(())
            }
        }
    }
}
