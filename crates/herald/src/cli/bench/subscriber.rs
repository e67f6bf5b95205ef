//! One fan-out subscriber: a raw HTTP/1.1 event stream read on a worker's single thread.
//!
//! All subscribers of a worker share one read buffer: a subscriber waits for its socket to be
//! readable, then reads and handles the bytes without yielding, so nobody else needs the buffer
//! meanwhile. Body bytes go through the chunked decoder (when the response is chunked) straight
//! into the subscriber's [`EventScanner`]; each event's sequence number and send time are
//! scanned from its data, and the delivery is counted in the subscriber's [`Tally`].

use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};

use super::http1::{parse_head, seq_and_sent, Framing, Target};
use super::scan::EventScanner;
use super::tally::{Arrival, Tally};
use super::unix_micros;

/// Longest wait for a connection and its response head.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A stalled subscriber that reads again decides the server still holds its stream after this
/// long without bytes.
const PROBE_IDLE: Duration = Duration::from_secs(1);
/// Size of the worker's shared read buffer.
const READ_BUFFER: usize = 16 * 1024;
/// Most reconnection delay, in milliseconds (the delay is random, from 0).
const RECONNECT_DELAY_MS: u64 = 250;

/// What the subscribers of one worker share (single-threaded: cells, no locks).
pub(super) struct Shared {
    /// The read buffer every subscriber reads into, one at a time.
    buf: RefCell<Vec<u8>>,
    /// Each subscriber's counts, by local index.
    pub tallies: RefCell<Vec<Tally>>,
    /// Publish → receive latency of the non-stalled subscribers' distinct updates, in µs.
    pub latency: RefCell<Histogram<u64>>,
    /// Topics in all (K).
    topics: u64,
    /// Whether ended streams are reopened.
    reconnect: bool,
    /// Subscribers whose first connection succeeded or failed.
    pub settled: Cell<u64>,
    /// Of those, how many failed.
    pub failed: Cell<u64>,
    /// The first connection failure.
    pub first_error: RefCell<Option<String>>,
    /// Signalled when a subscriber settles.
    pub settled_changed: Notify,
    /// Set when the parent sent the published counts: `complete` is tracked from then on.
    pub finishing: Cell<bool>,
    /// Non-stalled connected subscribers that have not received all they expect.
    pub incomplete: Cell<u64>,
    /// Signalled when `incomplete` reaches 0.
    pub all_complete: Notify,
    /// Successful reconnections.
    pub reconnects: Cell<u64>,
    /// Failed reconnection attempts.
    pub reconnect_failures: Cell<u64>,
    /// Streams that ended for good.
    pub disconnected: Cell<u64>,
    /// Why the first stream ended or reconnection failed.
    pub first_disconnect: RefCell<Option<String>>,
    /// Events that were not an expected benchmark update of the subscriber's topic.
    pub unexpected: Cell<u64>,
    /// Updates sent before this run started (µs since the Unix epoch) are from an earlier run.
    since_us: u64,
    /// Updates from an earlier run (the server's history), ignored.
    pub stale: Cell<u64>,
    /// When the last distinct update arrived (µs since the Unix epoch).
    pub last_delivery_us: Cell<u64>,
    /// Reads that returned stream bytes (each one wake-up of a subscriber with data).
    pub reads: Cell<u64>,
    /// Set to make stalled subscribers read again and find out whether the server ended them.
    pub probe: watch::Sender<bool>,
    /// Subscribers that stalled (stopped reading).
    pub stalled_waiting: Cell<u64>,
    /// Stalled subscribers that finished their probe.
    pub probed: Cell<u64>,
    /// Of those, streams the server had ended.
    pub cut_off: Cell<u64>,
    /// Signalled when a probe finishes.
    pub probe_done: Notify,
}

