//! What the engine counts, for `/metrics`. Names follow Mercure's where one exists
//! (`mercure_subscribers_connected`, `mercure_subscribers_total`, `mercure_updates_total`); the rest
//! are `herald_…`. Counters are atomics: recording costs no lock.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Why a publish failed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum FailureReason {
    /// The id was already in the log.
    Duplicate,
    /// The store refused or failed.
    Store,
    /// The hub was shutting down.
    Closed,
}

/// Label set of a publish failure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Why.
    pub reason: FailureReason,
}

/// Where a replay was read from.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ReplaySource {
    /// The in-memory tail of recent updates.
    Memory,
    /// The store.
    Store,
}

/// Label set of a replay.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplayLabels {
    /// Where it came from.
    pub source: ReplaySource,
}

/// The engine's metrics. Cheap to clone (every metric is shared).
#[derive(Debug, Clone)]
pub struct HubMetrics {
    /// Updates accepted (`mercure_updates_total`).
    pub updates: Counter,
    /// Publishes refused after reaching the hub, by reason.
    pub publish_failures: Family<FailureLabels, Counter>,
    /// Live subscribers now (`mercure_subscribers_connected`).
    pub subscribers_connected: Gauge,
    /// Subscriptions started (`mercure_subscribers_total`).
    pub subscriptions: Counter,
    /// Frames handed to subscribers' queues.
    pub deliveries: Counter,
    /// Subscribers cut off for falling behind.
    pub slow_consumer_disconnects: Counter,
    /// Subscriptions that replayed history, by source.
    pub replays: Family<ReplayLabels, Counter>,
    /// Seconds from `publish()` to its answer (durable and offered to subscribers).
    pub publish_seconds: Histogram,
    /// Seconds from an update's commit to its frame leaving the subscriber's queue; one sample
    /// per batch of frames taken together (the age of its oldest frame).
    pub delivery_seconds: Histogram,
    /// Seconds one group commit took in the store.
    pub commit_seconds: Histogram,
    /// Updates per group commit.
    pub commit_batch_size: Histogram,
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self {
            updates: Counter::default(),
            publish_failures: Family::default(),
            subscribers_connected: Gauge::default(),
            subscriptions: Counter::default(),
            deliveries: Counter::default(),
            slow_consumer_disconnects: Counter::default(),
            replays: Family::default(),
            // 10 µs .. ~10 s
            publish_seconds: Histogram::new(exponential_buckets(1e-5, 2.0, 21)),
            delivery_seconds: Histogram::new(exponential_buckets(1e-5, 2.0, 21)),
            commit_seconds: Histogram::new(exponential_buckets(1e-5, 2.0, 21)),
            // 1 .. 4096
            commit_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        }
    }
}

impl HubMetrics {
    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("mercure_updates", "Updates accepted", self.updates.clone());
        registry.register(
            "mercure_subscribers_connected",
            "Subscribers connected now",
            self.subscribers_connected.clone(),
        );
        registry.register(
            "mercure_subscribers",
            "Subscriptions started",
            self.subscriptions.clone(),
        );
        registry.register(
            "herald_publish_failures",
            "Publishes refused by the hub, by reason",
            self.publish_failures.clone(),
        );
        registry.register(
            "herald_deliveries",
            "Frames handed to subscribers",
            self.deliveries.clone(),
        );
        registry.register(
            "herald_slow_consumer_disconnects",
            "Subscribers cut off for falling behind (they resume from the log)",
            self.slow_consumer_disconnects.clone(),
        );
        registry.register(
            "herald_replays",
            "Subscriptions that replayed history, by source",
            self.replays.clone(),
        );
        registry.register(
            "herald_publish_seconds",
            "Time from publish to answer (durable and offered to subscribers)",
            self.publish_seconds.clone(),
        );
        registry.register(
            "herald_delivery_seconds",
            "Time from an update's commit to its frame leaving the subscriber's queue \
             (sampled: the oldest frame of one batch in 16 taken together)",
            self.delivery_seconds.clone(),
        );
        registry.register(
            "herald_store_commit_seconds",
            "Time one group commit took in the store",
            self.commit_seconds.clone(),
        );
        registry.register(
            "herald_store_commit_batch_size",
            "Updates per group commit",
            self.commit_batch_size.clone(),
        );
    }

    pub(crate) fn failure(&self, reason: FailureReason) {
        self.publish_failures
            .get_or_create(&FailureLabels { reason })
            .inc();
    }

    pub(crate) fn replay(&self, source: ReplaySource) {
        self.replays.get_or_create(&ReplayLabels { source }).inc();
    }
}
