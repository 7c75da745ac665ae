//! Presence and liveness: this node's presence hash, its heartbeat (a task
//! of its own), forgetting dead nodes, and the cluster's counters.

use super::{RedisBus, unavailable};
use crate::bus::{BusError, Presence};
use redis::AsyncCommands;
use std::future::Future;
use std::sync::Arc;

impl RedisBus {
    /// Sessions of `user` on live nodes, from their presence hashes.
    pub async fn presence(&self, user: &str) -> Result<Presence, BusError> {
        let mut conn = self.conn.clone();
        let live: Vec<String> = conn
            .zrangebyscore(self.keys.nodes(), self.live_cutoff(), "+inf")
            .await
            .map_err(unavailable)?;
        let mut pipe = redis::pipe();
        for node in &live {
            pipe.hget(self.keys.node_presence(node), user);
        }
        let counts: Vec<Option<u64>> = if live.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await.map_err(unavailable)?
        };
        let sessions = counts.into_iter().flatten().sum();
        Ok(Presence {
            user: user.to_owned(),
            online: sessions > 0,
            sessions,
        })
    }

    /// Nodes unseen for three heartbeats are dead for presence and stats.
    fn live_cutoff(&self) -> u64 {
        crate::auth::unix_now_ms().saturating_sub(3 * self.heartbeat.as_millis() as u64)
    }

    /// How long this node's presence hash lives without a heartbeat.
    fn presence_ttl_ms(&self) -> u64 {
        3 * self.heartbeat.as_millis() as u64
    }

    /// Marks this node alive every heartbeat while the bus is up, in a task
    /// of its own: a subscriber busy delivering must not make the cluster
    /// see this node, and its users, as gone.
    pub async fn beat(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            if self.up()
                && let Err(e) = self.heartbeat().await
            {
                tracing::debug!(error = %e, "heartbeat not written");
            }
        }
    }

    pub(super) async fn write_presence(
        &self,
        users: impl Iterator<Item = Arc<str>>,
    ) -> Result<(), redis::RedisError> {
        let key = self.keys.node_presence(&self.node);
        let mut pipe = redis::pipe();
        let mut any = false;
        for user in users {
            any = true;
            let n = self.hub.user_sessions(&user);
            if n > 0 {
                pipe.hset(&key, &*user, n).ignore();
            } else {
                pipe.hdel(&key, &*user).ignore();
            }
        }
        if any {
            pipe.pexpire(&key, self.presence_ttl_ms() as i64).ignore();
            let mut conn = self.conn.clone();
            let () = pipe.query_async(&mut conn).await?;
        }
        Ok(())
    }

    /// Marks this node alive, publishes its counters for cluster stats,
    /// keeps its presence hash, and forgets nodes silent for three
    /// heartbeats (their presence hashes expire by themselves).
    pub(super) async fn heartbeat(&self) -> Result<(), redis::RedisError> {
        let stats = serde_json::json!({
            "sessions": self.hub.session_count(),
            "users": self.hub.user_count(),
            "deliveries": self.metrics.deliveries.get(),
        });
        let mut conn = self.conn.clone();
        let (dead,): (Vec<String>,) = redis::pipe()
            .zadd(self.keys.nodes(), &self.node, crate::auth::unix_now_ms())
            .ignore()
            .hset(self.keys.node_stats(), &self.node, stats.to_string())
            .ignore()
            .pexpire(
                self.keys.node_presence(&self.node),
                self.presence_ttl_ms() as i64,
            )
            .ignore()
            .cmd("ZRANGEBYSCORE")
            .arg(self.keys.nodes())
            .arg("-inf")
            .arg(format!("({}", self.live_cutoff()))
            .query_async(&mut conn)
            .await?;
        if !dead.is_empty() {
            tracing::info!(nodes = ?dead, "forgetting nodes silent for three heartbeats");
            let () = redis::pipe()
                .zrem(self.keys.nodes(), &dead)
                .ignore()
                .hdel(self.keys.node_stats(), &dead)
                .ignore()
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Every live node's counters (as of its last heartbeat) and their sums.
    pub async fn cluster_stats(&self) -> Result<serde_json::Value, BusError> {
        let mut conn = self.conn.clone();
        let live: Vec<String> = conn
            .zrangebyscore(self.keys.nodes(), self.live_cutoff(), "+inf")
            .await
            .map_err(unavailable)?;
        let mut nodes = serde_json::Map::new();
        let (mut sessions, mut deliveries) = (0u64, 0u64);
        if !live.is_empty() {
            let stats: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(self.keys.node_stats())
                .arg(&live)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for (node, s) in live.iter().zip(stats) {
                let v: serde_json::Value = s
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default();
                sessions += v["sessions"].as_u64().unwrap_or(0);
                deliveries += v["deliveries"].as_u64().unwrap_or(0);
                nodes.insert(node.clone(), v);
            }
        }
        Ok(serde_json::json!({ "nodes": nodes, "sessions": sessions, "deliveries": deliveries }))
    }
}

#[cfg(test)]
mod tests {
    use crate::bus::redis::testing::{TestRedis, fixture, identity};
    use redis::Commands;
    use std::sync::Arc;

    #[tokio::test]
    async fn presence_is_counted_on_live_nodes_and_dead_ones_are_forgotten() {
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let _s1 = f.hub.register(identity("ada"), ip).expect("registered");
        let _s2 = f.hub.register(identity("ada"), ip).expect("registered");
        f.bus.heartbeat().await.expect("beat");
        f.bus
            .write_presence([Arc::from("ada")].into_iter())
            .await
            .expect("written");
        let p = f.bus.presence("ada").await.expect("read");
        assert_eq!((p.online, p.sessions), (true, 2));
        assert!(!f.bus.presence("bob").await.expect("read").online);
        let mut r = redis.sync().expect("conn");
        let ttl: i64 = r.pttl("herald:nodepresence:n1").expect("PTTL");
        assert!(
            ttl > 0,
            "the presence hash expires with the heartbeat: {ttl}"
        );
        // A node silent for longer than three heartbeats: not counted, and
        // forgotten at the next heartbeat of a live one.
        let () = r.zadd("herald:nodes", "gone", 1).expect("ZADD");
        let () = r.hset("herald:nodepresence:gone", "ada", 5).expect("HSET");
        let () = r.hset("herald:nodestats", "gone", "{}").expect("HSET");
        assert_eq!(f.bus.presence("ada").await.expect("read").sessions, 2);
        f.bus.heartbeat().await.expect("beat");
        assert_eq!(
            r.zscore::<_, _, Option<f64>>("herald:nodes", "gone")
                .expect("ZSCORE"),
            None
        );
        assert!(
            !r.hexists::<_, _, bool>("herald:nodestats", "gone")
                .expect("HEXISTS")
        );
        assert!(
            r.zscore::<_, _, Option<f64>>("herald:nodes", "n1")
                .expect("ZSCORE")
                .is_some()
        );
    }
}
