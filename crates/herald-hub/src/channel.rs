//! A topic's channel: one shared, bounded window of recent entries that every subscriber of
//! exactly that one topic reads through its own cursor.
//!
//! With a queue per subscriber, an update to a topic with 10,000 subscribers costs 10,000
//! pushes, each writing into another subscriber's memory (and so, on a busy hub, into another
//! core's cache). With a channel it costs one append and a wake-up of the subscribers that are
//! waiting — and under load most are not waiting but writing, and they pick up every entry
//! appended meanwhile in one go. So the cost of an update stops growing with the number of busy
//! subscribers, and the writes of a busy hub batch themselves.
//!
//! Slow consumers are bounded by the window: it keeps at most `capacity` entries and none older
//! than [`MAX_AGE`]. A subscriber whose cursor falls out of the window is cut off, like one whose
//! queue is full: its stream ends and its client resumes from the log.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::fanout::Filter;
use crate::update::{LogEntry, Position};

/// Oldest entry a channel keeps: a subscriber this far behind is cut off.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(30);

struct Window {
    entries: VecDeque<Arc<LogEntry>>,
    /// Sequence number (in this channel) of `entries[0]`.
    first_seq: u64,
    /// Subscribers reading this channel.
    readers: usize,
    /// The hub shut down: readers end after what is left.
    closed: bool,
    /// Readers waiting for the next append (a reader that left has a no-op waker in its slot).
    waiters: Vec<Waker>,
    /// How many times the waiters were woken: a reader registered in this round has a slot.
    round: u64,
}

impl Window {
    fn end_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }
}

/// One topic's channel.
pub(crate) struct Channel {
    capacity: usize,
    window: Mutex<Window>,
    /// Copies of the window's `end_seq()` and `round`, written under the lock: a reader that
    /// waits in the current round and has nothing new learns so without taking the lock.
    end_seq: AtomicU64,
    round: AtomicU64,
}

