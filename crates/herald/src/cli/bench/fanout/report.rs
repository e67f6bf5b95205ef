//! The report of `herald bench fanout`: its JSON form and its compact table.

use serde::Serialize;

use super::super::{mebibytes, thousands, Latency, ProcSample};
use super::Published;

/// The result of a run (also its `--json` form).
#[derive(Debug, Serialize)]
pub(in super::super) struct Report {
    /// Always `"fanout"`.
    pub scenario: &'static str,
    /// The Mercure endpoints.
    pub hubs: Vec<String>,
    /// Subscribe URL templates, when not Mercure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscribe_urls: Vec<String>,
    /// Publish URL templates, when not Mercure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish_urls: Vec<String>,
    /// Subscribers asked for.
    pub subscribers: u64,
    /// Topics.
    pub topics: u64,
    /// Updates per second asked for.
    pub rate: f64,
    /// Seconds of publishing asked for.
    pub duration_s: f64,
    /// Bytes of data per update.
    pub size: usize,
    /// Worker processes.
    pub processes: u64,
    /// Source addresses.
    pub source_addrs: u64,
    /// Percentage of subscribers that stall.
    pub stall_percent: f64,
    /// Whether subscribers reconnect.
    pub reconnect: bool,
    /// Subscribers whose first connection got a 200 response head.
    pub subscribers_connected: u64,
    /// Subscribers that could not connect or were refused.
    pub subscribers_failed: u64,
    /// The first connection failure.
    pub first_error: Option<String>,
    /// Until every subscriber connected or failed, in milliseconds (the slowest worker).
    pub connect_ms: f64,
    /// `subscribers_connected` per second of `connect_ms`.
    pub connects_per_s: f64,
    /// Connected subscribers that stalled on purpose (excluded from the deliveries).
    pub stalled: u64,
    /// Of those, streams the server ended (seen when they read again after the drain).
    pub stalled_cut_off: u64,
    /// Updates answered 2xx (only those are expected).
    pub updates_published: u64,
    /// Updates not answered 2xx.
    pub updates_failed: u64,
    /// Distinct deliveries expected: for each published update, the connected non-stalled
    /// subscribers of its topic.
    pub expected: u64,
    /// Distinct deliveries received.
    pub delivered: u64,
    /// Expected deliveries not received after the drain.
    pub missing: u64,
    /// Deliveries received again.
    pub duplicates: u64,
    /// Deliveries received after a higher-numbered update of the same topic. Publishes run
    /// concurrently, so the hub may log them in another order than they were numbered: this is
    /// not an error by itself (see `order_mismatches`).
    pub out_of_order: u64,
    /// Subscribers that received every expected update once, whose arrival order was compared
    /// with the other such subscribers of their topic.
    pub order_checked: u64,
    /// Of those, subscribers that received their topic's updates in another order than most
    /// (the hub has one log order for every subscriber: any is an error).
    pub order_mismatches: u64,
    /// Events nobody expected (another topic, no sequence number, more than published).
    pub unexpected: u64,
    /// Updates from before the run (the server's history of an earlier run on the same topics),
    /// ignored.
    pub stale: u64,
    /// Subscribers still missing updates when the drain ended.
    pub incomplete_subscribers: u64,
    /// `delivered` per second, from the first publish to the last delivery (at least the
    /// publishing time).
    pub delivered_per_s: f64,
    /// Publish → receive latency of the distinct deliveries, in microseconds (the publish's due
    /// time to the read that brought it).
    pub latency_us: Latency,
    /// Successful reconnections.
    pub reconnects: u64,
    /// Failed reconnection attempts.
    pub reconnect_failures: u64,
    /// Streams that ended and were not reconnected (without `--reconnect`).
    pub disconnected: u64,
    /// Why the first stream ended or reconnection failed.
    pub first_disconnect: Option<String>,
    /// The publisher's details.
    pub publish: Published,
    /// Seconds from all subscribers connected to the end of the drain (the CPU window).
    pub window_s: f64,
    /// The servers' usage, with `--pid`.
    pub hub_processes: Vec<HubProcess>,
    /// This generator's usage (parent and workers).
    pub generator: Generator,
}

