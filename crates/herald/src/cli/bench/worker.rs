//! `herald bench fanout-worker` (hidden): one subscriber process of `herald bench fanout`.
//!
//! The parent starts it with its share of the subscribers (global indices `first..first+count`)
//! and talks to it in JSON lines ([`super::protocol`]): the worker connects its subscribers at
//! its share of the connect rate, says `connected`, waits for `finish` with the published counts,
//! waits for the deliveries (at most the drain time), says `report`, then lets its stalled
//! subscribers read again and says `stalled`. It exits when its stdin closes (the parent died).
//!
//! One thread, one current-thread runtime, one task per subscriber: a worker uses at most one
//! core, and the subscribers share its read buffer.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::http1::{resolve_ipv4, Target};
use super::protocol::{
    histogram_counts, is_stalled, source_addr, topic_of, Command, Connected, Message, StallReport,
    TopicNames, WorkerReport, TOPIC_PLACEHOLDER,
};
use super::subscriber::{self, Shared, Spec};
use super::tally::Tally;
use super::{histogram, ProcSample};

/// Longest the stalled subscribers' probe may take in all.
const PROBE_LIMIT: Duration = Duration::from_secs(15);

/// Arguments of the hidden `herald bench fanout-worker` (set by `herald bench fanout`).
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Subscribe URL templates with `{topic}`, one per target; subscriber `i` uses `i % len`.
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Topics are `bench{i}` (else `urn:herald:bench:{i}`, percent-encoded).
    #[arg(long)]
    short_topics: bool,
    /// Global index of this worker's first subscriber.
    #[arg(long)]
    first: u64,
    /// This worker's subscribers.
    #[arg(long)]
    count: u64,
    /// Topics in all.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    topics: u64,
    /// Source addresses 127.0.0.1 … in all.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    source_addrs: u32,
    /// This worker's new connections per second.
    #[arg(long)]
    connect_rate: f64,
    /// Percentage of all subscribers that stall.
    #[arg(long, default_value_t = 0.0)]
    stall: f64,
    /// Reopen ended streams with `Last-Event-ID`.
    #[arg(long)]
    reconnect: bool,
    /// When the run started, µs since the Unix epoch: updates sent before are from an earlier run.
    #[arg(long, default_value_t = 0)]
    since_us: u64,
}

/// Runs the worker on a thread of its own with a current-thread runtime; returns its exit code.
pub async fn run(args: WorkerArgs) -> ExitCode {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("fanout-worker".into())
        .spawn(move || {
            let _ = done_tx.send(run_here(args));
        });
    if let Err(e) = spawned {
        eprintln!("herald: fanout worker: cannot start its thread: {e}");
        return ExitCode::FAILURE;
    }
    done_rx.await.unwrap_or(ExitCode::FAILURE)
}

