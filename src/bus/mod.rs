//! How messages travel between publishers and nodes. Embedded: straight to
//! this node's dispatcher. Redis: pub/sub channels shared by every node.
//! In the library, `redis` is imported in this module tree and nowhere else
//! (the load generator, `herald-bench`, uses it too).

mod conn;
mod ingress;
mod redis_bus;

use crate::auth::Identity;
use crate::campaigns::{Campaign, Limits, MemoryCounters, Verdict};
use crate::dispatch::{Dispatcher, Route};
use crate::envelope::{Command, Publish};
use crate::events::{Record, Stream};
use crate::history::{MemoryHistory, Resumed};
use crate::hub::Hub;
use crate::protocol::{Ack, AckStatus};
use std::sync::Arc;
use std::time::Instant;

pub use redis_bus::{BusParts, Keys, RedisBus, RedisTarget, publish_direct};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis unavailable: {0}")]
    Unavailable(String),
}

/// Who a `users` publish reached, known at publish time.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Reach {
    pub online: Vec<String>,
    pub offline: Vec<String>,
}

/// A user's sessions across the cluster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Presence {
    pub user: String,
    pub online: bool,
    pub sessions: u64,
}

pub enum Bus {
    Embedded {
        hub: Arc<Hub>,
        dispatcher: Arc<Dispatcher>,
        counters: Box<MemoryCounters>,
        /// `None` when `history.enabled` is off.
        history: Option<Box<MemoryHistory>>,
    },
    Redis(Arc<RedisBus>),
}

impl Bus {
    /// Publishes a checked command to every node (here: this one, or all
    /// through Redis). For `users` audiences, says who was online.
    pub async fn publish(&self, cmd: &Command) -> Result<Option<Reach>, BusError> {
        match self {
            Bus::Embedded {
                hub,
                dispatcher,
                history,
                ..
            } => {
                // Who is online is known before delivery, as with PUBLISH replies.
                let reach = match cmd {
                    Command::Publish(p) => p
                        .audience
                        .users()
                        .map(|users| Reach::split(users, |_, u| hub.user_sessions(u) > 0)),
                    _ => None,
                };
                // Recorded in the history first, so it goes out with its position.
                let positioned = match (cmd, history) {
                    (Command::Publish(p), Some(h)) => h.append(p).map(Command::Publish),
                    (Command::Retract { id, .. }, Some(h)) => Some(Command::Retract {
                        id: id.clone(),
                        pos: Some(h.retract(id)),
                    }),
                    _ => None,
                };
                dispatcher.apply(
                    positioned.as_ref().unwrap_or(cmd),
                    Route::Broadcast,
                    Instant::now(),
                );
                if let (Command::Publish(p), Some(r)) = (cmd, &reach)
                    && p.envelope.fallback
                {
                    for user in &r.offline {
                        dispatcher.events().emit(
                            Record::new(Stream::Undelivered, "undelivered")
                                .with("msg", p.id())
                                .with("user", user.as_str())
                                .with_opt("campaign", p.envelope.campaign.as_deref()),
                        );
                    }
                }
                Ok(reach)
            }
            Bus::Redis(bus) => bus.publish(cmd).await,
        }
    }

    pub async fn presence(&self, user: &str) -> Result<Presence, BusError> {
        match self {
            Bus::Embedded { hub, .. } => {
                let sessions = hub.user_sessions(user) as u64;
                Ok(Presence {
                    user: user.to_owned(),
                    online: sessions > 0,
                    sessions,
                })
            }
            Bus::Redis(bus) => bus.presence(user).await,
        }
    }

    /// The sticky set: active sticky and must-acknowledge messages.
    pub async fn active(&self) -> Result<Vec<Arc<Publish>>, BusError> {
        match self {
            Bus::Embedded { dispatcher, .. } => Ok(dispatcher.active()),
            Bus::Redis(bus) => bus.active().await,
        }
    }

    /// What a client resuming at `since` missed: all of it, or nothing
    /// (`recovered: false`).
    pub async fn resume(&self, id: &Identity, since: &str) -> Resumed {
        match self {
            Bus::Embedded {
                history: Some(h), ..
            } => h.resume(id, since),
            Bus::Embedded { history: None, .. } => Resumed::lost(),
            Bus::Redis(bus) => bus.resume(id, since).await,
        }
    }

    /// The history's current position, for the `hello` frame.
    pub async fn head(&self) -> Option<String> {
        match self {
            Bus::Embedded { history, .. } => history.as_ref().map(|h| h.head()),
            Bus::Redis(bus) => bus.head().await,
        }
    }

