//! Resume positions (SPEC §3 `pos`, `since`, `recovered`).
//!
//! Recoverable messages (published through the API, the CLI or the ingress
//! stream) are appended to a bounded history before they are published: one
//! stream for broadcast audiences and one per named user, sharing one id
//! sequence (`{ms}-{seq}`, never going back), so that a position taken from
//! any stream orders against every other. A position is `{epoch}.{id}`; the
//! epoch changes when the history is lost (Redis restarted empty, or an
//! embedded node restarted), and then nothing can be recovered.
//!
//! A resume recovers everything after `since` that targets the session, or
//! nothing (`recovered: false`): never a partial set. That holds when the
//! epoch matches, `since` is inside the window, and no stream the session
//! reads has dropped an entry after `since`.
//!
//! Redis keeps the history in streams (see the bus); this module holds the
//! position type and the embedded, in-memory history.

use crate::auth::Identity;
use crate::envelope::{self, Command, Publish};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A parsed resume position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Id {
    pub ms: u64,
    pub seq: u64,
}

impl Id {
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-')?;
        Some(Self {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// `{epoch}.{ms}-{seq}` split in two.
pub fn parse_pos(pos: &str) -> Option<(&str, Id)> {
    let (epoch, id) = pos.rsplit_once('.')?;
    Some((epoch, Id::parse(id)?))
}

/// The sequence number of a message's position (0 when it has none).
pub fn seq_of(p: &Publish) -> u64 {
    seq_of_pos(p.envelope.pos.as_deref())
}

/// The sequence number of a position (0 when there is none).
pub fn seq_of_pos(pos: Option<&str>) -> u64 {
    pos.and_then(parse_pos).map_or(0, |(_, id)| id.seq)
}

/// What a resume found: every missed message for the session, in order, or
/// `recovered: false` and nothing.
#[derive(Debug, Default)]
pub struct Resumed {
    pub recovered: bool,
    pub messages: Vec<Arc<Publish>>,
    /// Messages retracted after `since`: the client takes them off the
    /// screen (it may have shown them before it left).
    pub retracted: Vec<String>,
    /// The client's position or the highest sequence read (a message or a
    /// retraction), whichever is higher: live frames at or below it are
    /// duplicates of what the client has or the replay sends.
    upto: u64,
}

impl Resumed {
    pub fn lost() -> Self {
        Self::default()
    }

    /// A complete resume: the messages minus those retracted since; `upto`
    /// as the field says.
    pub fn new(messages: Vec<Arc<Publish>>, retracted: Vec<String>, upto: u64) -> Self {
        let gone: std::collections::HashSet<&str> = retracted.iter().map(String::as_str).collect();
        let messages = messages
            .into_iter()
            .filter(|p| !gone.contains(p.id()))
            .collect();
        Self {
            recovered: true,
            messages,
            retracted,
            upto,
        }
    }

    /// Live frames (messages and retractions) at or below this sequence
    /// are duplicates: the client had them before, or the replay sends them.
    pub fn upto(&self) -> u64 {
        self.upto
    }
}

/// How far past the window a position is still honoured, the same for both
/// backends: a position's time and the history's come from one clock
/// (Redis's, or the embedded node's), so this only covers the node's clock
/// against Redis's when it checks.
const WINDOW_SLACK_MS: u64 = 1000;

/// Is a position recent enough to resume from?
pub fn within(since: Id, window: Duration, now_ms: u64) -> bool {
    since.ms + window.as_millis() as u64 + WINDOW_SLACK_MS >= now_ms
}

/// One history stream as a resume reads it: the newest id trimmed away
/// (`None`: none yet) and its entries after the position.
pub struct StreamRead {
    pub trimmed: Option<Id>,
    pub entries: Vec<(Id, Entry)>,
}

/// The resume walk, one for both backends: every entry after `since` that
/// targets `identity`, in order, and the retractions since; or nothing
/// (`recovered: false`) when a stream dropped an entry after `since`. The
/// caller has checked the epoch and [`within`].
pub fn walk(
    identity: &Identity,
    since: Id,
    streams: impl IntoIterator<Item = StreamRead>,
    now_ms: u64,
) -> Resumed {
    let mut found: Vec<(Id, Arc<Publish>)> = Vec::new();
    let mut retracted = Vec::new();
    // The client has everything up to `since` already.
    let mut upto = since.seq;
    for stream in streams {
        if stream.trimmed.is_some_and(|t| t > since) {
            return Resumed::lost();
        }
        for (id, entry) in stream.entries {
            if id <= since {
                continue;
            }
            upto = upto.max(id.seq);
            match entry {
                Entry::Retract(msg) => retracted.push(msg),
                Entry::Publish(p) if p.audience.matches(identity) && !p.expired(now_ms) => {
                    found.push((id, p))
                }
                Entry::Publish(_) => {}
            }
        }
    }
    found.sort_by_key(|(id, _)| *id);
    Resumed::new(found.into_iter().map(|(_, p)| p).collect(), retracted, upto)
}

/// One history entry: a message, or the retraction of one.
#[derive(Clone)]
pub enum Entry {
    Publish(Arc<Publish>),
    Retract(String),
}

/// Parses a stored history entry, giving a message its position.
pub fn entry(envelope_json: &str, pos: &str) -> Option<Entry> {
    match envelope::parse(
        envelope_json.as_bytes(),
        usize::MAX,
        crate::auth::unix_now_ms(),
    )
    .ok()?
    {
        Command::Retract { id, .. } => Some(Entry::Retract(id)),
        Command::Publish(_) => with_pos(envelope_json, pos).map(Entry::Publish),
        _ => None,
    }
}

/// An envelope (as stored in a history stream) with its position added.
pub fn with_pos(envelope_json: &str, pos: &str) -> Option<Arc<Publish>> {
    let mut e: envelope::Envelope = serde_json::from_str(envelope_json).ok()?;
    e.pos = Some(pos.to_owned());
    match envelope::check(e, crate::auth::unix_now_ms()).ok()? {
        Command::Publish(p) => Some(p),
        _ => None,
    }
}

struct Stream {
    entries: VecDeque<(Id, Entry)>,
    /// The newest id ever trimmed away.
    max_deleted: Option<Id>,
}

impl Stream {
    fn new() -> Self {
        Self {
            entries: VecDeque::new(),
            max_deleted: None,
        }
    }

    fn trim(&mut self, max: usize, oldest_ms: u64) {
        while let Some((id, _)) = self.entries.front() {
            if self.entries.len() <= max && id.ms >= oldest_ms {
                break;
            }
            let (id, _) = self
                .entries
                .pop_front()
                .unwrap_or_else(|| unreachable!("front exists"));
            self.max_deleted = Some(id);
        }
    }
}

/// Embedded mode's history, in memory: lost with the process, so its epoch
/// is new at every start.
pub struct MemoryHistory {
    epoch: String,
    window: Duration,
    max: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    last: Id,
    global: Stream,
    users: HashMap<Arc<str>, Stream>,
    /// Messages each user clicked or dismissed, until when (unix ms): not
    /// replayed to them. Kept as long as the history could replay them.
    acknowledged: HashMap<Arc<str>, HashMap<String, u64>>,
}

impl Inner {
    fn next_id(&mut self) -> Id {
        let ms = crate::auth::unix_now_ms().max(self.last.ms);
        self.last = Id {
            ms,
            seq: self.last.seq + 1,
        };
        self.last
    }
}

impl MemoryHistory {
    pub fn new(window: Duration, max: usize) -> Self {
        Self {
            epoch: format!("{:016x}", rand::random::<u64>()),
            window,
            max,
            inner: Mutex::new(Inner {
                last: Id { ms: 0, seq: 0 },
                global: Stream::new(),
                users: HashMap::new(),
                acknowledged: HashMap::new(),
            }),
        }
    }

    fn window_ms(&self) -> u64 {
        self.window.as_millis() as u64
    }

    /// Appends a message and returns it with its position.
    pub fn append(&self, p: &Publish) -> Option<Arc<Publish>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = inner.next_id();
        let json = serde_json::to_string(&p.envelope).ok()?;
        let positioned = with_pos(&json, &format!("{}.{id}", self.epoch))?;
        let oldest = id.ms.saturating_sub(self.window_ms());
        let (max, users) = (self.max, p.audience.users());
        match users {
            None => {
                inner
                    .global
                    .entries
                    .push_back((id, Entry::Publish(positioned.clone())));
                inner.global.trim(max, oldest);
            }
            Some(users) => {
                for u in users {
                    let s = inner.users.entry(u.clone()).or_insert_with(Stream::new);
                    s.entries
                        .push_back((id, Entry::Publish(positioned.clone())));
                    s.trim(max, oldest);
                }
            }
        }
        // Streams of users nobody published to within the window go, like
        // the Redis keys that expire.
        inner
            .users
            .retain(|_, s| s.entries.back().is_some_and(|(id, _)| id.ms >= oldest));
        Some(positioned)
    }

    /// Records a retraction, so that a resume past it neither replays the
    /// message nor leaves it on screen; returns its position.
    pub fn retract(&self, msg: &str) -> String {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = inner.next_id();
        let oldest = id.ms.saturating_sub(self.window_ms());
        inner
            .global
            .entries
            .push_back((id, Entry::Retract(msg.to_owned())));
        inner.global.trim(self.max, oldest);
        format!("{}.{id}", self.epoch)
    }

    /// A user clicked or dismissed `msg` (SPEC §10.1): their sessions that
    /// resume past this take it off the screen, and it is not replayed to
    /// them. Returns the position of that per-user retraction.
    pub fn acknowledge(&self, user: &str, msg: &str) -> String {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = inner.next_id();
        let oldest = id.ms.saturating_sub(self.window_ms());
        let user: Arc<str> = Arc::from(user);
        let (max, window) = (self.max, self.window_ms());
        let s = inner.users.entry(user.clone()).or_insert_with(Stream::new);
        s.entries.push_back((id, Entry::Retract(msg.to_owned())));
        s.trim(max, oldest);
        let until = id.ms + window + WINDOW_SLACK_MS;
        inner
            .acknowledged
            .entry(user)
            .or_default()
            .insert(msg.to_owned(), until);
        // What no resume can replay any more is forgotten.
        let now = id.ms;
        inner.acknowledged.retain(|_, msgs| {
            msgs.retain(|_, until| *until > now);
            !msgs.is_empty()
        });
        format!("{}.{id}", self.epoch)
    }

    /// The current position: a resume from it recovers what comes next.
    pub fn head(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Now, not the last entry's time: a fresh history's position must
        // not look older than the window.
        let id = Id {
            ms: crate::auth::unix_now_ms().max(inner.last.ms),
            seq: inner.last.seq,
        };
        format!("{}.{id}", self.epoch)
    }

    pub fn resume(&self, identity: &Identity, since: &str) -> Resumed {
        let Some((epoch, since)) = parse_pos(since) else {
            return Resumed::lost();
        };
        let now = crate::auth::unix_now_ms();
        if epoch != self.epoch || !within(since, self.window, now) {
            return Resumed::lost();
        }
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let read = |s: &Stream| StreamRead {
            trimmed: s.max_deleted,
            entries: s
                .entries
                .iter()
                .filter(|(id, _)| *id > since)
                .cloned()
                .collect(),
        };
        let mut streams = vec![read(&inner.global)];
        streams.extend(inner.users.get(&identity.user).map(read));
        let acknowledged = inner.acknowledged.get(&identity.user).cloned();
        drop(inner);
        let mut resumed = walk(identity, since, streams, now);
        if let Some(acked) = acknowledged {
            resumed.messages.retain(|p| !acked.contains_key(p.id()));
        }
        resumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_and_order() {
        let (epoch, id) = parse_pos("ab12.1700000000000-42").expect("pos");
        assert_eq!(epoch, "ab12");
        assert_eq!(
            id,
            Id {
                ms: 1_700_000_000_000,
                seq: 42
            }
        );
        assert!(Id { ms: 5, seq: 1 } < Id { ms: 5, seq: 2 });
        assert!(parse_pos("garbage").is_none());
        assert!(parse_pos("e.12").is_none());
    }
}
