//! Subscriber streams on HTTP/1.1 connections, written by Herald itself.
//!
//! hyper serves every request well, but a long-lived event stream through it keeps a connection
//! task with its read and write buffers (about 10 KB per subscriber) and pays a body poll, a
//! chunk encoding and a write per wake-up. Here, the first request of a cleartext connection is
//! read by the server itself: when it is a `GET` of the Mercure endpoint, the router handles it
//! as usual, and if the handler opens a stream, the server takes the socket over:
//!
//! - one small task per stream, no read or write buffer kept while idle;
//! - every frame that is ready is gathered and written with one `writev` (one chunk of the
//!   `chunked` body), however many arrived since the last write;
//! - heartbeats come from one hub-wide ticker instead of a timer per stream;
//! - the socket is watched for the client leaving, so a closed subscriber is dropped at once;
//! - streams run on their own threads (a second runtime): under load, the hub's request
//!   threads stay free for publishes, which would otherwise wait behind a round of stream
//!   writes before their update even reaches the channel.
//!
//! Any other request (and every HTTP/2 or TLS connection) goes to hyper unchanged, with the bytes
//! already read given back to it first.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderName, HeaderValue, Method, Request, Response, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::subscribe::{Offered, Takeover};

/// Largest request head read before handing the connection to hyper (which answers 431 for
/// heads it finds too large).
const MAX_HEAD: usize = 16 * 1024;
/// Most headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// Most buffers in one `writev`.
const MAX_IOVECS: usize = 64;
/// Largest error body the server writes itself.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Time given to the end of a stream (its last chunk) before the socket is closed anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What became of a connection's first request.
pub(crate) enum FirstRequest<IO> {
    /// The connection was handled here (a stream was taken over, an error was answered, or the
    /// client left or stalled).
    Done,
    /// Serve the connection with hyper: `io` replays the bytes already read.
    Hyper(Prefixed<IO>),
}

/// Reads the first request head of a cleartext connection and, if it asks for an event stream,
/// serves it here; otherwise gives the connection back for hyper to serve.
pub(crate) async fn first_request(
    mut socket: TcpStream,
    peer: SocketAddr,
    app: &Router,
    deadline: Instant,
    streams: &TaskTracker,
    runtime: Option<&tokio::runtime::Handle>,
) -> FirstRequest<TcpStream> {
    let mut buf = BytesMut::with_capacity(1024);
    let head = loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(1024);
        }
        match tokio::time::timeout_at(deadline, socket.read_buf(&mut buf)).await {
            Err(_) => {
                tracing::debug!(%peer, "no request within the header timeout; closing");
                return FirstRequest::Done;
            }
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "reading the first request failed");
                return FirstRequest::Done;
            }
            Ok(Ok(0)) => return FirstRequest::Done,
            Ok(Ok(_)) => {}
        }
        if buf.starts_with(b"PRI ") || b"PRI ".starts_with(&buf[..buf.len().min(4)]) {
            // HTTP/2 with prior knowledge (or too little to tell yet: read on).
            if buf.len() >= 4 {
                return FirstRequest::Hyper(Prefixed::new(buf.freeze(), socket));
            }
            continue;
        }
        match candidate(&buf) {
            Parsed::Partial if buf.len() < MAX_HEAD => continue,
            Parsed::Stream(request) => break request,
            Parsed::Partial | Parsed::Other => {
                return FirstRequest::Hyper(Prefixed::new(buf.freeze(), socket))
            }
        }
    };
    drop(buf);
    let takeover = Takeover::default();
    let mut request = *head;
    request.extensions_mut().insert(ConnectInfo(peer));
    request.extensions_mut().insert(takeover.clone());
    let response = match app.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    match takeover.take() {
        Some(offered) if response.status().is_success() => {
            let head = response_head(&response, true);
            match runtime {
                Some(runtime) => spawn_on(runtime, streams, socket, head, offered),
                None => drop(streams.spawn(run_stream(socket, head, offered))),
            }
        }
        _ => write_response(socket, response).await,
    }
    FirstRequest::Done
}

