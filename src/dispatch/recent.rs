//! What a node remembers of the messages it saw lately: ids within the
//! dedupe window, and the messages behind them (so a retraction finds the
//! sessions that had one).

use crate::envelope::Publish;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ids seen recently, and the messages behind them, for a bounded window.
pub(super) struct Recent {
    pub(super) window: Duration,
    pub(super) capacity: usize,
    pub(super) seen: HashSet<String>,
    pub(super) messages: HashMap<String, Arc<Publish>>,
    pub(super) order: VecDeque<(Instant, String, bool)>,
}

impl Recent {
    pub(super) fn prune(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.order.front() {
            if now.duration_since(*at) < self.window && self.order.len() <= self.capacity {
                break;
            }
            if let Some((_, key, is_message)) = self.order.pop_front() {
                if is_message {
                    self.messages.remove(&key);
                } else {
                    self.seen.remove(&key);
                }
            }
        }
    }

    /// True the first time `key` is seen within the window.
    pub(super) fn first(&mut self, key: String, now: Instant) -> bool {
        self.prune(now);
        if self.seen.contains(&key) {
            return false;
        }
        self.seen.insert(key.clone());
        self.order.push_back((now, key, false));
        true
    }

    pub(super) fn remember(&mut self, p: &Arc<Publish>, now: Instant) {
        let id = p.id().to_owned();
        if self.messages.insert(id.clone(), p.clone()).is_none() {
            self.order.push_back((now, id, true));
        }
    }
}
