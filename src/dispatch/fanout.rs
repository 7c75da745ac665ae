//! One message's fan-out on this node: the frames it is serialized into
//! and whom it reached, kept across the slices of a long delivery.

use super::Dispatcher;
use super::frame::{Reason, msg_frame_at};
use crate::auth::Identity;
use crate::envelope::Publish;
use crate::events::{Delivered, Record};
use crate::hub::outbox::Outgoing;
use crate::sketch::{SKETCH_FROM, Sketch};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The frames one message is serialized into on this node: once, once per
/// locale, or once per recipient (placeholders), as the message requires.
pub(super) struct Frames<'a> {
    p: &'a Publish,
    born: Instant,
    seq: u64,
    with_pos: bool,
    shared: Option<Outgoing>,
    per_locale: HashMap<Option<Box<str>>, Outgoing>,
}

impl<'a> Frames<'a> {
    /// `cache`: the frame of a users publish received before on another
    /// user's channel, serialized once per node.
    pub(super) fn new(
        p: &'a Publish,
        born: Instant,
        cache: Option<&std::sync::OnceLock<Outgoing>>,
        with_pos: bool,
    ) -> Self {
        let mut frames = Self {
            p,
            born,
            seq: crate::history::seq_of(p),
            with_pos,
            shared: None,
            per_locale: HashMap::new(),
        };
        if !p.varies() {
            frames.shared = Some(match cache {
                Some(f) => f.get_or_init(|| frames.encode(None, None)).clone(),
                None => frames.encode(None, None),
            });
        }
        frames
    }

    fn encode(&self, locale: Option<&str>, id: Option<&Identity>) -> Outgoing {
        let json = msg_frame_at(&self.p.envelope, locale, id, Reason::Push, self.with_pos);
        Outgoing::text(&json, self.born, self.seq)
    }

    pub(super) fn for_session(&mut self, s: &crate::hub::Session) -> Outgoing {
        if let Some(frame) = &self.shared {
            return frame.clone();
        }
        let id = s.identity();
        if self.p.personalized {
            return self.encode(id.locale.as_deref(), Some(&id));
        }
        let locale = id.locale.clone();
        drop(id);
        if let Some(frame) = self.per_locale.get(&locale) {
            return frame.clone();
        }
        let frame = self.encode(locale.as_deref(), None);
        self.per_locale.insert(locale, frame.clone());
        frame
    }
}

/// Whom one message reached, for the events stream: a record per session
/// for named users; for broadcast audiences one record per node with the
/// count and the distinct users, so a fan-out to thousands does not turn
/// into thousands of stream entries.
pub(super) struct Reached {
    per_session: bool,
    users: Vec<Arc<str>>,
    /// Past [`SKETCH_FROM`] recipients on a Redis node: each one's
    /// precomputed [`crate::sketch::Place`] set here as they are reached
    /// (one register per recipient: no string is read, no `Arc` counted).
    sketch: Option<Box<Sketch>>,
}

impl Reached {
    pub(super) fn new(d: &Dispatcher, p: &Publish) -> Self {
        Self {
            per_session: d.events.record_deliveries && p.audience.users().is_some(),
            users: Vec::new(),
            sketch: None,
        }
    }

    pub(super) fn add(&mut self, d: &Dispatcher, p: &Publish, s: &crate::hub::Session) {
        if self.per_session {
            return d.record_delivery(p, s);
        }
        if !d.events.record_deliveries {
            return;
        }
        match &mut self.sketch {
            Some(sketch) => sketch.add_place(s.user_place),
            None => {
                self.users.push(s.user.clone());
                if d.events.sketches && self.users.len() >= SKETCH_FROM {
                    let mut sketch = Box::<Sketch>::default();
                    self.users.iter().for_each(|u| sketch.add(u.as_bytes()));
                    self.users = Vec::new();
                    self.sketch = Some(sketch);
                }
            }
        }
    }

    pub(super) fn finish(self, d: &Dispatcher, p: &Publish, delivered: usize) {
        if d.events.record_deliveries && !self.per_session && delivered > 0 {
            let mut r = Record::delivered(p, Delivered::Count(delivered, self.users));
            r.sketch = self.sketch;
            d.events.emit(r);
        }
    }
}
