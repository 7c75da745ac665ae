//! The bodies of Herald's fuzz targets, shared by the cargo-fuzz binaries
//! (`fuzz/fuzz_targets/*.rs`, through this crate) and by the main package's
//! `tests/fuzz_corpus.rs` (through `#[path = "../fuzz/src/lib.rs"] mod`), so
//! the corpus replayed under `cargo test` takes exactly the paths the fuzzer
//! explored. Each function takes the raw input and panics on any finding:
//! a panic inside Herald, or a broken invariant asserted here.
//!
//! This file is compiled under the main package's lints too (clippy
//! `unwrap_used` is denied, `unsafe_code` forbidden): keep it free of both.

use herald::auth::Identity;
use herald::campaigns::{Campaign, Compiled, Occurrence, Registry};
use herald::dispatch::{Reason, msg_frame};
use herald::envelope::{self, Action, Command, Envelope, LocaleVariant};
use herald::protocol::ClientFrame;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A target's body: takes the fuzzer's input, panics on a finding.
pub type Target = fn(&[u8]);

/// The targets, by the name of their binary and corpus directory.
pub const TARGETS: [(&str, Target); 5] = [
    ("client_frame", client_frame),
    ("envelope", envelope),
    ("audience", audience),
    ("template", template),
    ("expression", expression),
];

/// The node's default `limits.max_envelope_bytes`.
pub const MAX_ENVELOPE: usize = 64 * 1024;
/// A fixed "now" (2025-01-01T00:00:00Z), so runs are reproducible.
const NOW_MS: u64 = 1_735_689_600_000;

/// An identity as [`herald::auth`] builds one from a token's claims: `attrs`
/// holds strings, integers, floats and booleans, and `attrs.locale` (or the
/// connection's `?locale=`) picks locale variants.
fn identity(user: &str, segments: &[&str], attrs: &[(&str, cel::Value)]) -> Identity {
    let map: HashMap<cel::objects::Key, cel::Value> = attrs
        .iter()
        .map(|(k, v)| {
            (
                cel::objects::Key::String(Arc::new((*k).to_owned())),
                v.clone(),
            )
        })
        .collect();
    let locale = match map.get(&cel::objects::Key::String(Arc::new("locale".to_owned()))) {
        Some(cel::Value::String(s)) => Some(Box::from(s.as_str())),
        _ => None,
    };
    Identity {
        user: Arc::from(user),
        segments: segments.iter().map(|s| Box::from(*s)).collect(),
        attrs: cel::Value::Map(cel::objects::Map { map: Arc::new(map) }),
        exp: u64::MAX,
        locale,
    }
}

fn text(s: &str) -> cel::Value {
    cel::Value::String(Arc::new(s.to_owned()))
}

/// A few recipients: an ordinary free-plan user, a paying one with a
/// regional locale, an anonymous-looking one with nothing, and one whose
/// attributes sit at the edges of what a token may carry (extreme integers,
/// odd floats, unicode, placeholder-looking text).
fn make_identities() -> Vec<Identity> {
    vec![
        identity(
            "alice",
            &["beta"],
            &[
                ("plan", text("free")),
                ("level", cel::Value::Int(3)),
                ("name", text("Alice")),
                ("verified", cel::Value::Bool(true)),
            ],
        ),
        identity(
            "bob",
            &["admins", "beta", "eu"],
            &[
                ("plan", text("pro")),
                ("level", cel::Value::Int(42)),
                ("locale", text("fr-CA")),
                ("balance", cel::Value::Float(12.5)),
                ("name", text("Bob")),
            ],
        ),
        identity("u:*\n\u{0}é", &[], &[]),
        identity(
            "edge",
            &[""],
            &[
                ("max", cel::Value::Int(i64::MAX)),
                ("min", cel::Value::Int(i64::MIN)),
                ("zero", cel::Value::Int(0)),
                ("big", cel::Value::Float(f64::MAX)),
                ("tiny", cel::Value::Float(-f64::MIN_POSITIVE)),
                ("negzero", cel::Value::Float(-0.0)),
                ("name", text("{{attrs.name}}|}}{{")),
                ("locale", text("pt_BR")),
                ("emoji", text("😀\u{202e}")),
            ],
        ),
    ]
}

thread_local! {
    /// Built once per thread: building them per input cost a third of a
    /// template run.
    static IDENTITIES: Vec<Identity> = make_identities();
}

