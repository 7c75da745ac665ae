//! The active set: sticky and must-acknowledge messages still active, with
//! the `collapse_key` index, and (embedded) who acknowledged each.

use crate::envelope::Publish;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Sticky and must-acknowledge messages still active, by id, with the
/// `collapse_key` index that lets a new message replace the old one.
#[derive(Default)]
pub struct ActiveSet {
    pub(super) by_id: HashMap<String, Arc<Publish>>,
    pub(super) by_collapse: HashMap<String, String>,
    /// Embedded mode: users who clicked or dismissed each active message,
    /// kept exactly as long as the message. (With Redis, acknowledgements
    /// live in Redis, shared by every node.)
    pub(super) acked: HashMap<String, HashSet<Arc<str>>>,
}

impl ActiveSet {
    /// Adds a message; returns the id it replaced by `collapse_key`.
    pub(super) fn put(&mut self, p: Arc<Publish>) -> Option<String> {
        let id = p.id().to_owned();
        let mut replaced = None;
        if let Some(key) = &p.envelope.collapse_key
            && let Some(old) = self.by_collapse.insert(key.clone(), id.clone())
            && old != id
        {
            self.by_id.remove(&old);
            self.acked.remove(&old);
            replaced = Some(old);
        }
        self.by_id.insert(id, p);
        replaced
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<Arc<Publish>> {
        self.acked.remove(id);
        let p = self.by_id.remove(id)?;
        if let Some(key) = &p.envelope.collapse_key
            && self.by_collapse.get(key).is_some_and(|v| v == id)
        {
            self.by_collapse.remove(key);
        }
        Some(p)
    }

    pub(super) fn purge(&mut self, now_ms: u64) {
        let expired: Vec<String> = self
            .by_id
            .values()
            .filter(|p| p.expired(now_ms))
            .map(|p| p.id().to_owned())
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }

    /// The messages `keep` accepts, by id.
    pub(super) fn sorted(&self, keep: impl Fn(&Publish) -> bool) -> Vec<Arc<Publish>> {
        let mut list: Vec<_> = self.by_id.values().filter(|p| keep(p)).cloned().collect();
        list.sort_by(|a, b| a.id().cmp(b.id()));
        list
    }
}