/// Runs a stream on `runtime`: its socket leaves this runtime's reactor for that one's.
fn spawn_on(
    runtime: &tokio::runtime::Handle,
    streams: &TaskTracker,
    socket: TcpStream,
    head: BytesMut,
    offered: Offered,
) {
    let socket = match socket.into_std() {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%error, "cannot hand a stream's socket over; closing it");
            return;
        }
    };
    runtime.spawn(streams.track_future(async move {
        match TcpStream::from_std(socket) {
            Ok(socket) => run_stream(socket, head, offered).await,
            Err(error) => tracing::warn!(%error, "cannot register a stream's socket; closing it"),
        }
    }));
}

enum Parsed {
    /// A `GET` of the Mercure endpoint the server can stream itself.
    Stream(Box<Request<Body>>),
    /// The head is not complete yet.
    Partial,
    /// Anything else: for hyper.
    Other,
}

/// Whether `buf` holds a complete HTTP/1.1 `GET` of the Mercure endpoint with no body and no
/// upgrade, as an axum request.
fn candidate(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    }
    let (Some("GET"), Some(target), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return Parsed::Other;
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path != crate::MERCURE_PATH {
        return Parsed::Other;
    }
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(target)
        .version(Version::HTTP_11);
    for h in parsed.headers.iter() {
        let name = h.name.as_bytes();
        let has_body = name.eq_ignore_ascii_case(b"transfer-encoding")
            || (name.eq_ignore_ascii_case(b"content-length") && h.value.trim_ascii() != b"0");
        if has_body || name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"expect")
        {
            return Parsed::Other;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Parsed::Other;
        };
        builder = builder.header(name, value);
    }
    match builder.body(Body::empty()) {
        Ok(request) => Parsed::Stream(Box::new(request)),
        Err(_) => Parsed::Other,
    }
}

/// The status line and headers of `response` as HTTP/1.1 bytes: with `Transfer-Encoding:
/// chunked` for a stream, else with `Connection: close` (the body length is added by the
/// caller).
fn response_head(response: &Response<Body>, stream: bool) -> BytesMut {
    let status = response.status();
    let mut head = BytesMut::with_capacity(512);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.extend_from_slice(b" ");
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !response.headers().contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if stream {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head
}

/// Writes a whole (small) response and closes the connection.
async fn write_response(socket: TcpStream, response: Response<Body>) {
    let mut head = response_head(&response, false);
    let body = match http_body_util::Limited::new(response.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            tracing::warn!(%error, "cannot write a response body; closing the connection");
            return;
        }
    };
    head.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    let mut out = VecDeque::from([head.freeze(), body]);
    let _ = tokio::time::timeout(CLOSE_GRACE, write_all(&socket, &mut out)).await;
    close(socket).await;
}