/// Runs `f` over each fixed identity.
fn each_identity(mut f: impl FnMut(&Identity)) {
    IDENTITIES.with(|ids| ids.iter().for_each(&mut f));
}

/// Event props a campaign's trigger `where` sees.
fn props() -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("feature".into(), "export".into());
    m.insert("path".into(), "/pricing".into());
    m.insert("count".into(), i64::MAX.into());
    m.insert("ratio".into(), 0.5.into());
    m.insert("tags".into(), serde_json::json!(["a", "b"]));
    m.insert("nested".into(), serde_json::json!({"x": {"y": null}}));
    m.insert("big".into(), u64::MAX.into());
    m
}

/// `client_frame`: arbitrary bytes, as the session reads a text frame (a
/// frame that is not UTF-8 is closed with 1007 before parsing).
pub fn client_frame(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match ClientFrame::parse(s) {
        Ok(frame) => {
            let _ = frame.kind();
        }
        Err(e) => {
            assert!(!e.code().is_empty());
            let _ = e.to_string();
        }
    }
}

/// `envelope`: bytes into [`envelope::parse`] with the node's 64 KiB limit.
/// A publish is checked for templates, matched against each identity and
/// rendered as the `msg` frames the dispatcher sends; it must come back the
/// same when parsed again from the JSON nodes pass on. The same bytes, when
/// they are a campaign, go through [`Compiled::new`] and its triggers.
pub fn envelope(data: &[u8]) {
    if let Ok(Command::Publish(p)) = envelope::parse(data, MAX_ENVELOPE, NOW_MS) {
        let e = &p.envelope;
        assert!(p.id().len() <= envelope::MAX_ID && !p.id().is_empty());
        match e.check_templates() {
            Ok(personalized) => assert_eq!(personalized, p.personalized),
            Err(err) => panic!("accepted, then refused by check_templates: {err}"),
        }
        let _ = p.expired(NOW_MS);
        let _ = (p.persistent(), p.varies(), p.audience.is_all());
        // What a node passes on is accepted again, unchanged, by the others.
        let passed_on = p.to_json();
        match envelope::parse(passed_on.as_bytes(), usize::MAX, NOW_MS + 1) {
            Ok(Command::Publish(again)) => assert_eq!(
                again.envelope, p.envelope,
                "passed on as {passed_on}, parsed back differently"
            ),
            other => panic!("accepted, then its passed-on form {passed_on} gave {other:?}"),
        }
        let frame = |f: String| {
            let v: serde_json::Value = serde_json::from_str(&f)
                .unwrap_or_else(|err| panic!("msg frame is not JSON ({err}): {f:?}"));
            assert_eq!(v["t"], "msg", "{f}");
        };
        frame(msg_frame(e, None, None, Reason::Push));
        frame(msg_frame(e, Some("fr"), None, Reason::Replay));
        each_identity(|id| {
            let _ = p.audience.matches(id);
            frame(msg_frame(e, id.locale.as_deref(), Some(id), Reason::Sticky));
        });
    }
    if let Ok(c) = serde_json::from_slice::<Campaign>(data) {
        campaign(c);
    }
}

fn campaign(c: Campaign) {
    let _ = Compiled::new(c.clone(), Some("from-path"));
    let Ok(compiled) = Compiled::new(c, None) else {
        return;
    };
    let message = compiled.message_for("alice");
    assert!(message.is_some(), "a stored campaign cannot address alice");
    let event = compiled.campaign.trigger.event.clone();
    let registry = Registry::default();
    registry.put(Arc::new(compiled));
    let mut what = vec![
        Occurrence::Connect,
        Occurrence::Idle { seconds: 30 },
        Occurrence::Event {
            name: "feature_used".into(),
            props: props(),
        },
    ];
    if let Some(name) = event {
        what.push(Occurrence::Event {
            name: name.clone(),
            props: props(),
        });
        what.push(Occurrence::Event {
            name,
            props: serde_json::Map::new(),
        });
    }
    each_identity(|id| {
        for w in &what {
            let _ = registry.candidates(w, id);
        }
    });
}