    /// Messages a session that just connected must receive (reason `sticky`).
    pub async fn replay_for(&self, id: &Identity) -> Vec<Arc<Publish>> {
        match self {
            Bus::Embedded { dispatcher, .. } => dispatcher.active_for(id),
            Bus::Redis(bus) => bus.replay_for(id).await,
        }
    }

    /// Records an acknowledgement: the events stream, and for clicked or
    /// dismissed, the end of resending a must-acknowledge message.
    pub async fn ack(
        &self,
        user: &Arc<str>,
        sid: &str,
        ack: &Ack,
    ) -> Result<Option<String>, BusError> {
        let dispatcher = match self {
            Bus::Embedded { dispatcher, .. } => dispatcher,
            Bus::Redis(bus) => bus.dispatcher(),
        };
        let campaign = dispatcher.on_ack(user, sid, &ack.id, ack.status, ack.action.as_deref());
        if matches!(ack.status, AckStatus::Clicked | AckStatus::Dismissed) {
            match self {
                Bus::Embedded { dispatcher, .. } => dispatcher.acknowledge(&ack.id, user),
                Bus::Redis(bus) => bus.ack(user, &ack.id).await?,
            }
        }
        Ok(campaign)
    }

    /// Stores a campaign where every node finds it, and tells them.
    pub async fn campaign_store(&self, c: &Campaign) -> Result<(), BusError> {
        match self {
            Bus::Embedded { .. } => Ok(()),
            Bus::Redis(bus) => bus.campaign_store(c).await,
        }
    }

    pub async fn campaign_remove(&self, id: &str) -> Result<(), BusError> {
        match self {
            Bus::Embedded { .. } => Ok(()),
            Bus::Redis(bus) => bus.campaign_remove(id).await,
        }
    }

    /// Checks and counts one display against a campaign's limits.
    pub async fn campaign_check(&self, limits: &Limits<'_>) -> Result<Verdict, BusError> {
        match self {
            Bus::Embedded { counters, .. } => {
                Ok(counters.check(limits, crate::auth::unix_now_ms()))
            }
            Bus::Redis(bus) => bus.campaign_check(limits).await,
        }
    }

    /// The user reached the campaign's `until`.
    pub async fn campaign_done(&self, campaign: &str, user: &str) -> Result<(), BusError> {
        match self {
            Bus::Embedded { counters, .. } => {
                counters.done(campaign, user);
                Ok(())
            }
            Bus::Redis(bus) => bus.campaign_done(campaign, user).await,
        }
    }

    /// The newest records of a stream (events, undelivered, dead).
    pub async fn stream(
        &self,
        stream: Stream,
        count: usize,
    ) -> Result<Vec<serde_json::Value>, BusError> {
        match self {
            Bus::Embedded { dispatcher, .. } => Ok(dispatcher
                .events()
                .recent(stream, count)
                .unwrap_or_default()),
            Bus::Redis(bus) => bus.stream(stream, count).await,
        }
    }

    /// Counters of every live node and their sums; embedded: this node.
    pub async fn cluster_stats(&self) -> Result<Option<serde_json::Value>, BusError> {
        match self {
            Bus::Embedded { .. } => Ok(None),
            Bus::Redis(bus) => bus.cluster_stats().await.map(Some),
        }
    }

    /// Ready to carry messages: always embedded; connected with Redis.
    pub fn is_up(&self) -> bool {
        match self {
            Bus::Embedded { .. } => true,
            Bus::Redis(bus) => bus.is_up(),
        }
    }

    /// Waits (briefly) until this node receives `user`'s channel, so that a
    /// message published right after the `hello` frame is not missed.
    pub async fn user_ready(&self, user: &str) {
        if let Bus::Redis(bus) = self {
            bus.user_ready(user).await;
        }
    }

    pub fn mode(&self) -> &'static str {
        match self {
            Bus::Embedded { .. } => "embedded",
            Bus::Redis(_) => "redis",
        }
    }
}

impl Reach {
    /// Splits named users by `online(index, user)`.
    pub(crate) fn split(users: &[Arc<str>], mut online: impl FnMut(usize, &str) -> bool) -> Self {
        let mut r = Reach::default();
        for (i, u) in users.iter().enumerate() {
            if online(i, u) {
                &mut r.online
            } else {
                &mut r.offline
            }
            .push(u.to_string());
        }
        r
    }
}