impl Shared {
    /// State for `tallies.len()` subscribers over `topics` topics, in a run that started at
    /// `since_us` (µs since the Unix epoch).
    pub(super) fn new(
        tallies: Vec<Tally>,
        latency: Histogram<u64>,
        topics: u64,
        reconnect: bool,
        since_us: u64,
    ) -> Self {
        Self {
            buf: RefCell::new(vec![0; READ_BUFFER]),
            tallies: RefCell::new(tallies),
            latency: RefCell::new(latency),
            topics: topics.max(1),
            reconnect,
            settled: Cell::new(0),
            failed: Cell::new(0),
            first_error: RefCell::new(None),
            settled_changed: Notify::new(),
            finishing: Cell::new(false),
            incomplete: Cell::new(0),
            all_complete: Notify::new(),
            reconnects: Cell::new(0),
            reconnect_failures: Cell::new(0),
            disconnected: Cell::new(0),
            first_disconnect: RefCell::new(None),
            unexpected: Cell::new(0),
            since_us,
            stale: Cell::new(0),
            last_delivery_us: Cell::new(0),
            reads: Cell::new(0),
            probe: watch::channel(false).0,
            stalled_waiting: Cell::new(0),
            probed: Cell::new(0),
            cut_off: Cell::new(0),
            probe_done: Notify::new(),
        }
    }

    /// Starts tracking completion: `expected[t]` updates of topic `t` were published.
    pub(super) fn finish(&self, published: &[u64]) {
        let mut incomplete = 0;
        for t in self.tallies.borrow_mut().iter_mut() {
            if !t.connected || t.stalls {
                continue;
            }
            t.expected = usize::try_from(t.topic)
                .ok()
                .and_then(|i| published.get(i))
                .copied()
                .unwrap_or(0);
            t.complete = t.unique >= t.expected;
            if !t.complete {
                incomplete += 1;
            }
        }
        self.incomplete.set(incomplete);
        self.finishing.set(true);
    }

    fn settle(&self, j: usize, result: Result<(), String>) {
        match result {
            Ok(()) => {
                if let Some(t) = self.tallies.borrow_mut().get_mut(j) {
                    t.connected = true;
                }
            }
            Err(e) => {
                self.failed.set(self.failed.get() + 1);
                self.first_error.borrow_mut().get_or_insert(e);
            }
        }
        self.settled.set(self.settled.get() + 1);
        self.settled_changed.notify_waiters();
    }

    fn note_disconnect(&self, reason: String) {
        self.first_disconnect.borrow_mut().get_or_insert(reason);
    }
}

/// Where a subscriber connects from and to.
pub(super) struct Spec {
    /// Its local index in the worker.
    pub index: usize,
    /// The server and request.
    pub target: Rc<Target>,
    /// The source address to bind.
    pub source: Ipv4Addr,
    /// Distinct for the subscribers of one source address: picks their source ports.
    pub port_seed: u64,
}

/// Explicit source ports are taken from `PORT_BASE ..` `PORT_BASE + PORT_SPAN`, below the
/// kernel's ephemeral range (whose ports it hands out to other connections).
const PORT_BASE: u64 = 10_000;
/// How many source ports there are to pick from.
const PORT_SPAN: u64 = 22_700;
/// A prime above the 10,000 subscribers a source address may have: the next candidate port of a
/// subscriber is not any subscriber's first.
const PORT_STRIDE: u64 = 10_007;
/// Candidate ports tried before the kernel picks one.
const PORT_ATTEMPTS: u32 = 8;

impl Spec {
    /// The source port of connection attempt `attempt`, or `None` to let the kernel choose.
    ///
    /// From 127.0.0.1 nothing is bound: connecting picks a free port per destination quickly.
    /// From another address the socket must be bound first, and binding to port 0 makes the
    /// kernel search every bound port for a free one (a cost that grows with each connection),
    /// so ports are chosen here: `seed` is unique per address, a port in use (another program,
    /// a closed connection in TIME_WAIT) moves on to the next candidate.
    fn source_port(&self, attempt: u32) -> Option<u16> {
        if self.source == Ipv4Addr::new(127, 0, 0, 1) || attempt % (PORT_ATTEMPTS + 1) == 0 {
            return None;
        }
        let k = u64::from(attempt);
        u16::try_from(PORT_BASE + (self.port_seed + k * PORT_STRIDE) % PORT_SPAN).ok()
    }
}

/// An open event stream whose response head was read.
struct Connection {
    stream: TcpStream,
    framing: Framing,
    /// Body bytes that came with the head.
    leftover: Vec<u8>,
}

/// Why reading a stream stopped.
enum End {
    /// The stream ended or failed, for this reason.
    Closed(String),
    /// The subscriber stalled on purpose after its first event.
    Stalled,
}