/// `audience`: the input as JSON is the envelope's `to`; input that is not
/// JSON is a CEL expression, `{"where": input}`. Whatever compiles is matched
/// against each identity; the CEL also goes through a campaign trigger's
/// `where` (over `props` and `name`). Neither compiling nor evaluating CEL
/// may panic.
pub fn audience(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let to = serde_json::from_str::<serde_json::Value>(s)
        .unwrap_or_else(|_| serde_json::json!({ "where": s }));
    if let Ok(a) = herald::audience::Audience::compile(&to) {
        each_identity(|id| {
            let _ = a.matches(id);
        });
    }
    let cel_source = to.get("where").and_then(|w| w.as_str()).unwrap_or(s);
    if let Ok(f) = herald::expr::Filter::compile("trigger.where", cel_source, &["props", "name"]) {
        assert_eq!(f.source(), cel_source);
        for (name, props) in [("feature_used", props()), ("", serde_json::Map::new())] {
            let _ = f.eval(|ctx| {
                ctx.add_variable_from_value("name", text(name));
                ctx.add_variable_from_value("props", herald::campaigns::props_to_cel(&props));
            });
        }
    }
}

/// `template`: the input's lines are a title, a body, an action label and a
/// locale tag (missing lines are absent). Each is filled for each identity
/// with [`herald::render::fill`]; an envelope made of them, with a locale
/// variant swapping title and body, goes through
/// `Envelope::check_templates` and `Envelope::content`.
pub fn template(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    each_identity(|id| {
        let filled = herald::render::fill(&s, id, usize::MAX);
        if !s.contains("{{") {
            assert_eq!(filled, s, "text without placeholders is left alone");
        }
    });
    let mut lines = s.splitn(4, '\n');
    let title = lines.next().map(str::to_owned);
    let body = lines.next().map(str::to_owned);
    let label = lines.next().map(str::to_owned);
    let tag = lines.next().map(str::to_owned);
    let actions: Vec<Action> = label
        .iter()
        .map(|l| Action {
            id: "go".into(),
            label: l.clone(),
            url: Some("/go".into()),
        })
        .collect();
    let locales = tag.as_ref().map(|t| {
        BTreeMap::from([(
            t.clone(),
            LocaleVariant {
                title: body.clone(),
                body: title.clone(),
                actions: Some(actions.iter().rev().cloned().collect()),
            },
        )])
    });
    let e = Envelope {
        title,
        body,
        actions,
        locales,
        ..Default::default()
    };
    let valid = e.check_templates();
    for locale in [None, tag.as_deref(), Some("fr-CA"), Some("")] {
        let plain = e.content(locale, None);
        each_identity(|id| {
            let (t, b, a) = e.content(locale, Some(id));
            if valid == Ok(false) {
                // Nothing to fill: rendering for a recipient changes nothing.
                assert_eq!((&t, &b, &a), (&plain.0, &plain.1, &plain.2));
            }
        });
    }
}

/// Builds a CEL expression from bytes read as a stream of choices, leaning
/// towards what costs: long `+` and `.` chains, nesting, comprehensions
/// inside comprehensions over written-out lists and over variables, big
/// list literals, `in`, `matches` with literal and computed patterns.
/// Every byte string gives an expression (zeros once the bytes run out).
pub struct ExprGen<'a> {
    data: &'a [u8],
    pos: usize,
    /// Comprehension variables in scope.
    vars: Vec<String>,
    next_var: usize,
}