impl Channel {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            window: Mutex::new(Window {
                entries: VecDeque::new(),
                first_seq: 0,
                readers: 0,
                closed: false,
                waiters: Vec::new(),
                round: 0,
            }),
            end_seq: AtomicU64::new(0),
            round: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Window> {
        // Every change is a single push, pop or counter update: a poisoned lock is consistent.
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a reader whose cursor starts at the end (it reads what is appended from now on).
    pub(crate) fn join(self: &Arc<Self>, filter: Arc<Filter>, after: Position) -> Cursor {
        let mut window = self.lock();
        window.readers += 1;
        Cursor {
            channel: self.clone(),
            next_seq: window.end_seq(),
            after,
            filter,
            slot: None,
            waker: None,
        }
    }

    /// Readers right now.
    #[cfg(test)]
    pub(crate) fn readers(&self) -> usize {
        self.lock().readers
    }

    /// Appends an entry and wakes the readers that wait. Returns how many readers there are.
    pub(crate) fn append(&self, entry: &Arc<LogEntry>) -> usize {
        let (readers, waiters) = {
            let mut window = self.lock();
            window.entries.push_back(entry.clone());
            let now = Instant::now();
            while window.entries.len() > self.capacity
                || window
                    .entries
                    .front()
                    .is_some_and(|e| now.saturating_duration_since(e.committed_at) > MAX_AGE)
            {
                window.entries.pop_front();
                window.first_seq += 1;
            }
            self.end_seq.store(window.end_seq(), Ordering::Release);
            (window.readers, self.take_waiters(&mut window))
        };
        // Outside the lock: woken readers can start draining at once.
        waiters.into_iter().for_each(Waker::wake);
        readers
    }

    /// Ends every reader after what it has not read yet (hub shutdown).
    pub(crate) fn close(&self) {
        let waiters = {
            let mut window = self.lock();
            window.closed = true;
            self.take_waiters(&mut window)
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    /// The waiters to wake now; readers register again in the next round.
    fn take_waiters(&self, window: &mut Window) -> Vec<Waker> {
        window.round += 1;
        self.round.store(window.round, Ordering::Release);
        let next = Vec::with_capacity(window.waiters.len().min(window.readers));
        std::mem::replace(&mut window.waiters, next)
    }
}

/// Why a cursor's stream is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The hub shut down.
    Closed,
    /// The reader fell out of the window.
    CutOff,
}

/// A subscriber's position in its topic's channel.
pub(crate) struct Cursor {
    channel: Arc<Channel>,
    next_seq: u64,
    /// Entries at or before this position were replayed or are skipped.
    after: Position,
    filter: Arc<Filter>,
    /// The round and index of this reader's slot in the waiters, when it has one.
    slot: Option<(u64, usize)>,
    /// The waker in that slot.
    waker: Option<Waker>,
}

impl Cursor {
    /// Hands every entry appended since the last call to `each` (private ones only if the filter
    /// allows them). `Ready(Ok(true))` when something was handed, `Ready(Err(_))` when the stream
    /// is over, `Pending` when there was nothing (the task is woken on the next append).
    ///
    /// The look at the window and the registration for the next append happen under one lock,
    /// so no append can slip between them.
    pub(crate) fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        mut each: impl FnMut(&Bytes, Instant),
    ) -> Poll<Result<bool, End>> {
        // Waiting in the current round with nothing new: the slot's waker is woken by the next
        // append (or close), which moves the round on first. Under load every stream looks
        // here once more after each write; without the lock those looks do not queue up
        // behind each other and behind the appends.
        if let (Some((round, _)), Some(waker)) = (self.slot, &self.waker) {
            if round == self.channel.round.load(Ordering::Acquire)
                && self.next_seq == self.channel.end_seq.load(Ordering::Acquire)
                && waker.will_wake(cx.waker())
            {
                return Poll::Pending;
            }
        }
        let mut window = self.channel.lock();
        if self.next_seq < window.first_seq {
            return Poll::Ready(Err(End::CutOff));
        }
        let start = usize::try_from(self.next_seq - window.first_seq).unwrap_or(usize::MAX);
        let mut handed = false;
        for entry in window.entries.range(start.min(window.entries.len())..) {
            let update = &entry.update;
            if update.position <= self.after
                || (update.private && !self.filter.accepts_update(update))
            {
                continue;
            }
            each(&entry.frame, entry.committed_at);
            handed = true;
        }
        self.next_seq = window.end_seq();
        // The only reader: what it has read is needed by nobody.
        if window.readers == 1 {
            let end = window.end_seq();
            window.entries.clear();
            window.first_seq = end;
        }
        if handed {
            return Poll::Ready(Ok(true));
        }
        if window.closed {
            return Poll::Ready(Err(End::Closed));
        }
        match self.slot {
            Some((round, i)) if round == window.round => {
                if let Some(waker) = window.waiters.get_mut(i) {
                    if !waker.will_wake(cx.waker()) {
                        waker.clone_from(cx.waker());
                        self.waker = Some(cx.waker().clone());
                    }
                }
            }
            _ => {
                if window.waiters.len() >= 2 * window.readers + 1024 {
                    // Slots of readers that left without an append since: wake the live ones
                    // (they register again) rather than let the list grow.
                    let stale = self.channel.take_waiters(&mut window);
                    drop(window);
                    stale.into_iter().for_each(Waker::wake);
                    window = self.channel.lock();
                }
                self.slot = Some((window.round, window.waiters.len()));
                window.waiters.push(cx.waker().clone());
                if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    self.waker = Some(cx.waker().clone());
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        let mut window = self.channel.lock();
        window.readers = window.readers.saturating_sub(1);
        // Let go of the task now, not at the next append.
        if let Some((round, i)) = self.slot {
            if round == window.round {
                if let Some(waker) = window.waiters.get_mut(i) {
                    *waker = Waker::noop().clone();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Selector;
    use crate::update::StoredUpdate;
    use std::task::Waker;

    fn entry(position: Position) -> Arc<LogEntry> {
        LogEntry::new(StoredUpdate {
            position,
            id: format!("id-{position}"),
            topics: vec!["t".into()],
            private: false,
            event_type: None,
            retry: None,
            data: "x".into(),
            time_ms: 0,
        })
    }

    fn filter() -> Arc<Filter> {
        Arc::new(Filter::new(vec![Selector::parse("t")], None))
    }

    fn drain(cursor: &mut Cursor) -> Poll<Result<Vec<Bytes>, End>> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut got = Vec::new();
        match cursor.poll_drain(&mut cx, |frame, _| got.push(frame.clone())) {
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(got)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    #[test]
    fn readers_get_every_append_once_and_skip_what_they_had() {
        let channel = Channel::new(16);
        let mut a = channel.join(filter(), 0);
        let mut b = channel.join(filter(), 1);
        assert!(drain(&mut a).is_pending());
        for p in 1..=3 {
            assert_eq!(channel.append(&entry(p)), 2);
        }
        assert!(matches!(drain(&mut a), Poll::Ready(Ok(v)) if v.len() == 3));
        assert!(
            matches!(drain(&mut b), Poll::Ready(Ok(v)) if v.len() == 2),
            "b had 1"
        );
        assert!(drain(&mut a).is_pending());
        drop(b);
        assert_eq!(channel.readers(), 1);
    }

    #[test]
    fn a_reader_out_of_the_window_is_cut_off_and_close_ends_readers() {
        let channel = Channel::new(2);
        let mut slow = channel.join(filter(), 0);
        let mut fast = channel.join(filter(), 0);
        for p in 1..=3 {
            channel.append(&entry(p));
            assert!(matches!(drain(&mut fast), Poll::Ready(Ok(v)) if v.len() == 1));
        }
        assert!(matches!(drain(&mut slow), Poll::Ready(Err(End::CutOff))));
        channel.close();
        assert!(matches!(drain(&mut fast), Poll::Ready(Err(End::Closed))));
    }

    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiting_reader_is_woken_once_per_append_and_leavers_do_not_pile_up() {
        let channel = Channel::new(16);
        let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut reader = channel.join(filter(), 0);
        for _ in 0..3 {
            assert!(reader.poll_drain(&mut cx, |_, _| {}).is_pending());
        }
        assert_eq!(
            channel.lock().waiters.len(),
            1,
            "one slot however often it is polled"
        );
        channel.append(&entry(1));
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(matches!(
            reader.poll_drain(&mut cx, |_, _| {}),
            Poll::Ready(Ok(true))
        ));
        assert!(reader.poll_drain(&mut cx, |_, _| {}).is_pending());
        for _ in 0..5_000 {
            let mut passing = channel.join(filter(), 0);
            assert!(drain(&mut passing).is_pending());
        }
        assert!(channel.lock().waiters.len() <= 2 + 1024 + 1);
        channel.append(&entry(2));
        assert!(count.0.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    }

    #[test]
    fn a_reader_polled_by_another_task_moves_its_wake_up_there() {
        let channel = Channel::new(16);
        let first = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let second = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let (w1, w2) = (Waker::from(first.clone()), Waker::from(second.clone()));
        let mut reader = channel.join(filter(), 0);
        assert!(reader
            .poll_drain(&mut Context::from_waker(&w1), |_, _| {})
            .is_pending());
        // Same task again: nothing new, answered without the lock, still registered.
        assert!(reader
            .poll_drain(&mut Context::from_waker(&w1), |_, _| {})
            .is_pending());
        // Another task: its waker replaces the first one.
        assert!(reader
            .poll_drain(&mut Context::from_waker(&w2), |_, _| {})
            .is_pending());
        channel.append(&entry(1));
        let woken = |c: &Count| c.0.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!((woken(&first), woken(&second)), (0, 1));
        // A new round: the old slot is gone, the look takes the lock and registers again.
        assert!(matches!(
            reader.poll_drain(&mut Context::from_waker(&w2), |_, _| {}),
            Poll::Ready(Ok(true))
        ));
        assert!(reader
            .poll_drain(&mut Context::from_waker(&w2), |_, _| {})
            .is_pending());
        channel.close();
        assert_eq!(woken(&second), 2);
        assert!(matches!(
            reader.poll_drain(&mut Context::from_waker(&w2), |_, _| {}),
            Poll::Ready(Err(End::Closed))
        ));
    }

    #[test]
    fn an_only_reader_leaves_nothing_behind() {
        let channel = Channel::new(16);
        let mut only = channel.join(filter(), 0);
        channel.append(&entry(1));
        assert!(matches!(drain(&mut only), Poll::Ready(Ok(v)) if v.len() == 1));
        assert!(channel.lock().entries.is_empty());
    }
}
