//! What the `herald bench fanout` parent and its worker processes agree on: which subscriber goes
//! where (topic, hub, source address, stalled or not), and the JSON lines they exchange (commands
//! on the worker's stdin, messages on its stdout).
//!
//! Every placement is a pure function of the subscriber's global index, so the parent and every
//! worker compute the same plan without sending it.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The placeholder replaced by a topic in `--subscribe-url` and `--publish-url` templates.
pub(super) const TOPIC_PLACEHOLDER: &str = "{topic}";

/// How topics are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TopicNames {
    /// `urn:herald:bench:{i}`, percent-encoded into the Mercure `topic=` query field.
    Mercure,
    /// `bench{i}`: short and URL-safe, pasted as-is into a `{topic}` template.
    Short,
}

impl TopicNames {
    /// The name of topic `t`.
    pub(super) fn name(self, t: u64) -> String {
        match self {
            Self::Mercure => super::topic(t),
            Self::Short => format!("bench{t}"),
        }
    }

    /// Topic `t` as it goes into a URL template or a Mercure query.
    pub(super) fn in_url(self, t: u64) -> String {
        match self {
            Self::Mercure => super::encode(&self.name(t)),
            Self::Short => self.name(t),
        }
    }
}

/// The topic subscriber `i` listens to, out of `topics`.
pub(super) fn topic_of(i: u64, topics: u64) -> u64 {
    i % topics.max(1)
}

/// The source address subscriber `i` binds to: 127.0.0.1, 127.0.0.2, … round-robin over `addrs`.
pub(super) fn source_addr(i: u64, addrs: u32) -> Ipv4Addr {
    let offset = u32::try_from(i % u64::from(addrs.max(1))).unwrap_or(0);
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)).saturating_add(offset))
}

/// Whether subscriber `i` stalls (stops reading after its first event) when `percent` of them do.
///
/// A hash of the index, not `i % 100`, so that stalled subscribers are not all on the same topics.
pub(super) fn is_stalled(i: u64, percent: f64) -> bool {
    if percent <= 0.0 {
        return false;
    }
    let threshold = (percent * 10_000.0).round() as u64; // of 1,000,000
    splitmix64(i) % 1_000_000 < threshold
}

/// A well-mixed 64-bit hash of `x` (SplitMix64's finaliser).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Parent → worker, one per stdin line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub(super) enum Command {
    /// Publishing is over: `published[t]` updates of topic `t` were answered 200. Wait up to
    /// `drain_ms` for every subscriber to receive its topic's, then report.
    Finish {
        /// Updates answered 200, by topic.
        published: Vec<u64>,
        /// Longest wait for the deliveries, in milliseconds.
        drain_ms: u64,
    },
}

/// Worker → parent, one per stdout line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub(super) enum Message {
    /// Every subscriber of the worker connected (response head received) or failed.
    Connected(Connected),
    /// Deliveries after the drain.
    Report(Box<WorkerReport>),
    /// What became of the stalled subscribers (sent after `Report`, last message).
    Stalled(StallReport),
}

/// A worker's connection phase.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Connected {
    /// Subscribers whose response head (200) arrived.
    pub connected: u64,
    /// Subscribers that could not connect or were refused.
    pub failed: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// From the first connection attempt until every subscriber connected or failed.
    pub connect_ms: f64,
    /// Connected subscribers by subscribe target (hub) index.
    pub per_target: Vec<u64>,
    /// The worker's CPU time so far, in clock ticks.
    pub cpu_ticks: u64,
    /// Reads that returned stream bytes so far.
    #[serde(default)]
    pub reads: u64,
}

/// A worker's deliveries.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct WorkerReport {
    /// Connected subscribers that stalled on purpose (excluded from everything below).
    pub stalled: u64,
    /// Deliveries expected by the connected, non-stalled subscribers.
    pub expected: u64,
    /// Distinct updates received.
    pub delivered: u64,
    /// Expected updates not received after the drain.
    pub missing: u64,
    /// Updates received again.
    pub duplicates: u64,
    /// Updates received after a later update of the same topic.
    pub out_of_order: u64,
    /// Events beyond what was expected: for another topic, without a sequence number, or more
    /// distinct updates than were answered 200.
    pub unexpected: u64,
    /// Updates sent before the run started (the server's history of an earlier run), ignored.
    pub stale: u64,
    /// Subscribers that did not receive all they expected before the drain ended.
    pub incomplete: u64,
    /// Successful reconnections (`--reconnect`).
    pub reconnects: u64,
    /// Failed reconnection attempts.
    pub reconnect_failures: u64,
    /// Streams that ended and were not reconnected.
    pub disconnected: u64,
    /// The first reason a stream ended or a reconnection failed, if any.
    pub first_disconnect: Option<String>,
    /// The order in which complete subscribers (every expected update once) received their
    /// topic's updates: (topic, order hash, subscribers with that hash).
    pub orders: Vec<(u64, u64, u64)>,
    /// When the last distinct update arrived, µs since the Unix epoch (0: none).
    pub last_delivery_us: u64,
    /// The latency histogram: (value in µs, count) pairs.
    pub latency: Vec<(u64, u64)>,
    /// The worker's CPU time so far, in clock ticks.
    pub cpu_ticks: u64,
    /// Reads that returned stream bytes so far.
    #[serde(default)]
    pub reads: u64,
    /// The worker's resident set size, in KiB.
    pub rss_kib: u64,
}