/// Serves one event stream until it ends (hub shutdown, slow-consumer cut-off, write timeout,
/// token expiry) or the client leaves.
///
/// One hand-written poll loop instead of a `select!`: a stream is woken thousands of times a
/// second under load, and each wake-up should cost one look at the channel and one `writev`,
/// not the building and dropping of four futures.
async fn run_stream(socket: TcpStream, mut head: BytesMut, offered: Offered) {
    let Offered { mut stream, ticks } = offered;
    head.extend_from_slice(b"\r\n2\r\n:\n\r\n");
    stream.log.wrote_bytes(2);
    // What the socket has not taken yet; empty (and unallocated) most of the time.
    let mut out = VecDeque::from([head.freeze()]);
    // Whether something was written since the last tick; a tick finding nothing written sends a
    // heartbeat, and from the second such tick on, buffers are given back.
    let mut wrote = true;
    let mut quiet_ticks = 0u32;
    // A timer only for streams that have a deadline (none without a write timeout or token
    // expiry): nothing to poll and no timer entry kept otherwise.
    let mut deadline = stream
        .deadline
        .map(|d| Box::pin(tokio::time::sleep_until(d)));
    let mut deadline_passed = |cx: &mut Context<'_>| {
        deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
    };
    // The tick future is polled when it is new (to register) and when the ticker moved on, not
    // at every wake-up: its poll takes a lock that all streams share, and under load streams
    // wake up thousands of times between two ticks. `peek` tells, with one atomic load.
    let mut peek = ticks.clone();
    peek.borrow_and_update();
    let mut tick_armed = false;
    let mut tick = Box::pin(next_tick(ticks));
    let ended_cleanly = std::future::poll_fn(|cx| {
        for _ in 0..BATCHES_PER_POLL {
            // What the socket did not take comes first; no new frames meanwhile.
            if !out.is_empty() {
                match poll_write_out(&socket, cx, &mut out) {
                    Poll::Ready(Ok(())) => wrote = true,
                    Poll::Ready(Err(_)) => return Poll::Ready(false),
                    Poll::Pending => {
                        return if deadline_passed(cx) {
                            Poll::Ready(false)
                        } else {
                            Poll::Pending
                        }
                    }
                }
            }
            match poll_write_frames(&socket, cx, &mut stream, &mut out) {
                Poll::Ready(Ok(true)) => {
                    wrote = true;
                    quiet_ticks = 0;
                    continue;
                }
                Poll::Ready(Ok(false)) => return Poll::Ready(true),
                Poll::Ready(Err(_)) => return Poll::Ready(false),
                Poll::Pending => {}
            }
            let tick_due = !tick_armed || peek.has_changed().unwrap_or(true);
            let fired = if tick_due {
                let polled = tick.as_mut().poll(cx);
                tick_armed = polled.is_pending();
                polled
            } else {
                Poll::Pending
            };
            if let Poll::Ready((changed, ticks)) = fired {
                peek.borrow_and_update();
                tick.set(next_tick(ticks));
                if changed.is_err() {
                    // No ticker any more (the router is gone): nothing else to do than end.
                    return Poll::Ready(true);
                }
                if !wrote {
                    quiet_ticks += 1;
                    if quiet_ticks >= 2 {
                        out = VecDeque::new();
                        stream.subscription.release_idle_buffers();
                    }
                    const HEARTBEAT: &[u8] = b"2\r\n:\n\r\n";
                    stream.log.wrote_bytes(2);
                    // Most often the socket takes it at once: no buffer needed.
                    match socket.try_write(HEARTBEAT) {
                        Ok(n) if n == HEARTBEAT.len() => {}
                        Ok(n) => out.push_back(Bytes::from_static(&HEARTBEAT[n..])),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            out.push_back(Bytes::from_static(HEARTBEAT));
                        }
                        Err(_) => return Poll::Ready(false),
                    }
                    // The heartbeat counts as a write: the next one is a whole interval away.
                    wrote = true;
                } else {
                    wrote = false;
                }
                continue;
            }
            if deadline_passed(cx) {
                return Poll::Ready(true);
            }
            return match socket.poll_read_ready(cx) {
                Poll::Ready(Ok(())) if !client_left(&socket) => continue,
                Poll::Ready(_) => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            };
        }
        // Frames keep coming: let the other streams of this thread have their turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
    if ended_cleanly {
        out.push_back(Bytes::from_static(b"0\r\n\r\n"));
        let _ = tokio::time::timeout(CLOSE_GRACE, write_all(&socket, &mut out)).await;
    }
    drop(stream);
    close(socket).await;
}

/// Batches one stream writes before it lets the other streams of its thread run.
const BATCHES_PER_POLL: usize = 8;
/// Frames up to this size are copied into the thread's batch buffer; larger ones are written
/// from their shared buffer.
const COPY_AT_MOST: usize = 1024;
/// Room in front of a batch for its chunk-size line (up to 16 hex digits and CRLF).
const SIZE_ROOM: usize = 18;
/// A batch buffer grown larger than this is shrunk after use.
const KEEP_BATCH_BUFFER: usize = 256 * 1024;

/// Waits for the next heartbeat tick, owning the receiver (so the wait survives across polls
/// without a borrow, and is allocated once per tick, not once per wake-up).
async fn next_tick(
    mut ticks: tokio::sync::watch::Receiver<()>,
) -> (
    Result<(), tokio::sync::watch::error::RecvError>,
    tokio::sync::watch::Receiver<()>,
) {
    let changed = ticks.changed().await;
    (changed, ticks)
}

/// One chunk of the stream's body in the making, shared by the streams of a thread (a stream
/// fills it, writes it and is done with it within one poll).
#[derive(Default)]
struct Batch {
    /// `SIZE_ROOM` bytes for the chunk-size line, then the small frames, then the chunk's CRLF.
    bytes: Vec<u8>,
    /// Large frames, each with the offset in `bytes` it goes before.
    shared: Vec<(usize, Bytes)>,
}

