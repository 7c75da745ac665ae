//! Prometheus metrics, served as text at `GET /metrics` on the admin listener.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

/// The Redis master a node reached through Sentinel.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedisMaster {
    pub addr: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Job {
    pub job: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameType {
    pub r#type: &'static str,
}

/// A JWKS fetch: what started it (`start`, `schedule`, `unknown_kid`) and
/// how it ended (`ok`, `unreachable`, `http_status`, `bad_document`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JwksFetch {
    pub trigger: &'static str,
    pub result: &'static str,
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
    pub bus_probe_failures: Counter,
    /// Broadcasts (and their retractions) whose audience is being
    /// evaluated in slices, or waiting for it.
    pub audience_pending: Gauge,
    /// The Redis server in use (one server, or the master Sentinel names):
    /// 1 for it, 0 for earlier ones. None on a Redis Cluster.
    pub redis_master: Family<RedisMaster, Gauge>,
    /// Under Sentinel: commands a demoted master refused with `READONLY`.
    pub redis_readonly: Counter,
    pub latency: FrameLatency,
    pub events_dropped: Counter,
    pub campaign_decisions: Family<Reason, Counter>,
    /// Users whose `attrs.tz` named no known time zone (quiet hours read in the default).
    pub campaign_unknown_tz: Counter,
    pub background_shed: Family<Job, Counter>,
    pub jwks_fetches: Family<JwksFetch, Counter>,
    pub scheduled: Family<Reason, Counter>,
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
            bus_probe_failures: Counter::default(),
            audience_pending: Gauge::default(),
            redis_master: Family::default(),
            redis_readonly: Counter::default(),
            latency: FrameLatency::default(),
            events_dropped: Counter::default(),
            campaign_decisions: Family::default(),
            campaign_unknown_tz: Counter::default(),
            background_shed: Family::default(),
            jwks_fetches: Family::default(),
            scheduled: Family::default(),
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
            "redis_master",
            "The Redis server this node uses (redis.url's, or the master the sentinels name): 1 for it, 0 for masters it used before; none on a Redis Cluster",
            m.redis_master.clone(),
        );
        registry.register(
            "redis_readonly",
            "Under Redis Sentinel: commands refused with READONLY by a master demoted under the node, sent again to the master the sentinels name",
            m.redis_readonly.clone(),
        );
        registry.register(
            "bus_reconnects",
            "Redis bus reconnections",
            m.bus_reconnects.clone(),
        );
        registry.register(
            "bus_probe_failures",
            "Pub/sub probes that did not come back in time (redis.probe_timeout): the subscription was replaced",
            m.bus_probe_failures.clone(),
        );
        registry.register(
            "audience_pending",
            "Broadcasts whose `where` audience is being evaluated in slices over the node's sessions, or waiting for it (per-user messages go out meanwhile)",
            m.audience_pending.clone(),
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
            "background_shed",
            "Background jobs not run because the node's limit of running ones was reached, by job",
            m.background_shed.clone(),
        );
        registry.register(
            "campaign_decisions",
            "Campaign displays decided, by verdict (allowed, frequency, until, global_cap, error, outside_window, quiet_hours, holdout)",
            m.campaign_decisions.clone(),
        );
        registry.register(
            "jwks_fetches",
            "Fetches of auth.jwks_url, by trigger and result; a failed one keeps the last good keys",
            m.jwks_fetches.clone(),
        );
        // Exported at zero from the start, so that increase() sees the first.
        for trigger in ["start", "schedule", "unknown_kid"] {
            for result in ["ok", "unreachable", "http_status", "bad_document", "gated"] {
                if result != "gated" || trigger == "unknown_kid" {
                    let _ = m.jwks_fetches.get_or_create(&JwksFetch { trigger, result });
                }
            }
        }
        registry.register(
            "campaign_unknown_tz",
            "Quiet-hours checks of users whose attrs.tz named no known time zone (the default zone was used)",
            m.campaign_unknown_tz.clone(),
        );
        // Exported from the start, so a scrape (and a rate) sees it at 0.
        drop(m.scheduled.get_or_create(&Reason {
            reason: "published",
        }));
        registry.register(
            "scheduled",
            "Scheduled messages this node claimed at their time, by outcome (published, expired, invalid)",
            m.scheduled.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    pub fn background_shed(&self, job: &'static str) {
        self.background_shed.get_or_create(&Job { job }).inc();
    }

    pub fn background_shed_count(&self, job: &'static str) -> u64 {
        self.background_shed.get_or_create(&Job { job }).get()
    }

    pub fn scheduled(&self, outcome: &'static str) {
        self.scheduled
            .get_or_create(&Reason { reason: outcome })
            .inc();
    }

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

const LATENCY_BUCKETS: usize = 16;

/// `publish_to_socket_seconds`: a histogram of lock-free counters, recorded
/// once per written batch. prometheus-client's `Histogram` takes a write
/// lock per observation, which every session writing on every core contends
/// for during a broadcast; here a batch adds its counts with one atomic add
/// per bucket it touched, reading the clock once, into its thread's shard:
/// a broadcast's writes on two cores do not pass one cache line back and
/// forth. A scrape sums the shards.
#[derive(Clone, Debug, Default)]
pub struct FrameLatency(Arc<[LatencyCounts; LATENCY_SHARDS]>);

/// Shards of [`FrameLatency`]: threads take them in turn (more threads than
/// shards share, which is still correct).
const LATENCY_SHARDS: usize = 8;

/// One shard, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct LatencyCounts {
    /// Non-cumulative, per upper bound; the last slot is above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// This thread's shard of every [`FrameLatency`].
fn latency_shard() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) as usize % LATENCY_SHARDS;
    }
    SHARD.with(|s| *s)
}