/// What the stalled subscribers saw once they read again after the drain.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct StallReport {
    /// Stalled subscribers.
    pub stalled: u64,
    /// Of those, streams the server had ended (or connections it had closed or reset).
    pub cut_off: u64,
}

/// Of the complete subscribers in `orders` (from every worker), how many there are and how many
/// received their topic's updates in another order than most subscribers of the topic did.
pub(super) fn order_mismatches<'a>(
    orders: impl IntoIterator<Item = &'a (u64, u64, u64)>,
) -> (u64, u64) {
    let mut by_topic: HashMap<u64, HashMap<u64, u64>> = HashMap::new();
    for &(topic, hash, n) in orders {
        *by_topic.entry(topic).or_default().entry(hash).or_default() += n;
    }
    let mut checked = 0;
    let mut mismatched = 0;
    for hashes in by_topic.values() {
        let total: u64 = hashes.values().sum();
        let most = hashes.values().copied().max().unwrap_or(0);
        checked += total;
        mismatched += total - most;
    }
    (checked, mismatched)
}

/// A histogram as (value, count) pairs: each recorded bucket's highest equivalent value and count.
pub(super) fn histogram_counts(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Adds (value, count) pairs to `h`.
pub(super) fn add_counts(h: &mut Histogram<u64>, counts: &[(u64, u64)]) {
    for &(value, count) in counts {
        h.saturating_record_n(value, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_round_robin() {
        assert_eq!(topic_of(7, 3), 1);
        assert_eq!(topic_of(7, 0), 0);
        assert_eq!(source_addr(0, 3), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_addr(4, 3), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(300, 1000), Ipv4Addr::new(127, 0, 1, 45));
    }

    #[test]
    fn stalled_share_is_close_to_the_percentage() {
        let n = 100_000;
        let stalled = (0..n).filter(|&i| is_stalled(i, 10.0)).count();
        assert!((9_500..10_500).contains(&stalled), "{stalled}");
        assert!(!(0..n).any(|i| is_stalled(i, 0.0)));
        assert!((0..n).all(|i| is_stalled(i, 100.0)));
        // Spread over topics: each of 10 topics gets some.
        for t in 0..10 {
            assert!((0..n).any(|i| is_stalled(i, 10.0) && topic_of(i, 10) == t));
        }
    }

    #[test]
    fn order_mismatches_against_the_majority_per_topic() {
        assert_eq!(order_mismatches(&[]), (0, 0));
        let orders = [(0, 7, 10), (0, 8, 2), (1, 9, 5), (0, 7, 3), (1, 6, 1)];
        assert_eq!(order_mismatches(&orders), (21, 3));
    }

    #[test]
    fn histogram_counts_round_trip() {
        let mut h = super::super::histogram().unwrap();
        for v in [1, 5, 5, 900, 1_234_567] {
            h.record(v).unwrap();
        }
        let mut merged = super::super::histogram().unwrap();
        add_counts(&mut merged, &histogram_counts(&h));
        assert_eq!(merged.len(), 5);
        assert_eq!(merged.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert_eq!(merged.max(), h.max());
    }

    #[test]
    fn messages_are_one_line_of_json() {
        let line = serde_json::to_string(&Message::Connected(Connected {
            connected: 3,
            ..Connected::default()
        }))
        .unwrap();
        assert!(!line.contains('\n'));
        assert!(matches!(
            serde_json::from_str::<Message>(&line).unwrap(),
            Message::Connected(Connected { connected: 3, .. })
        ));
        let cmd: Command =
            serde_json::from_str(r#"{"cmd":"finish","published":[1,2],"drain_ms":5}"#).unwrap();
        let Command::Finish { published, .. } = cmd;
        assert_eq!(published, [1, 2]);
    }
}
