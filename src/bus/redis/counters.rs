//! Campaigns as stored (`{p}:campaigns`) and their counters: frequency
//! windows, `until` markers and the global hourly cap, checked and counted
//! by one script.

use super::{RedisBus, unavailable};
use crate::bus::BusError;
use crate::bus::counters::{Limits, Verdict};
use crate::envelope::Command;
use redis::AsyncCommands;
use std::sync::LazyLock;

static CAMPAIGN: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/campaign.lua")));

impl RedisBus {
    pub(super) async fn campaign_store(&self, id: &str, json: &str) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let () = conn
            .hset(self.keys.campaigns(), id, json)
            .await
            .map_err(unavailable)?;
        self.publish(&Command::Campaign { id: id.to_owned() })
            .await?;
        Ok(())
    }

    pub(super) async fn campaign_remove(&self, id: &str) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn
            .hdel(self.keys.campaigns(), id)
            .await
            .map_err(unavailable)?;
        // Its assignments go with it; its counts stay until they expire.
        let _: i64 = conn
            .del(&[self.keys.exposures(id), self.keys.conversions(id)])
            .await
            .map_err(unavailable)?;
        self.publish(&Command::Campaign { id: id.to_owned() })
            .await?;
        Ok(())
    }

    pub(super) async fn campaign_check(&self, l: &Limits<'_>) -> Result<Verdict, BusError> {
        let mut conn = self.conn.clone();
        let code: i64 = CAMPAIGN
            .key(self.keys.data())
            .arg(l.campaign)
            .arg(l.user)
            .arg(l.msg_id)
            .arg(crate::auth::unix_now_ms())
            .arg(l.max.unwrap_or(0))
            .arg(l.per_s.unwrap_or(0))
            .arg(if l.until { "1" } else { "0" })
            .arg(l.global_cap_per_hour)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Verdict::from_code(code))
    }

    pub(super) async fn campaign_done(&self, campaign: &str, user: &str) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let () = conn
            .set(self.keys.freq_done(campaign, user), 1)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Every campaign as stored, for the node to apply at (re)connect.
    pub(super) async fn load_campaigns(&self) -> redis::RedisResult<()> {
        let stored: Vec<(String, String)> =
            self.conn.clone().hgetall(self.keys.campaigns()).await?;
        self.campaigns.replace_all(stored);
        Ok(())
    }

    /// Reads again the campaigns changed anywhere in the cluster since the
    /// last call (see [`CampaignReloads`]).
    pub(super) async fn reload_campaigns(&self) -> redis::RedisResult<()> {
        let (all, ids) = self.reloads.take();
        if all {
            return self.load_campaigns().await;
        }
        for id in ids {
            let stored: Option<String> = self.conn.clone().hget(self.keys.campaigns(), &id).await?;
            self.campaigns.changed(&id, stored.as_deref());
        }
        Ok(())
    }

    /// A change notice for `id` arrived: it is read again soon.
    pub(super) fn campaign_changed(&self, id: &str) {
        self.reloads.mark(id);
    }
}

#[cfg(test)]
mod tests {
    use crate::bus::counters::{Limits, Verdict};
    use crate::bus::redis::testing::{TestRedis, fixture};

    #[tokio::test]
    async fn a_display_is_checked_and_counted_against_every_limit() {
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        let once = Limits {
            campaign: "c",
            user: "a",
            msg_id: "m",
            max: Some(1),
            per_s: None,
            until: true,
            global_cap_per_hour: 2,
        };
        assert_eq!(
            f.bus.campaign_check(&once).await.expect("checked"),
            Verdict::Allowed
        );
        assert_eq!(
            f.bus.campaign_check(&once).await.expect("checked"),
            Verdict::Frequency
        );
        // The hourly cap counts displays (by message id) across campaigns.
        let other = Limits {
            campaign: "d",
            msg_id: "m2",
            max: None,
            until: false,
            ..once.clone()
        };
        assert_eq!(
            f.bus.campaign_check(&other).await.expect("checked"),
            Verdict::Allowed
        );
        let third = Limits {
            msg_id: "m3",
            ..other.clone()
        };
        assert_eq!(
            f.bus.campaign_check(&third).await.expect("checked"),
            Verdict::GlobalCap
        );
        f.bus.campaign_done("e", "a").await.expect("done");
        let until = Limits {
            campaign: "e",
            max: None,
            global_cap_per_hour: 0,
            ..once.clone()
        };
        assert_eq!(
            f.bus.campaign_check(&until).await.expect("checked"),
            Verdict::Until
        );
        // Another user is not held back: positive control.
        let b = Limits { user: "b", ..once };
        assert_eq!(
            f.bus.campaign_check(&b).await.expect("checked"),
            Verdict::Allowed
        );
    }

    #[tokio::test]
    async fn stored_campaigns_reach_the_sink_all_at_once_or_one_by_one() {
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        f.bus
            .campaign_store("c1", r#"{"id":"c1"}"#)
            .await
            .expect("stored");
        f.bus.load_campaigns().await.expect("loaded");
        assert_eq!(
            f.sink.all.lock().expect("lock").last().cloned(),
            Some(vec![("c1".to_owned(), r#"{"id":"c1"}"#.to_owned())])
        );
        f.bus.campaign_remove("c1").await.expect("removed");
        f.bus.campaign_changed("c1");
        f.bus.reload_campaigns().await.expect("reloaded");
        assert_eq!(
            f.sink.changed.lock().expect("lock").as_slice(),
            [("c1".to_owned(), None)]
        );
    }
}