thread_local! {
    static BATCH: std::cell::RefCell<Batch> = std::cell::RefCell::default();
}

/// A piece of a batch, in body order.
enum Piece<'a> {
    Copied(&'a [u8]),
    Shared(&'a Bytes),
}

impl<'a> Piece<'a> {
    fn as_slice(&self) -> &'a [u8] {
        match *self {
            Piece::Copied(b) => b,
            Piece::Shared(b) => b.as_ref(),
        }
    }
}

impl Batch {
    /// The pieces of the chunk, from `start` in `bytes`, skipping empty ones.
    fn pieces(&self, start: usize) -> impl Iterator<Item = Piece<'_>> {
        let mut from = start;
        let mut shared = self.shared.iter();
        let mut next_shared: Option<&Bytes> = None;
        std::iter::from_fn(move || loop {
            if let Some(frame) = next_shared.take() {
                return Some(Piece::Shared(frame));
            }
            let to = match shared.next() {
                Some((at, frame)) => {
                    next_shared = Some(frame);
                    *at
                }
                None if from < self.bytes.len() => self.bytes.len(),
                None => return None,
            };
            let copied = self.bytes.get(from..to).unwrap_or_default();
            from = to;
            if !copied.is_empty() {
                return Some(Piece::Copied(copied));
            }
        })
    }
}

/// Takes every frame that is ready and writes them as one chunk with one `writev`; what the
/// socket does not take goes to `out`. `Ready(Ok(true))`: frames were taken; `Ready(Ok(false))`:
/// the subscription is over; `Pending`: nothing is ready (the task is woken when something is).
fn poll_write_frames(
    socket: &TcpStream,
    cx: &mut Context<'_>,
    stream: &mut crate::subscribe::Stream,
    out: &mut VecDeque<Bytes>,
) -> Poll<io::Result<bool>> {
    BATCH.with(|batch| {
        let mut batch = batch.borrow_mut();
        let batch = &mut *batch;
        batch.bytes.clear();
        batch.shared.clear();
        batch.bytes.resize(SIZE_ROOM, 0);
        let mut len = 0usize;
        let drained = stream.subscription.poll_drain_each(cx, |frame| {
            len += frame.len();
            if frame.len() <= COPY_AT_MOST {
                batch.bytes.extend_from_slice(frame);
            } else {
                batch.shared.push((batch.bytes.len(), frame.clone()));
            }
        });
        let result = match drained {
            Poll::Ready(true) if len == 0 => Poll::Ready(Ok(true)),
            Poll::Ready(true) => {
                stream.log.wrote_bytes(len);
                let size = format!("{len:x}\r\n");
                let start = SIZE_ROOM - size.len();
                batch.bytes[start..SIZE_ROOM].copy_from_slice(size.as_bytes());
                batch.bytes.extend_from_slice(b"\r\n");
                Poll::Ready(write_batch(socket, batch, start, out).map(|()| true))
            }
            Poll::Ready(false) => Poll::Ready(Ok(false)),
            Poll::Pending => Poll::Pending,
        };
        if batch.bytes.capacity() > KEEP_BATCH_BUFFER {
            batch.bytes = Vec::new();
            batch.shared = Vec::new();
        }
        batch.shared.clear();
        result
    })
}

/// Writes the batch (from `start` in its bytes) with one `writev`; what the socket does not take
/// now is queued in `out` (small pieces copied, large ones shared).
fn write_batch(
    socket: &TcpStream,
    batch: &Batch,
    start: usize,
    out: &mut VecDeque<Bytes>,
) -> io::Result<()> {
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let mut n = 0;
    for (slot, piece) in slices.iter_mut().zip(batch.pieces(start)) {
        *slot = IoSlice::new(piece.as_slice());
        n += 1;
    }
    let mut written = match socket.try_write_vectored(&slices[..n]) {
        Ok(written) => written,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            0
        }
        Err(e) => return Err(e),
    };
    for piece in batch.pieces(start) {
        let len = piece.as_slice().len();
        if written >= len {
            written -= len;
            continue;
        }
        out.push_back(match piece {
            Piece::Copied(b) => Bytes::copy_from_slice(&b[written..]),
            Piece::Shared(b) => b.slice(written..),
        });
        written = 0;
    }
    Ok(())
}