/// A server process's usage.
#[derive(Debug, Serialize)]
pub(in super::super) struct HubProcess {
    /// Its process id.
    pub pid: u32,
    /// CPU time in the window, in seconds.
    pub cpu_s: f64,
    /// `cpu_s` per second of the window: 1.0 is one core busy all along.
    pub cores: f64,
    /// RSS before the subscribers connected, in KiB.
    pub rss_before_kib: u64,
    /// RSS once all were connected (after the hold with `--rate 0`), in KiB.
    pub rss_connected_kib: u64,
    /// RSS at the end, in KiB.
    pub rss_kib: u64,
    /// Peak RSS of its life, in KiB.
    pub peak_rss_kib: u64,
    /// Subscribers connected to it (all of them when there is one `--pid` per hub is not given).
    pub subscribers: u64,
    /// (`rss_connected_kib` − `rss_before_kib`) / `subscribers`.
    pub rss_per_subscriber_kib: Option<f64>,
    /// Write-type system calls per second of the window (`syscw` of `/proc/PID/io`), when
    /// readable. Set beside the generator's `reads_per_s`: a generator that keeps up reads about
    /// as often as the server writes; one that falls behind takes several writes per read, and
    /// what waits unread in its sockets counts in the latency it measures.
    pub write_calls_per_s: Option<f64>,
}

impl HubProcess {
    /// Usage of `pid` from its samples: before connecting, once connected (after the hold), at
    /// the window's start and end.
    #[allow(clippy::too_many_arguments)]
    pub(in super::super) fn new(
        pid: u32,
        before: Option<ProcSample>,
        connected: Option<ProcSample>,
        window_start: Option<ProcSample>,
        after: Option<ProcSample>,
        window_s: f64,
        ticks_per_s: f64,
        subscribers: u64,
    ) -> Self {
        let rss = |s: Option<ProcSample>| s.map_or(0, |s| s.rss_kib);
        let cpu_s = match (window_start, after) {
            (Some(a), Some(b)) => b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / ticks_per_s,
            _ => 0.0,
        };
        let grown = rss(connected) as f64 - rss(before) as f64;
        let write_calls = match (window_start, after) {
            (Some(a), Some(b)) => a
                .write_calls
                .zip(b.write_calls)
                .map(|(a, b)| b.saturating_sub(a)),
            _ => None,
        };
        Self {
            pid,
            cpu_s,
            cores: if window_s > 0.0 {
                cpu_s / window_s
            } else {
                0.0
            },
            rss_before_kib: rss(before),
            rss_connected_kib: rss(connected),
            rss_kib: rss(after),
            peak_rss_kib: after.map_or(0, |s| s.peak_rss_kib),
            subscribers,
            rss_per_subscriber_kib: (subscribers > 0).then(|| grown / subscribers as f64),
            write_calls_per_s: write_calls
                .filter(|_| window_s > 0.0)
                .map(|n| n as f64 / window_s),
        }
    }
}

/// The generator's usage: the parent and its workers.
#[derive(Debug, Serialize)]
pub(in super::super) struct Generator {
    /// Processes (workers and the parent).
    pub processes: u64,
    /// CPU time in the window, in seconds.
    pub cpu_s: f64,
    /// `cpu_s` per second of the window.
    pub cores: f64,
    /// RSS of all its processes at the end, in KiB.
    pub rss_kib: u64,
    /// Reads of the subscribers' sockets that returned stream bytes, per second of the window.
    pub reads_per_s: f64,
}

impl Generator {
    /// `cpu_s` seconds used and `reads` socket reads done in `window_s`.
    pub(in super::super) fn new(
        processes: u64,
        cpu_s: f64,
        reads: u64,
        window_s: f64,
        rss_kib: u64,
    ) -> Self {
        let per_s = |x: f64| if window_s > 0.0 { x / window_s } else { 0.0 };
        Self {
            processes,
            cpu_s,
            cores: per_s(cpu_s),
            rss_kib,
            reads_per_s: per_s(reads as f64),
        }
    }
}

/// `n` and the noun, pluralised.
fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{} {many}", thousands(n))
    }
}

/// Microseconds as milliseconds.
fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

impl Report {
    /// Whether the run passed: every subscriber connected, nothing missing, nothing twice, one
    /// order per topic.
    pub(in super::super) fn passed(&self) -> bool {
        self.subscribers_failed == 0
            && self.missing == 0
            && self.duplicates == 0
            && self.order_mismatches == 0
    }