fn run_here(args: WorkerArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: fanout worker: cannot start its runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, work(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("herald: fanout worker: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn work(args: WorkerArgs) -> Result<(), String> {
    let mut commands = read_commands()?;
    let names = if args.short_topics {
        TopicNames::Short
    } else {
        TopicNames::Mercure
    };
    let count = usize::try_from(args.count).map_err(|_| "too many subscribers".to_owned())?;
    let mut targets = Targets::new(&args.urls, names);
    let mut specs = Vec::with_capacity(count);
    let mut tallies = Vec::with_capacity(count);
    let mut per_target = vec![0u64; args.urls.len()];
    for (index, i) in (args.first..args.first + args.count).enumerate() {
        let topic = topic_of(i, args.topics);
        let target_index = usize::try_from(i % args.urls.len() as u64).unwrap_or(0);
        specs.push((
            target_index,
            Spec {
                index,
                target: targets.get(target_index, topic)?,
                source: source_addr(i, args.source_addrs),
                port_seed: i / u64::from(args.source_addrs),
            },
        ));
        tallies.push(Tally::new(topic, is_stalled(i, args.stall)));
    }
    let shared = Rc::new(Shared::new(
        tallies,
        histogram()?,
        args.topics,
        args.reconnect,
        args.since_us,
    ));

    // Connect, paced: subscriber j starts at j / rate.
    let start = Instant::now();
    let rate = if args.connect_rate > 0.0 {
        args.connect_rate
    } else {
        f64::INFINITY
    };
    for (j, (_, spec)) in specs.iter().enumerate() {
        let due = start + Duration::from_secs_f64(j as f64 / rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let spec = Spec {
            index: spec.index,
            target: spec.target.clone(),
            source: spec.source,
            port_seed: spec.port_seed,
        };
        tokio::task::spawn_local(subscriber::run(shared.clone(), spec));
    }
    loop {
        let changed = shared.settled_changed.notified();
        if shared.settled.get() >= args.count {
            break;
        }
        changed.await;
    }
    let connect_ms = start.elapsed().as_secs_f64() * 1000.0;
    {
        let tallies = shared.tallies.borrow();
        for ((target_index, _), tally) in specs.iter().zip(tallies.iter()) {
            if tally.connected {
                if let Some(n) = per_target.get_mut(*target_index) {
                    *n += 1;
                }
            }
        }
    }
    send(&Message::Connected(Connected {
        connected: args.count - shared.failed.get(),
        failed: shared.failed.get(),
        first_error: shared.first_error.borrow().clone(),
        connect_ms,
        per_target,
        cpu_ticks: ProcSample::read("self")?.cpu_ticks,
        reads: shared.reads.get(),
    }))?;

    let Some(Command::Finish {
        published,
        drain_ms,
    }) = commands.recv().await
    else {
        return Err("the parent went away".into());
    };
    shared.finish(&published);
    let drained = async {
        loop {
            let changed = shared.all_complete.notified();
            if shared.incomplete.get() == 0 {
                break;
            }
            changed.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(drain_ms), drained).await;
    send(&Message::Report(Box::new(report(&shared)?)))?;

    // Stalled subscribers read again: did the server end their streams?
    let stalled = shared.stalled_waiting.get();
    shared.probe.send_replace(true);
    let probed = async {
        loop {
            let changed = shared.probe_done.notified();
            if shared.probed.get() >= stalled {
                break;
            }
            changed.await;
        }
    };
    let _ = tokio::time::timeout(PROBE_LIMIT, probed).await;
    send(&Message::Stalled(StallReport {
        stalled: shared
            .tallies
            .borrow()
            .iter()
            .filter(|t| t.connected && t.stalls)
            .count() as u64,
        cut_off: shared.cut_off.get(),
    }))?;
    Ok(())
}

/// The deliveries counted so far.
fn report(shared: &Shared) -> Result<WorkerReport, String> {
    let mut r = WorkerReport::default();
    let mut orders = HashMap::new();
    for t in shared.tallies.borrow().iter().filter(|t| t.connected) {
        if t.stalls {
            r.stalled += 1;
            continue;
        }
        r.expected += t.expected;
        r.delivered += t.unique;
        r.missing += t.expected.saturating_sub(t.unique);
        r.unexpected += t.unique.saturating_sub(t.expected);
        r.duplicates += t.duplicates;
        r.out_of_order += t.out_of_order;
        if t.unique < t.expected {
            r.incomplete += 1;
        }
        if t.expected > 0 && t.unique == t.expected && t.duplicates == 0 {
            *orders.entry((t.topic, t.order)).or_insert(0u64) += 1;
        }
    }
    r.orders = orders.into_iter().map(|((t, h), n)| (t, h, n)).collect();
    r.unexpected += shared.unexpected.get();
    r.stale = shared.stale.get();
    r.reconnects = shared.reconnects.get();
    r.reconnect_failures = shared.reconnect_failures.get();
    r.disconnected = shared.disconnected.get();
    r.first_disconnect = shared.first_disconnect.borrow().clone();
    r.last_delivery_us = shared.last_delivery_us.get();
    r.latency = histogram_counts(&shared.latency.borrow());
    let me = ProcSample::read("self")?;
    r.cpu_ticks = me.cpu_ticks;
    r.reads = shared.reads.get();
    r.rss_kib = me.rss_kib;
    Ok(r)
}

/// Writes one message line to the parent.
fn send(message: &Message) -> Result<(), String> {
    let mut line =
        serde_json::to_string(message).map_err(|e| format!("cannot encode a message: {e}"))?;
    line.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to the parent: {e}"))
}

/// The parent's commands, read on a thread of their own. The process exits when stdin closes:
/// the parent is gone and nobody would read the results.
fn read_commands() -> Result<mpsc::UnboundedReceiver<Command>, String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("fanout-commands".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Command>(&line) {
                    Ok(command) => {
                        let _ = tx.send(command);
                    }
                    Err(e) => {
                        eprintln!("herald: fanout worker: unreadable command: {e}");
                        break;
                    }
                }
            }
            std::process::exit(2);
        })
        .map_err(|e| format!("cannot start the command reader: {e}"))?;
    Ok(rx)
}

/// Subscribe targets by (template, topic), built once each, with host names resolved once.
struct Targets<'a> {
    templates: &'a [String],
    names: TopicNames,
    built: HashMap<(usize, u64), Rc<Target>>,
    resolved: HashMap<String, SocketAddr>,
}

impl<'a> Targets<'a> {
    fn new(templates: &'a [String], names: TopicNames) -> Self {
        Self {
            templates,
            names,
            built: HashMap::new(),
            resolved: HashMap::new(),
        }
    }

    fn get(&mut self, template: usize, topic: u64) -> Result<Rc<Target>, String> {
        if let Some(t) = self.built.get(&(template, topic)) {
            return Ok(t.clone());
        }
        let url = self
            .templates
            .get(template)
            .ok_or("no subscribe URL")?
            .replace(TOPIC_PLACEHOLDER, &self.names.in_url(topic));
        let resolved = &mut self.resolved;
        let target = Rc::new(Target::parse(&url, |host, port| {
            let key = format!("{host}:{port}");
            if let Some(addr) = resolved.get(&key) {
                return Ok(*addr);
            }
            let addr = resolve_ipv4(host, port)?;
            resolved.insert(key, addr);
            Ok(addr)
        })?);
        self.built.insert((template, topic), target.clone());
        Ok(target)
    }
}
