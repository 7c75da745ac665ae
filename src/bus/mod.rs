//! How messages travel between publishers and nodes. Embedded: straight to
//! this node's dispatcher. Redis: pub/sub channels shared by every node.
//! `redis` is imported in this module tree and nowhere else.

mod redis_bus;

use crate::dispatch::{Dispatcher, Route};
use crate::envelope::{Command, Publish};
use crate::hub::Hub;
use std::sync::Arc;
use std::time::Instant;

pub use redis_bus::{Keys, RedisBus, publish_direct};

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
    },
    Redis(Arc<RedisBus>),
}

impl Bus {
    /// Publishes a checked command to every node (here: this one, or all
    /// through Redis). For `users` audiences, says who was online.
    pub async fn publish(&self, cmd: &Command) -> Result<Option<Reach>, BusError> {
        match self {
            Bus::Embedded { hub, dispatcher } => {
                dispatcher.apply(cmd, Route::Broadcast, Instant::now());
                Ok(match cmd {
                    Command::Publish(p) => reach(p, |u| hub.user_sessions(u) > 0),
                    Command::Retract { .. } | Command::Disconnect { .. } => None,
                })
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

fn reach(p: &Publish, online: impl Fn(&str) -> bool) -> Option<Reach> {
    let users = p.audience.users()?;
    let mut r = Reach::default();
    for u in users {
        if online(u) {
            r.online.push(u.to_string());
        } else {
            r.offline.push(u.to_string());
        }
    }
    Some(r)
}