    /// The human-readable report.
    pub(in super::super) fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        rows.push((
            "subscribers".into(),
            format!(
                "{} connected, {} failed in {:.0} ms ({}/s)",
                thousands(self.subscribers_connected),
                thousands(self.subscribers_failed),
                self.connect_ms,
                thousands(self.connects_per_s.round() as u64)
            ),
        ));
        if let Some(e) = &self.first_error {
            rows.push(("first failure".into(), e.clone()));
        }
        let p = &self.publish;
        if self.rate > 0.0 {
            rows.push((
                "publishes".into(),
                format!(
                    "{} ok, {} failed; lag {:.1} ms at the end, {:.1} ms at most",
                    thousands(p.ok),
                    thousands(p.failed),
                    p.lag_last_ms,
                    p.lag_max_ms
                ),
            ));
            if let Some(e) = &p.first_error {
                rows.push(("publish failure".into(), e.clone()));
            }
            rows.push((
                "deliveries".into(),
                format!(
                    "{} of {} expected ({}/s); {} missing, {} duplicates, {} out of publish order",
                    thousands(self.delivered),
                    thousands(self.expected),
                    thousands(self.delivered_per_s.round() as u64),
                    thousands(self.missing),
                    thousands(self.duplicates),
                    thousands(self.out_of_order)
                ),
            ));
            rows.push((
                "order".into(),
                if self.order_mismatches == 0 {
                    format!(
                        "the same for all {} complete subscribers of each topic",
                        thousands(self.order_checked)
                    )
                } else {
                    format!(
                        "{} of {} complete subscribers saw another order than most of their topic",
                        thousands(self.order_mismatches),
                        thousands(self.order_checked)
                    )
                },
            ));
            if self.unexpected > 0 {
                rows.push(("unexpected".into(), thousands(self.unexpected)));
            }
            if self.stale > 0 {
                rows.push((
                    "stale".into(),
                    format!(
                        "{} updates from an earlier run (the server's history), ignored",
                        thousands(self.stale)
                    ),
                ));
            }
            let l = &self.latency_us;
            rows.push((
                "latency ms".into(),
                format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                    ms(l.p50),
                    ms(l.p90),
                    ms(l.p99),
                    ms(l.p999),
                    ms(l.max)
                ),
            ));
        } else {
            rows.push(("publishes".into(), "none (--rate 0)".into()));
        }
        if self.stall_percent > 0.0 {
            rows.push((
                "stalled".into(),
                format!(
                    "{}, {} cut off by the server",
                    thousands(self.stalled),
                    thousands(self.stalled_cut_off)
                ),
            ));
        }
        if self.reconnect || self.reconnects > 0 {
            rows.push((
                "reconnects".into(),
                format!(
                    "{} ({} failed attempts)",
                    thousands(self.reconnects),
                    thousands(self.reconnect_failures)
                ),
            ));
        }
        if self.disconnected > 0 {
            rows.push((
                "disconnected".into(),
                format!(
                    "{}: {}",
                    thousands(self.disconnected),
                    self.first_disconnect.as_deref().unwrap_or("")
                ),
            ));
        }
        for h in &self.hub_processes {
            let per_sub = h
                .rss_per_subscriber_kib
                .map_or(String::new(), |k| format!(", {k:.1} KiB/subscriber"));
            let writes = h.write_calls_per_s.map_or(String::new(), |w| {
                format!(", {} write calls/s", thousands(w.round() as u64))
            });
            rows.push((
                format!("server {}", h.pid),
                format!(
                    "{:.2} cores, RSS {} (before {}, peak {}){per_sub}{writes}",
                    h.cores,
                    mebibytes(h.rss_connected_kib.max(h.rss_kib)),
                    mebibytes(h.rss_before_kib),
                    mebibytes(h.peak_rss_kib)
                ),
            ));
        }
        rows.push((
            "generator".into(),
            format!(
                "{:.2} cores in {}, RSS {}, {} reads/s",
                self.generator.cores,
                count(self.generator.processes, "process", "processes"),
                mebibytes(self.generator.rss_kib),
                thousands(self.generator.reads_per_s.round() as u64)
            ),
        ));

        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let publishing = if self.rate > 0.0 {
            format!(
                "{} updates/s for {} s, {}-byte data",
                thousands(self.rate.round() as u64),
                self.duration_s,
                self.size
            )
        } else {
            "idle".to_owned()
        };
        let urls = if self.subscribe_urls.is_empty() {
            &self.hubs
        } else {
            &self.subscribe_urls
        };
        let target = match urls.len() {
            0 => String::new(),
            1 => urls[0].clone(),
            n => format!("{} (and {} more)", urls[0], n - 1),
        };
        let mut out = format!(
            "herald bench fanout → {target}\n  {} on {}, {publishing}, {}, {}\n\n",
            count(self.subscribers, "subscriber", "subscribers"),
            count(self.topics, "topic", "topics"),
            count(self.processes, "worker process", "worker processes"),
            count(self.source_addrs, "source address", "source addresses"),
        );
        for (k, v) in rows {
            out.push_str(&format!("  {k:<width$}  {v}\n"));
        }
        out
    }
}