/// What handling one read's bytes led to.
enum Step {
    Continue,
    /// The body is complete (last chunk, or all of `Content-Length`).
    BodyEnd,
    Stalled,
    Failed(String),
}

/// Runs subscriber `spec.index` until the worker exits.
pub(super) async fn run(shared: Rc<Shared>, spec: Spec) {
    let j = spec.index;
    let mut attempt = 0;
    let first = tokio::time::timeout(CONNECT_TIMEOUT, open(&spec, None, &mut attempt)).await;
    let mut connection = match first {
        Ok(Ok(c)) => {
            shared.settle(j, Ok(()));
            c
        }
        Ok(Err(e)) => return shared.settle(j, Err(e)),
        Err(_) => {
            return shared.settle(
                j,
                Err(format!(
                    "{}: no response head in {CONNECT_TIMEOUT:?}",
                    spec.target.url
                )),
            )
        }
    };
    let mut decoder = EventScanner::default();
    loop {
        match pump(&shared, j, &mut connection, &mut decoder).await {
            End::Stalled => return stall(&shared, connection).await,
            End::Closed(reason) => {
                drop(connection);
                if !shared.reconnect {
                    shared.disconnected.set(shared.disconnected.get() + 1);
                    return shared.note_disconnect(reason);
                }
                decoder.finish();
                connection = loop {
                    let delay = rand::random_range(0..=RECONNECT_DELAY_MS);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let last_id = decoder.last_event_id();
                    let reopened = open(&spec, Some(&last_id), &mut attempt);
                    match tokio::time::timeout(CONNECT_TIMEOUT, reopened).await {
                        Ok(Ok(c)) => break c,
                        Ok(Err(e)) => shared.note_disconnect(e),
                        Err(_) => shared.note_disconnect(format!(
                            "{}: no response head in {CONNECT_TIMEOUT:?}",
                            spec.target.url
                        )),
                    }
                    shared
                        .reconnect_failures
                        .set(shared.reconnect_failures.get() + 1);
                };
                shared.reconnects.set(shared.reconnects.get() + 1);
            }
        }
    }
}

/// Connects from the spec's source address, sends the request and reads the response head.
///
/// `attempt` counts the connection attempts of the subscriber (they choose its source port).
async fn open(
    spec: &Spec,
    last_event_id: Option<&str>,
    attempt: &mut u32,
) -> Result<Connection, String> {
    let target = &spec.target;
    let fail = |what: &str, e: std::io::Error| format!("{}: {what}: {e}", target.url);
    let mut stream = loop {
        *attempt = attempt.wrapping_add(1);
        let port = spec.source_port(*attempt);
        let socket = TcpSocket::new_v4().map_err(|e| fail("cannot create a socket", e))?;
        socket
            .set_nodelay(true)
            .map_err(|e| fail("cannot set TCP_NODELAY", e))?;
        if spec.source != Ipv4Addr::new(127, 0, 0, 1) {
            // Lets a port whose earlier connection is in TIME_WAIT be bound again (loopback
            // connections may then reuse it: net.ipv4.tcp_tw_reuse).
            socket
                .set_reuseaddr(true)
                .map_err(|e| fail("cannot set SO_REUSEADDR", e))?;
            match socket.bind(SocketAddr::new(spec.source.into(), port.unwrap_or(0))) {
                Ok(()) => {}
                Err(e) if port.is_some() && e.kind() == ErrorKind::AddrInUse => continue,
                Err(e) => return Err(fail(&format!("cannot bind to {}", spec.source), e)),
            }
        }
        match socket.connect(target.addr).await {
            Ok(stream) => break stream,
            // This source port and the server make a pair still in use.
            Err(e)
                if port.is_some()
                    && matches!(e.kind(), ErrorKind::AddrNotAvailable | ErrorKind::AddrInUse) =>
            {
                continue
            }
            Err(e) => return Err(fail("cannot connect", e)),
        }
    };
    stream
        .write_all(&target.request(last_event_id))
        .await
        .map_err(|e| fail("cannot send the request", e))?;
    let mut head = Vec::with_capacity(1024);
    loop {
        let n = stream
            .read_buf(&mut head)
            .await
            .map_err(|e| fail("reading the response head", e))?;
        if n == 0 {
            return Err(format!(
                "{}: the connection closed before the response head",
                target.url
            ));
        }
        let Some(parsed) = parse_head(&head).map_err(|e| format!("{}: {e}", target.url))? else {
            continue;
        };
        let body = head.get(parsed.len..).unwrap_or_default();
        if parsed.status != 200 {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(200).collect();
            return Err(format!("{}: HTTP {}: {text}", target.url, parsed.status));
        }
        return Ok(Connection {
            stream,
            framing: parsed.framing,
            leftover: body.to_vec(),
        });
    }
}

