//! A subscriber's stream: the replay (from the memory tail or the store), then live frames from
//! its bounded queue.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::mpsc;

use crate::channel::{self, End};
use crate::fanout::{Filter, SubscriberId};
use crate::hub::{Command, ResumedFrom, Shared};
use crate::log::{Store, StoreError};
use crate::queue;
use crate::subscriptions::{announce, ActiveSubscription};
use crate::update::{encode_frame, Position, StoredUpdate};

/// Delivery latency is sampled from one drained batch in this many, per thread.
const SAMPLE_EVERY: u32 = 16;

thread_local! {
    /// Counts the drained batches of this thread, for sampling.
    static SAMPLE_TURN: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

type ReadFuture = Pin<Box<dyn Future<Output = Result<Vec<StoredUpdate>, StoreError>> + Send>>;

pub(crate) struct StoreReplay {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) after: Position,
    pub(crate) until: Position,
    pub(crate) chunk: usize,
    pub(crate) pending: Option<ReadFuture>,
}

pub(crate) struct Registration {
    pub(crate) shared: Weak<Shared>,
    pub(crate) id: SubscriberId,
    /// With subscription events on: where to announce the end, and what.
    pub(crate) announce: Option<(mpsc::WeakSender<Command>, Arc<ActiveSubscription>)>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            {
                let mut state = shared.lock();
                state.registry.remove(self.id);
                state.active.remove(&self.id);
            }
            shared.metrics.subscribers_connected.dec();
        }
        if let Some((commands, sub)) = &self.announce {
            if let Some(commands) = commands.upgrade() {
                announce(&commands, sub, false);
            }
        }
    }
}

/// Where a subscriber's live frames come from.
pub(crate) enum Live {
    /// Its own bounded queue (subscribers with several selectors, templates or `*`).
    Queue(queue::Receiver),
    /// Its topic's channel (subscribers of exactly one topic).
    Channel(channel::Cursor),
}

/// A subscriber's stream of SSE frames: the replay, then live updates, in log order.
///
/// It ends when the subscriber was cut off for being too slow (after the frames already queued),
/// when the hub shuts down, or when a replay read from the store fails. Dropping it unregisters
/// the subscriber.
pub struct Subscription {
    pub(crate) resumed_from: Option<ResumedFrom>,
    pub(crate) replay: VecDeque<Bytes>,
    pub(crate) from_store: Option<StoreReplay>,
    pub(crate) filter: Arc<Filter>,
    pub(crate) live: Live,
    pub(crate) registration: Registration,
    /// A replay read failed: the stream is over.
    pub(crate) failed: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("resumed_from", &self.resumed_from)
            .field("id", &self.registration.id)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// A number identifying this subscription in the hub (for logs).
    pub fn id(&self) -> u64 {
        self.registration.id
    }

    /// Where the replay started, when a last event id was given.
    pub fn resumed_from(&self) -> Option<&ResumedFrom> {
        self.resumed_from.as_ref()
    }
}

impl Subscription {
    /// Moves every frame that is ready now to `out` (replay first, then live frames), so that a
    /// writer can send them in one system call.
    ///
    /// `Ready(true)` when frames were moved, `Ready(false)` when the stream is over (see the
    /// type's documentation), `Pending` when nothing is ready (the task is woken when something
    /// is).
    pub fn poll_drain(&mut self, cx: &mut Context<'_>, out: &mut Vec<Bytes>) -> Poll<bool> {
        self.poll_drain_each(cx, |frame| out.push(frame.clone()))
    }