/// Upper bounds: 0.25 ms doubling to ~8.2 s.
fn latency_bounds() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_25, 2.0, LATENCY_BUCKETS as u16)
}

impl FrameLatency {
    /// Records the frames of one batch written now, each from its birth.
    pub fn observe_written(&self, born: impl Iterator<Item = Instant>) {
        let now = Instant::now();
        let mut counts = [0u64; LATENCY_BUCKETS + 1];
        let (mut n, mut sum_ns) = (0u64, 0u64);
        for b in born {
            let d = now.saturating_duration_since(b);
            counts[bucket_of(d)] += 1;
            n += 1;
            sum_ns += d.as_nanos() as u64;
        }
        if n == 0 {
            return;
        }
        let c = &self.0[latency_shard()];
        for (slot, k) in c.buckets.iter().zip(counts) {
            if k > 0 {
                slot.fetch_add(k, Ordering::Relaxed);
            }
        }
        c.count.fetch_add(n, Ordering::Relaxed);
        c.sum_ns.fetch_add(sum_ns, Ordering::Relaxed);
    }
}

/// The first bucket whose upper bound holds `d`: bound i is 0.25 ms << i.
fn bucket_of(d: Duration) -> usize {
    let quarters = d.as_micros().div_ceil(250) as u64;
    if quarters <= 1 {
        return 0;
    }
    // The smallest i with 2^i >= quarters.
    ((64 - (quarters - 1).leading_zeros()) as usize).min(LATENCY_BUCKETS)
}

impl TypedMetric for FrameLatency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for FrameLatency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let total = |field: fn(&LatencyCounts) -> &AtomicU64| -> u64 {
            self.0
                .iter()
                .map(|c| field(c).load(Ordering::Relaxed))
                .sum()
        };
        // f64::MAX is how prometheus-client spells the +Inf bucket.
        let buckets: Vec<(f64, u64)> = latency_bounds()
            .chain(std::iter::once(f64::MAX))
            .enumerate()
            .map(|(i, bound)| {
                (
                    bound,
                    self.0
                        .iter()
                        .map(|c| c.buckets[i].load(Ordering::Relaxed))
                        .sum(),
                )
            })
            .collect();
        let sum = total(|c| &c.sum_ns) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, total(|c| &c.count), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_the_first_bucket_that_holds_them() {
        let bounds: Vec<f64> = latency_bounds().collect();
        for micros in [
            0u64, 1, 249, 250, 251, 499, 500, 501, 1000, 1001, 8_191_999, 8_192_000, 8_192_001,
            60_000_000,
        ] {
            let d = Duration::from_micros(micros);
            let expected = bounds
                .iter()
                .position(|b| *b >= d.as_secs_f64() - 1e-12)
                .unwrap_or(LATENCY_BUCKETS);
            assert_eq!(bucket_of(d), expected, "{micros} µs");
        }
    }

    #[test]
    fn a_scrape_sums_what_every_thread_recorded() {
        let m = Metrics::default();
        // More threads than shards: some share one.
        std::thread::scope(|scope| {
            for _ in 0..(LATENCY_SHARDS + 3) {
                scope.spawn(|| m.latency.observe_written(std::iter::once(Instant::now())));
            }
        });
        let text = m.render();
        let n = LATENCY_SHARDS + 3;
        assert!(
            text.contains(&format!("herald_publish_to_socket_seconds_count {n}")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "herald_publish_to_socket_seconds_bucket{{le=\"+Inf\"}} {n}"
            )),
            "{text}"
        );
    }

    #[test]
    fn the_histogram_encodes_cumulative_buckets_count_and_sum() {
        let m = Metrics::default();
        let now = Instant::now();
        let born = [
            now,
            now - Duration::from_millis(3),
            now - Duration::from_secs(30),
        ];
        m.latency.observe_written(born.into_iter());
        let text = m.render();
        assert!(
            text.contains("herald_publish_to_socket_seconds_count 3"),
            "{text}"
        );
        assert!(
            text.contains("herald_publish_to_socket_seconds_bucket{le=\"0.00025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("herald_publish_to_socket_seconds_bucket{le=\"0.004\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("herald_publish_to_socket_seconds_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
    }
}
