//! A subscriber's queue of frames: bounded, one producer (the fan-out) and one consumer (the
//! subscriber's stream).
//!
//! Made for many idle subscribers and bursts of delivery:
//! - **Cheap when idle.** An empty queue holds no frame buffer: the storage is allocated on the
//!   first push and given back by [`Receiver::release_idle_buffer`] (the stream calls it when it
//!   has been idle for a while). A general-purpose channel keeps a block of slots per queue.
//! - **One wake per burst.** The producer wakes the consumer only when the consumer is waiting;
//!   pushing more frames before it runs costs no further wake-up.
//! - **Drained at once.** The consumer takes everything that is pending in one lock
//!   ([`Receiver::poll_drain`]), so its frames can go out in one write.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::fanout::Queued;

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue holds its capacity: the consumer is too slow.
    Full,
    /// The consumer is gone.
    Closed,
}

struct Inner {
    frames: VecDeque<Queued>,
    /// The consumer's waker, when it found the queue empty and waits.
    waker: Option<Waker>,
    /// The producer is gone: the consumer ends after the frames already queued.
    sender_gone: bool,
    /// The consumer is gone: pushes are refused.
    receiver_gone: bool,
}

struct Shared {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the queue consistent (every change is a single
        // push, drain or flag), so a poisoned lock is used as is.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A queue holding at most `capacity` frames (at least 1).
pub(crate) fn bounded(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        capacity: capacity.max(1),
        inner: Mutex::new(Inner {
            frames: VecDeque::new(),
            waker: None,
            sender_gone: false,
            receiver_gone: false,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The producer's end, held by the fan-out registry.
pub(crate) struct Sender {
    shared: Arc<Shared>,
}

impl Sender {
    /// Queues a frame, waking the consumer if it waits.
    pub(crate) fn push(&self, frame: Queued) -> Result<(), PushError> {
        let waker = {
            let mut inner = self.shared.lock();
            if inner.receiver_gone {
                return Err(PushError::Closed);
            }
            if inner.frames.len() >= self.shared.capacity {
                return Err(PushError::Full);
            }
            inner.frames.push_back(frame);
            inner.waker.take()
        };
        // Woken outside the lock, so the consumer never finds it held.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let waker = {
            let mut inner = self.shared.lock();
            inner.sender_gone = true;
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The consumer's end, held by the subscription.
pub(crate) struct Receiver {
    shared: Arc<Shared>,
}

impl Receiver {
    /// Hands every queued frame to `each`, in order. `Ready(true)` when frames were moved, `Ready(false)`
    /// when the queue is empty and the producer is gone (the stream is over), `Pending` when it
    /// is empty and will wake `cx` on the next push.
    pub(crate) fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        mut each: impl FnMut(Queued),
    ) -> Poll<bool> {
        let mut inner = self.shared.lock();
        if !inner.frames.is_empty() {
            inner.frames.drain(..).for_each(&mut each);
            return Poll::Ready(true);
        }
        if inner.sender_gone {
            return Poll::Ready(false);
        }
        match &mut inner.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Gives back the frame storage of an empty queue (it is allocated again on the next push).
    pub(crate) fn release_idle_buffer(&mut self) {
        let mut inner = self.shared.lock();
        if inner.frames.is_empty() && inner.frames.capacity() > 0 {
            inner.frames = VecDeque::new();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.receiver_gone = true;
        inner.waker = None;
        // Frames still queued are shared buffers; let them go now rather than with the sender.
        inner.frames = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Instant;

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn frame(n: u8) -> Queued {
        (Bytes::from(vec![n]), Instant::now())
    }

    #[test]
    fn wakes_once_per_burst_and_drains_everything() {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = bounded(8);
        let mut out = Vec::new();
        assert_eq!(rx.poll_drain(&mut cx, |f| out.push(f)), Poll::Pending);
        for n in 0..5 {
            tx.push(frame(n)).unwrap();
        }
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "one wake for five pushes"
        );
        assert_eq!(rx.poll_drain(&mut cx, |f| out.push(f)), Poll::Ready(true));
        let got: Vec<u8> = out.iter().map(|(b, _)| b[0]).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn refuses_beyond_capacity_and_after_the_receiver_left() {
        let (tx, rx) = bounded(2);
        tx.push(frame(0)).unwrap();
        tx.push(frame(1)).unwrap();
        assert_eq!(tx.push(frame(2)), Err(PushError::Full));
        drop(rx);
        assert_eq!(tx.push(frame(3)), Err(PushError::Closed));
    }

    #[test]
    fn ends_after_the_queued_frames_when_the_sender_left() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let (tx, mut rx) = bounded(4);
        tx.push(frame(7)).unwrap();
        drop(tx);
        let mut out = Vec::new();
        assert_eq!(rx.poll_drain(&mut cx, |f| out.push(f)), Poll::Ready(true));
        assert_eq!(out.len(), 1);
        assert_eq!(rx.poll_drain(&mut cx, |f| out.push(f)), Poll::Ready(false));
    }

    #[test]
    fn an_idle_queue_gives_its_buffer_back() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let (tx, mut rx) = bounded(64);
        for n in 0..40 {
            tx.push(frame(n)).unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(rx.poll_drain(&mut cx, |f| out.push(f)), Poll::Ready(true));
        rx.release_idle_buffer();
        assert_eq!(rx.shared.lock().frames.capacity(), 0);
    }
}
