//! Every Redis name Herald uses, built in one place.
//!
//! A user-derived name always ends with the user id, after a prefix that no
//! other family of names shares or extends (`{p}:trimmed:history:user:{u}`,
//! not `{p}:history:user:{u}:trimmed`, which was the history stream of user
//! `{u}:trimmed`), so no id can make one key another's.

use crate::events::{Record, Stream};

/// Redis key and channel names under the configured prefix.
///
/// Channels and the public streams (`ingress`, `events`, `undelivered`,
/// `dead`) are named `{prefix}:…` as the contract says. Herald's own keys
/// (history, the sticky set, pending messages, campaigns, counters,
/// presence) are too on one server; in a Redis Cluster they carry the hash
/// tag `{prefix}` (`{herald}:active`), so that every script and pipeline
/// touching several of them stays on one slot.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    /// The prefix of Herald's own keys: `prefix`, or `{prefix}` in a cluster.
    data: String,
    user_channel_prefix: String,
}

impl Keys {
    pub fn new(prefix: &str, cluster: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            data: if cluster {
                format!("{{{prefix}}}")
            } else {
                prefix.to_owned()
            },
            user_channel_prefix: format!("{prefix}:user:"),
        }
    }
    /// The prefix of channels and the public streams.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn broadcast(&self) -> String {
        format!("{}:broadcast", self.prefix)
    }
    pub fn user(&self, user: &str) -> String {
        format!("{}{user}", self.user_channel_prefix)
    }
    pub fn ingress(&self) -> String {
        format!("{}:ingress", self.prefix)
    }
    pub fn stream(&self, stream: Stream) -> String {
        format!("{}:{}", self.prefix, stream.name())
    }
    /// What the scripts build Herald's keys from (their `KEYS[1]`, which
    /// also routes them to the right slot in a cluster).
    pub fn data(&self) -> &str {
        &self.data
    }
    /// One node's sessions per user; it expires with the node's heartbeat,
    /// so a dead node's presence goes with it.
    pub fn node_presence(&self, node: &str) -> String {
        format!("{}:nodepresence:{node}", self.data)
    }
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.data)
    }
    pub fn node_stats(&self) -> String {
        format!("{}:nodestats", self.data)
    }
    pub fn active(&self) -> String {
        format!("{}:active", self.data)
    }
    pub fn pending(&self, user: &str) -> String {
        format!("{}:pending:{user}", self.data)
    }
    pub fn acked(&self, msg: &str) -> String {
        format!("{}:acked:{msg}", self.data)
    }
    pub fn campaigns(&self) -> String {
        format!("{}:campaigns", self.data)
    }
    pub fn freq_done(&self, campaign: &str, user: &str) -> String {
        format!("{}:freqdone:{campaign}:{user}", self.data)
    }
    /// A campaign's stored assignments: user -> `variant\tat`.
    pub fn exposures(&self, campaign: &str) -> String {
        format!("{}:exposures:{campaign}", self.data)
    }
    /// A campaign's converted users.
    pub fn conversions(&self, campaign: &str) -> String {
        format!("{}:conversions:{campaign}", self.data)
    }
    /// The counters of a message or campaign (`scope`: `msg:{id}`, `campaign:{id}`).
    pub fn counts(&self, scope: &str) -> String {
        format!("{}:counts:{scope}", self.data)
    }
    /// Distinct users of a message or campaign, one HyperLogLog per `who`.
    pub fn distinct(&self, who: &str, scope: &str) -> String {
        format!("{}:distinct:{who}:{scope}", self.data)
    }
    /// A user's newest decisions (the index of traced users, `{p}:traced`,
    /// is built in `lua/trace_bound.lua`).
    pub fn trace(&self, user: &str) -> String {
        format!("{}:trace:{user}", self.data)
    }
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.data)
    }
    pub fn history(&self) -> String {
        format!("{}:history", self.data)
    }
    /// Waiting scheduled messages: a sorted set of ids by due time, and
    /// their envelopes (names built by `lua/schedule.lua` from `data()`).
    pub fn scheduled(&self) -> String {
        format!("{}:scheduled", self.data)
    }
    pub fn scheduled_envelopes(&self) -> String {
        format!("{}:scheduled:envelopes", self.data)
    }
    /// Where nodes hear audience preview requests.
    /// The channel a node's pub/sub probe goes round on.
    pub fn probe_channel(&self, node: &str) -> String {
        format!("{}:probe:{node}", self.prefix)
    }
    pub fn preview_channel(&self) -> String {
        format!("{}:preview", self.prefix)
    }
    pub(super) fn is_preview_channel(&self, channel: &str) -> bool {
        channel
            .strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest == ":preview")
    }
    /// One preview's answers (a list, one entry per node) and the set of
    /// the users they matched; both expire soon after.
    pub fn preview_answers(&self, req: &str) -> String {
        format!("{}:preview:{req}", self.data)
    }
    pub fn preview_users(&self, req: &str) -> String {
        format!("{}:previewusers:{req}", self.data)
    }
    /// `XADD` of one record to its stream, trimmed to about `maxlen`.
    pub(super) fn xadd(&self, r: &Record, maxlen: usize) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.stream(r.stream))
            .arg("MAXLEN")
            .arg("~")
            .arg(maxlen)
            .arg("*");
        for (k, v) in &r.fields {
            cmd.arg(*k).arg(v);
        }
        cmd
    }
    pub(super) fn dead_seen(&self, digest: &str) -> String {
        format!("{}:dead:seen:{digest}", self.data)
    }
    pub(super) fn user_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(&self.user_channel_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_on_one_server_and_in_a_cluster() {
        let k = Keys::new("herald", false);
        assert_eq!(k.broadcast(), "herald:broadcast");
        assert_eq!(k.user("ada"), "herald:user:ada");
        assert_eq!(k.active(), "herald:active");
        assert_eq!(k.user_of("herald:user:a:b"), Some("a:b"));
        assert_eq!(k.user_of("herald:broadcast"), None);
        let c = Keys::new("herald", true);
        // Channels and the public streams keep their names; Herald's own
        // keys share one hash tag.
        assert_eq!(c.broadcast(), "herald:broadcast");
        assert_eq!(c.ingress(), "herald:ingress");
        assert_eq!(c.active(), "{herald}:active");
        assert_eq!(c.node_presence("n1"), "{herald}:nodepresence:n1");
    }

    #[test]
    fn no_user_id_names_another_key() {
        let k = Keys::new("herald", false);
        let users = ["x", "x:trimmed", "trimmed", "user:x", "x:y"];
        let mut names = vec![
            k.history(),
            k.epoch(),
            k.active(),
            k.campaigns(),
            k.nodes(),
            k.node_stats(),
        ];
        for u in users {
            names.push(k.pending(u));
            names.push(k.acked(u));
            names.push(k.freq_done("c", u));
            names.push(k.trace(u));
        }
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }
}
