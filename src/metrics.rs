//! Prometheus metrics, served as text at `GET /metrics` on the admin listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameType {
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Source {
    pub source: &'static str,
}

/// Every metric Herald exports. Handles are cheap clones of shared atomics.
pub struct Metrics {
    registry: Registry,
    pub sessions: Gauge,
    pub users: Gauge,
    pub deliveries: Counter,
    pub drops: Family<Reason, Counter>,
    pub refusals: Family<Reason, Counter>,
    pub closes: Family<Reason, Counter>,
    pub client_frames: Family<FrameType, Counter>,
    pub client_errors: Family<Reason, Counter>,
    pub messages: Family<Source, Counter>,
    pub invalid_envelopes: Family<Source, Counter>,
    pub bus_up: Gauge,
    pub bus_reconnects: Counter,
    pub latency: Histogram,
    pub events_dropped: Counter,
    pub campaign_decisions: Family<Reason, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let m = Self {
            sessions: Gauge::default(),
            users: Gauge::default(),
            deliveries: Counter::default(),
            drops: Family::default(),
            refusals: Family::default(),
            closes: Family::default(),
            client_frames: Family::default(),
            client_errors: Family::default(),
            messages: Family::default(),
            invalid_envelopes: Family::default(),
            bus_up: Gauge::default(),
            bus_reconnects: Counter::default(),
            latency: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            events_dropped: Counter::default(),
            campaign_decisions: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sessions",
            "Live WebSocket sessions on this node",
            m.sessions.clone(),
        );
        registry.register(
            "users",
            "Distinct users with a session on this node",
            m.users.clone(),
        );
        registry.register(
            "deliveries",
            "Frames queued to sessions for messages",
            m.deliveries.clone(),
        );
        registry.register(
            "drops",
            "Messages or sessions dropped, by reason",
            m.drops.clone(),
        );
        registry.register(
            "refusals",
            "Connections refused before the upgrade, by reason",
            m.refusals.clone(),
        );
        registry.register(
            "closes",
            "Sessions closed by the server, by reason",
            m.closes.clone(),
        );
        registry.register(
            "client_frames",
            "Client frames received, by type",
            m.client_frames.clone(),
        );
        registry.register(
            "client_errors",
            "Client frames refused, by error code",
            m.client_errors.clone(),
        );
        registry.register(
            "messages",
            "Messages received for delivery, by source",
            m.messages.clone(),
        );
        registry.register(
            "invalid_envelopes",
            "Envelopes refused, by source",
            m.invalid_envelopes.clone(),
        );
        registry.register(
            "bus_up",
            "1 while the Redis bus is connected (always 1 embedded)",
            m.bus_up.clone(),
        );
        registry.register(
            "bus_reconnects",
            "Redis bus reconnections",
            m.bus_reconnects.clone(),
        );
        registry.register(
            "publish_to_socket_seconds",
            "From the node receiving a message to its frame written to a socket",
            m.latency.clone(),
        );
        registry.register(
            "events_dropped",
            "Stream records dropped because the writer queue was full",
            m.events_dropped.clone(),
        );
        registry.register(
            "campaign_decisions",
            "Campaign displays decided, by verdict (allowed, frequency, until, global_cap, error)",
            m.campaign_decisions.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    pub fn drop_reason(&self, reason: &'static str) {
        self.drops.get_or_create(&Reason { reason }).inc();
    }

    pub fn refusal(&self, reason: &'static str) {
        self.refusals.get_or_create(&Reason { reason }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn counter_value(family: &Family<Reason, Counter>, reason: &'static str) -> u64 {
        family.get_or_create(&Reason { reason }).get()
    }
}