impl<'a> ExprGen<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            vars: Vec::new(),
            next_var: 0,
        }
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn atom(&mut self) -> String {
        let b = self.byte();
        if !self.vars.is_empty() && b.is_multiple_of(3) {
            return self.vars[usize::from(b) % self.vars.len()].clone();
        }
        match b % 9 {
            0 => (b % 10).to_string(),
            1 => "attrs.level".into(),
            2 => "user".into(),
            3 => "'beta'".into(),
            4 => "segments".into(),
            5 => "props.items".into(),
            6 => "attrs".into(),
            7 => "true".into(),
            _ => "props.n".into(),
        }
    }

    fn list(&mut self) -> String {
        let n = usize::from(self.byte()) * 3;
        let items: Vec<String> = (0..n).map(|i| (i % 97).to_string()).collect();
        format!("[{}]", items.join(","))
    }

    /// One expression, at most `depth` levels of this generator deep.
    pub fn expr(&mut self, depth: usize) -> String {
        if depth == 0 || self.pos >= self.data.len() {
            return self.atom();
        }
        let b = self.byte();
        match b % 14 {
            0 => self.atom(),
            1 => {
                let n = 1 + usize::from(self.byte()) * 8;
                let a = self.atom();
                vec![a; n].join("+")
            }
            2 => format!("attrs{}", ".b".repeat(usize::from(self.byte()) * 8)),
            3 => {
                let op = ["+", "-", "*", "==", "!=", "<", ">=", "&&", "||", "in"]
                    [usize::from(self.byte()) % 10];
                format!("{} {op} {}", self.expr(depth - 1), self.expr(depth - 1))
            }
            4 => format!("({})", self.expr(depth - 1)),
            5 => self.list(),
            6 => {
                let range = match self.byte() % 4 {
                    0 => self.list(),
                    1 => "segments".into(),
                    2 => "props.items".into(),
                    _ => self.expr(depth - 1),
                };
                let mac =
                    ["all", "exists", "exists_one", "map", "filter"][usize::from(self.byte()) % 5];
                let var = format!("x{}", self.next_var);
                self.next_var += 1;
                self.vars.push(var.clone());
                let body = self.expr(depth - 1);
                self.vars.pop();
                format!("{range}.{mac}({var}, {body})")
            }
            7 => format!(
                "{} ? {} : {}",
                self.expr(depth - 1),
                self.expr(depth - 1),
                self.expr(depth - 1)
            ),
            8 => {
                let pattern = match self.byte() % 4 {
                    0 => "'^[a-z]+$'".to_owned(),
                    1 => "'(a{100}){100}'".to_owned(),
                    2 => format!("'{}'", ".*".repeat(usize::from(self.byte()))),
                    _ => self.expr(depth - 1),
                };
                format!("string({}).matches({pattern})", self.expr(depth - 1))
            }
            9 => format!("{} in {}", self.expr(depth - 1), self.list()),
            10 => format!("size({})", self.expr(depth - 1)),
            11 => format!("attrs{}", "[0]".repeat(usize::from(self.byte()) * 4)),
            12 => format!(
                "{}{}",
                "!".repeat(usize::from(self.byte()) % 8),
                self.expr(depth - 1)
            ),
            _ => format!(
                "{{'k': {}, 'v': {}}}",
                self.expr(depth - 1),
                self.expr(depth - 1)
            ),
        }
    }
}

/// Event props at the size limits a session enforces: a trigger's `where`
/// over them does the most work an accepted expression can.
fn largest_props() -> serde_json::Map<String, serde_json::Value> {
    let mut m = props();
    let items: Vec<u64> = (0..herald::protocol::MAX_PROPS_ENTRIES as u64).collect();
    m.insert("items".into(), serde_json::json!(items));
    m.insert("n".into(), 7.into());
    m
}

/// `expression`: a generated expression ([`ExprGen`]) compiled as an
/// audience `where` and as a trigger `where`. Whatever is accepted is
/// within the bounds and evaluates for every identity (and the largest
/// props); compiling and evaluating never overflow the stack. Slow inputs
/// are what libFuzzer's `-timeout` reports (scripts/fuzz sets it).
pub fn expression(data: &[u8]) {
    let src = ExprGen::new(data).expr(12);
    let audience = herald::expr::Filter::compile("to.where", &src, &["user", "segments", "attrs"]);
    if let Ok(f) = &audience {
        assert!(f.cost() <= herald::expr::MAX_COST, "{src}");
        each_identity(|id| {
            let _ = f.eval(|ctx| {
                ctx.add_variable_from_value("user", text(&id.user));
                let segs: Vec<cel::Value> = id.segments.iter().map(|s| text(s)).collect();
                ctx.add_variable_from_value("segments", cel::Value::List(Arc::new(segs)));
                ctx.add_variable_from_value("attrs", id.attrs.clone());
            });
        });
    }
    let trigger = src
        .replace("attrs", "props")
        .replace("segments", "props.items")
        .replace("user", "name");
    if let Ok(f) = herald::expr::Filter::compile("trigger.where", &trigger, &["props", "name"]) {
        assert!(f.cost() <= herald::expr::MAX_COST, "{trigger}");
        let props = largest_props();
        let _ = f.eval(|ctx| {
            ctx.add_variable_from_value("name", text("feature_used"));
            ctx.add_variable_from_value("props", herald::campaigns::props_to_cel(&props));
        });
    }
}