    /// Like [`Subscription::poll_drain`], handing each frame that is ready to `each` instead:
    /// a writer can copy small frames into its own buffer without touching their shared
    /// reference counts.
    pub fn poll_drain_each(
        &mut self,
        cx: &mut Context<'_>,
        mut each: impl FnMut(&Bytes),
    ) -> Poll<bool> {
        loop {
            if !self.replay.is_empty() {
                self.replay.iter().for_each(&mut each);
                self.replay.clear();
                return Poll::Ready(true);
            }
            match self.poll_store(cx) {
                Poll::Ready(Some(true)) => continue,
                Poll::Ready(Some(false)) => return Poll::Ready(false),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {}
            }
            // One latency sample per batch, its oldest frame's, and only for one batch in
            // `SAMPLE_EVERY` on each thread: the batch leaves in one write, and a clock read and
            // an update of the shared histogram for each one would cost more than the rest of
            // the delivery (two threads writing 10,000 streams contend for its lock).
            let mut oldest = None;
            let mut cut_off = false;
            let drained = match &mut self.live {
                Live::Queue(rx) => rx.poll_drain(cx, |(frame, committed_at)| {
                    oldest.get_or_insert(committed_at);
                    each(&frame);
                }),
                Live::Channel(cursor) => match cursor.poll_drain(cx, |frame, committed_at| {
                    oldest.get_or_insert(committed_at);
                    each(frame);
                }) {
                    Poll::Ready(Ok(_)) => Poll::Ready(true),
                    Poll::Ready(Err(End::Closed)) => Poll::Ready(false),
                    Poll::Ready(Err(End::CutOff)) => {
                        cut_off = true;
                        Poll::Ready(false)
                    }
                    Poll::Pending => Poll::Pending,
                },
            };
            if oldest.is_some() {
                let sample = SAMPLE_TURN.with(|turn| {
                    let n = turn.get();
                    turn.set(n.wrapping_add(1));
                    n % SAMPLE_EVERY == 0
                });
                if !sample {
                    oldest = None;
                }
            }
            if oldest.is_some() || cut_off {
                if let Some(shared) = self.registration.shared.upgrade() {
                    if let Some(committed_at) = oldest {
                        shared
                            .metrics
                            .delivery_seconds
                            .observe(committed_at.elapsed().as_secs_f64());
                    }
                    if cut_off {
                        shared.metrics.slow_consumer_disconnects.inc();
                    }
                }
            }
            return drained;
        }
    }

    /// Gives back buffers an idle subscription does not need (they are allocated again when
    /// frames arrive). A stream calls this after a quiet while, to keep idle subscribers cheap.
    pub fn release_idle_buffers(&mut self) {
        if self.replay.is_empty() && self.replay.capacity() > 0 {
            self.replay = VecDeque::new();
        }
        if let Live::Queue(rx) = &mut self.live {
            rx.release_idle_buffer();
        }
    }

    /// Advances the replay from the store. `Ready(None)`: no store replay (left); `Ready(Some(true))`:
    /// frames were added to `replay` (or progress was made); `Ready(Some(false))`: a read failed and
    /// the stream is over; `Pending`: a read is in flight.
    fn poll_store(&mut self, cx: &mut Context<'_>) -> Poll<Option<bool>> {
        if self.failed {
            return Poll::Ready(Some(false));
        }
        let Some(sr) = self.from_store.as_mut() else {
            return Poll::Ready(None);
        };
        if sr.after >= sr.until {
            self.from_store = None;
            return Poll::Ready(Some(true));
        }
        let read = sr.pending.get_or_insert_with(|| {
            let store = sr.store.clone();
            let (after, chunk) = (sr.after, sr.chunk);
            Box::pin(async move { store.read_after(after, chunk).await })
        });
        match read.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                tracing::warn!(error = %e, "replay from the store failed; ending the stream");
                self.failed = true;
                self.from_store = None;
                Poll::Ready(Some(false))
            }
            Poll::Ready(Ok(batch)) => {
                sr.pending = None;
                if batch.is_empty() {
                    sr.after = sr.until;
                }
                for update in batch {
                    if update.position > sr.until {
                        sr.after = sr.until;
                        break;
                    }
                    sr.after = update.position;
                    if self.filter.accepts_update(&update) {
                        self.replay.push_back(encode_frame(&update));
                    }
                }
                Poll::Ready(Some(true))
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if let Some(frame) = this.replay.pop_front() {
            return Poll::Ready(Some(frame));
        }
        let mut ready = Vec::new();
        match this.poll_drain(cx, &mut ready) {
            Poll::Ready(true) => {
                let mut frames = ready.into_iter();
                let first = frames.next();
                this.replay.extend(frames);
                match first {
                    Some(frame) => Poll::Ready(Some(frame)),
                    // Nothing moved although something was ready: ask to be polled again.
                    None => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
            Poll::Ready(false) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