/// Reads and handles the stream until it ends, fails, or the subscriber stalls.
async fn pump(
    shared: &Shared,
    j: usize,
    connection: &mut Connection,
    decoder: &mut EventScanner,
) -> End {
    let leftover = std::mem::take(&mut connection.leftover);
    if !leftover.is_empty() {
        let step = handle(
            shared,
            j,
            &mut connection.framing,
            decoder,
            &leftover,
            unix_micros(),
        );
        if let Some(end) = end_of(step) {
            return end;
        }
    }
    let Connection {
        stream, framing, ..
    } = connection;
    loop {
        if let Err(e) = stream.readable().await {
            return End::Closed(format!("read failed: {e}"));
        }
        let mut step = None;
        // One read per wake-up: a read shorter than the buffer emptied the socket, so the
        // closure reports "would block" to clear the readiness instead of paying a second read
        // to learn it. Tokio clears only the readiness it saw before the closure ran: bytes that
        // arrive meanwhile raise a new one. (`try_read` inside `try_io` clears that same
        // readiness itself when it would block, which is what we want too.)
        let read = stream.try_io(Interest::READABLE, || {
            let mut buf = shared.buf.borrow_mut();
            let n = stream.try_read(&mut buf)?;
            if n == 0 {
                step = Some(Step::Failed("the server closed the connection".into()));
                return Ok(());
            }
            shared.reads.set(shared.reads.get() + 1);
            let bytes = buf.get(..n).unwrap_or_default();
            step = Some(handle(shared, j, framing, decoder, bytes, unix_micros()));
            if n < buf.len() {
                Err(ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        if let Err(e) = read {
            if e.kind() != ErrorKind::WouldBlock {
                return End::Closed(format!("read failed: {e}"));
            }
        }
        if let Some(end) = step.and_then(end_of) {
            return end;
        }
    }
}

fn end_of(step: Step) -> Option<End> {
    match step {
        Step::Continue => None,
        Step::BodyEnd => Some(End::Closed("the server ended the stream".into())),
        Step::Stalled => Some(End::Stalled),
        Step::Failed(reason) => Some(End::Closed(reason)),
    }
}

/// Handles bytes read from the connection, received at `now_us`.
fn handle(
    shared: &Shared,
    j: usize,
    framing: &mut Framing,
    decoder: &mut EventScanner,
    bytes: &[u8],
    now_us: u64,
) -> Step {
    let mut tallies = shared.tallies.borrow_mut();
    let Some(tally) = tallies.get_mut(j) else {
        return Step::Failed("no such subscriber".into());
    };
    let mut latency = shared.latency.borrow_mut();
    let mut events = Events {
        tally,
        latency: &mut latency,
        topics: shared.topics,
        now_us,
        since_us: shared.since_us,
        delivered: false,
        unexpected: 0,
        stale: 0,
        stalled: false,
    };
    let mut failure = None;
    let mut feed = |data: &[u8]| {
        if events.stalled || failure.is_some() {
            return;
        }
        if let Err(e) = decoder.feed(data, |d| events.on(d)) {
            failure = Some(e.to_string());
        }
    };
    let body_end = match framing {
        Framing::Chunked(chunked) => match chunked.decode(bytes, &mut feed) {
            Ok(done) => done,
            Err(e) => return Step::Failed(e.to_string()),
        },
        Framing::Length(left) => {
            let take = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            feed(bytes.get(..take).unwrap_or_default());
            *left -= take as u64;
            *left == 0
        }
        Framing::UntilClose => {
            feed(bytes);
            false
        }
    };
    if events.delivered {
        shared.last_delivery_us.set(now_us);
    }
    if events.unexpected > 0 {
        shared
            .unexpected
            .set(shared.unexpected.get() + events.unexpected);
    }
    if events.stale > 0 {
        shared.stale.set(shared.stale.get() + events.stale);
    }
    let stalled = events.stalled;
    let tally = events.tally;
    if shared.finishing.get() && !tally.complete && !tally.stalls && tally.unique >= tally.expected
    {
        tally.complete = true;
        let left = shared.incomplete.get().saturating_sub(1);
        shared.incomplete.set(left);
        if left == 0 {
            shared.all_complete.notify_waiters();
        }
    }
    if let Some(reason) = failure {
        Step::Failed(reason)
    } else if stalled {
        Step::Stalled
    } else if body_end {
        Step::BodyEnd
    } else {
        Step::Continue
    }
}

/// Counts the events of one read.
struct Events<'a> {
    tally: &'a mut Tally,
    latency: &'a mut Histogram<u64>,
    topics: u64,
    now_us: u64,
    since_us: u64,
    /// A distinct update arrived.
    delivered: bool,
    unexpected: u64,
    stale: u64,
    /// The subscriber stalls now: ignore the rest.
    stalled: bool,
}

impl Events<'_> {
    fn on(&mut self, data: &[u8]) {
        if self.stalled {
            return;
        }
        let Some((seq, sent_us)) = seq_and_sent(data) else {
            self.unexpected += 1;
            return;
        };
        if sent_us < self.since_us {
            // History the server replays from an earlier run (Nchan sends its buffered
            // messages to new subscribers by default): not this run's update.
            self.stale += 1;
            return;
        }
        if self.tally.stalls {
            self.stalled = true;
            return;
        }
        if seq % self.topics != self.tally.topic {
            self.unexpected += 1;
            return;
        }
        if self.tally.arrive(seq / self.topics) != Arrival::Duplicate {
            self.delivered = true;
            self.latency
                .saturating_record(self.now_us.saturating_sub(sent_us).max(1));
        }
    }
}

/// A stalled subscriber: holds its socket without reading until the worker asks for the probe,
/// then reads what is left to learn whether the server ended the stream.
async fn stall(shared: &Shared, mut connection: Connection) {
    shared.stalled_waiting.set(shared.stalled_waiting.get() + 1);
    let mut probe = shared.probe.subscribe();
    if probe.wait_for(|go| *go).await.is_err() {
        return;
    }
    let cut = loop {
        match tokio::time::timeout(PROBE_IDLE, connection.stream.readable()).await {
            Err(_) => break false,
            Ok(Err(_)) => break true,
            Ok(Ok(())) => {}
        }
        let read = {
            let mut buf = shared.buf.borrow_mut();
            connection.stream.try_read(&mut buf).map(|n| {
                let bytes = buf.get(..n).unwrap_or_default();
                let ended = match &mut connection.framing {
                    Framing::Chunked(c) => c.decode(bytes, |_| {}).unwrap_or(true),
                    Framing::Length(left) => {
                        *left = left.saturating_sub(n as u64);
                        *left == 0
                    }
                    Framing::UntilClose => false,
                };
                (n, ended)
            })
        };
        match read {
            Ok((0, _)) | Ok((_, true)) => break true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => break true,
        }
    };
    shared.probed.set(shared.probed.get() + 1);
    if cut {
        shared.cut_off.set(shared.cut_off.get() + 1);
    }
    shared.probe_done.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: Ipv4Addr, port_seed: u64) -> Spec {
        Spec {
            index: 0,
            target: Rc::new(
                Target::parse("http://127.0.0.1:1/", super::super::http1::resolve_ipv4).unwrap(),
            ),
            source,
            port_seed,
        }
    }

    #[test]
    fn source_ports() {
        // 127.0.0.1 never binds.
        assert_eq!(spec(Ipv4Addr::new(127, 0, 0, 1), 5).source_port(1), None);
        let s = spec(Ipv4Addr::new(127, 0, 0, 2), 5);
        assert_eq!(s.source_port(1), Some(20_012));
        assert_eq!(s.source_port(2), Some(30_019));
        // After the candidates, the kernel chooses once, then the candidates come round again.
        assert_eq!(s.source_port(PORT_ATTEMPTS + 1), None);
        let ports: Vec<u16> = (0..10_000)
            .filter_map(|seed| spec(Ipv4Addr::new(127, 0, 0, 2), seed).source_port(1))
            .collect();
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 10_000);
        assert!(ports.iter().all(|&p| (10_000..32_768).contains(&p)));
    }
}