/// Writes what is queued in `out` as far as the socket takes it; `Pending` when it is full.
fn poll_write_out(
    socket: &TcpStream,
    cx: &mut Context<'_>,
    out: &mut VecDeque<Bytes>,
) -> Poll<io::Result<()>> {
    while !out.is_empty() {
        if let Err(e) = std::task::ready!(socket.poll_write_ready(cx)) {
            return Poll::Ready(Err(e));
        }
        let result = {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (slot, buf) in slices.iter_mut().zip(out.iter()) {
                *slot = IoSlice::new(buf);
                n += 1;
            }
            socket.try_write_vectored(&slices[..n])
        };
        match result {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(mut written) => {
                while written > 0 {
                    let Some(front) = out.front_mut() else { break };
                    if front.len() <= written {
                        written -= front.len();
                        out.pop_front();
                    } else {
                        front.advance(written);
                        written = 0;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

/// Reads and discards what the client sent; true when it closed the connection or it failed.
fn client_left(socket: &TcpStream) -> bool {
    let mut scratch = [0u8; 256];
    loop {
        match socket.try_read(&mut scratch) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Ends the connection: shuts down the sending side so that the client sees the end after
/// every byte written, then drops the socket.
async fn close(socket: TcpStream) {
    let mut socket = socket;
    let _ =
        tokio::time::timeout(CLOSE_GRACE, tokio::io::AsyncWriteExt::shutdown(&mut socket)).await;
}

/// Writes every buffer of `out`, in order, with as few `writev` calls as the socket allows.
/// Buffers are removed as they are written, so a call cancelled half-way can be resumed.
async fn write_all(socket: &TcpStream, out: &mut VecDeque<Bytes>) -> io::Result<()> {
    std::future::poll_fn(|cx| poll_write_out(socket, cx, out)).await
}

/// An I/O object that first yields bytes already read from it, then reads from it as usual.
pub(crate) struct Prefixed<IO> {
    prefix: Bytes,
    io: IO,
}

impl<IO> Prefixed<IO> {
    fn new(prefix: Bytes, io: IO) -> Self {
        Self { prefix, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            if this.prefix.is_empty() {
                // Give the read buffer back now rather than with the connection.
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_get_of_the_endpoint_is_taken_over() {
        let stream = |head: &str| matches!(candidate(head.as_bytes()), Parsed::Stream(_));
        assert!(stream(
            "GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
        ));
        assert!(stream(
            "GET /.well-known/mercure HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
        assert!(stream(
            "GET /.well-known/mercure HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        ));
        for other in [
            "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\n\r\n",
            "HEAD /.well-known/mercure HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /.well-known/mercure HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET /.well-known/mercure/history HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /.well-known/mercure HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            "GET /.well-known/mercure HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            "GET /.well-known/mercure HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /.well-known/mercure HTTP/1.1\r\nHo st: x\r\n\r\n",
        ] {
            assert!(
                matches!(candidate(other.as_bytes()), Parsed::Other),
                "{other}"
            );
        }
        assert!(matches!(
            candidate(b"GET /.well-known/mercure HTTP/1.1\r\nHost:"),
            Parsed::Partial
        ));
    }

    #[test]
    fn a_batch_is_its_copied_and_shared_pieces_in_order() {
        let batch = Batch {
            bytes: b"..5\r\nab12\r\n".to_vec(),
            shared: vec![
                (5, Bytes::from_static(b"X")),
                (9, Bytes::from_static(b"Y")),
                (9, Bytes::from_static(b"Z")),
                (11, Bytes::from_static(b"W")),
            ],
        };
        let all: Vec<u8> = batch
            .pieces(2)
            .flat_map(|p| p.as_slice().to_vec())
            .collect();
        assert_eq!(all, b"5\r\nXab12YZ\r\nW");
        assert!(batch.pieces(2).all(|p| !p.as_slice().is_empty()));
        let empty = Batch::default();
        assert_eq!(empty.pieces(0).count(), 0);
    }

    #[tokio::test]
    async fn prefixed_replays_then_reads_on() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world")
            .await
            .unwrap();
        drop(a);
        let mut io = Prefixed::new(Bytes::from_static(b"hello"), b);
        let mut all = String::new();
        io.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }
}
