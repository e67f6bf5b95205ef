//! The hub: one ordered log; publishers append, subscribers are cursors into it.
//!
//! A single writer task takes publish requests in arrival order, gives each a position and an id,
//! appends them to the store in batches (group commit: every request that is waiting when a commit
//! starts shares it), and only after the store says "durable" puts them in the in-memory tail,
//! offers them to live subscribers and answers the publishers.
//!
//! A subscriber registers under the same lock that the writer holds while it publishes a commit to
//! the tail and to the live queues. At that instant the subscriber learns the last committed
//! position `head`: everything up to `head` comes from replay (memory tail or store), everything
//! after it from its live queue. So there is no gap and no duplicate, whatever races.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::auth::Claims;
use crate::fanout::{Filter, Registry, SubscriberId};
use crate::log::{Retention, Store, StoreError};
use crate::selector::Selector;
use crate::update::{encode_frame, LogEntry, Position, StoredUpdate, Update};

/// The reserved `Last-Event-ID` value meaning "everything still retained".
pub const EARLIEST: &str = "earliest";

/// Settings of a [`Hub`].
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// History kept by the store. Default: [`Retention::default`].
    pub retention: Retention,
    /// Frames a subscriber may have queued before it is cut off as too slow. Default: 4096.
    pub queue_capacity: usize,
    /// Most recent updates kept in memory (with their encoded frames) to serve resumes without
    /// reading the store. Default: 10,000.
    pub memory_tail: usize,
    /// Most publishes sharing one commit. Default: 1024.
    pub max_batch: usize,
    /// Updates read from the store per step of a replay. Default: 512.
    pub replay_chunk: usize,
    /// Publish requests waiting for the writer before `publish` itself waits. Default: 16,384.
    pub pending_publishes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            retention: Retention::default(),
            queue_capacity: 4096,
            memory_tail: 10_000,
            max_batch: 1024,
            replay_chunk: 512,
            pending_publishes: 16_384,
        }
    }
}

/// A publish was refused. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The update has no topic.
    #[error("an update needs at least one topic")]
    NoTopic,
    /// The publisher's id is already in the log.
    #[error("an update with id {0:?} was already published")]
    DuplicateId(String),
    /// The store failed; the update was not accepted.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    Closed,
}

/// A subscription could not start.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// No selector was given.
    #[error("a subscription needs at least one topic selector")]
    NoSelector,
    /// Looking up the last event id failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    Closed,
}

/// An accepted update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Its id (the publisher's, or the generated `urn:uuid:`).
    pub id: String,
    /// Its position in the log.
    pub position: Position,
}

/// What a subscriber asks for.
#[derive(Debug, Clone, Default)]
pub struct SubscribeRequest {
    /// Topic selectors; at least one.
    pub selectors: Vec<Selector>,
    /// The subscriber's verified claims; `None` for anonymous subscribers (no private updates).
    pub claims: Option<Claims>,
    /// Resume after this id (`earliest` for everything retained).
    pub last_event_id: Option<String>,
}

/// Where a resumed subscription started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumedFrom {
    /// From the start of the retained history (asked for, or the id was not known).
    Earliest,
    /// Right after the update with this id.
    Id(String),
}

impl ResumedFrom {
    /// The value of Mercure's `Last-Event-ID` response header.
    pub fn as_header_value(&self) -> &str {
        match self {
            Self::Earliest => EARLIEST,
            Self::Id(id) => id,
        }
    }
}

pub(crate) struct State {
    /// Position of the last update published to the tail and the live queues.
    pub(crate) committed: Position,
    pub(crate) tail: VecDeque<Arc<LogEntry>>,
    registry: Registry,
    closed: bool,
}

pub(crate) struct Shared {
    pub(crate) config: HubConfig,
    pub(crate) store: Arc<dyn Store>,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that matters
        // more than stopping the hub would: keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

enum Command {
    Publish(Update, oneshot::Sender<Result<Published, PublishError>>),
    Shutdown(oneshot::Sender<()>),
}

/// The engine. Cheap to clone; all clones share one log.
#[derive(Clone)]
pub struct Hub {
    pub(crate) shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// Opens a hub on `store`: loads the last position and the recent tail, and starts the writer.
    /// Must be called inside a tokio runtime.
    pub async fn open(config: HubConfig, store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let last = store.last_position().await?;
        let mut tail = VecDeque::new();
        let keep = config.memory_tail as u64;
        if keep > 0 && last > 0 {
            let mut after = last.saturating_sub(keep);
            loop {
                let chunk = store.read_after(after, config.replay_chunk.max(1)).await?;
                let Some(end) = chunk.last().map(|u| u.position) else {
                    break;
                };
                tail.extend(chunk.into_iter().map(LogEntry::new));
                after = end;
            }
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                committed: last,
                tail,
                registry: Registry::default(),
                closed: false,
            }),
            store,
            config,
        });
        let (commands, rx) = mpsc::channel(shared.config.pending_publishes.max(1));
        tokio::spawn(Writer::new(shared.clone(), last).run(rx));
        Ok(Self { shared, commands })
    }

    /// Appends `update` to the log and returns once it is durable and offered to subscribers.
    pub async fn publish(&self, update: Update) -> Result<Published, PublishError> {
        if update.topics.is_empty() {
            return Err(PublishError::NoTopic);
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Publish(update, reply))
            .await
            .map_err(|_| PublishError::Closed)?;
        answer.await.map_err(|_| PublishError::Closed)?
    }

    /// Starts a subscription: replay after `last_event_id` (if given), then live updates.
    pub async fn subscribe(
        &self,
        request: SubscribeRequest,
    ) -> Result<Subscription, SubscribeError> {
        if request.selectors.is_empty() {
            return Err(SubscribeError::NoSelector);
        }
        let (after, resumed_from) = match request.last_event_id.as_deref() {
            None => (None, None),
            Some(EARLIEST) => (Some(0), Some(ResumedFrom::Earliest)),
            Some(id) => match self.shared.store.position_of(id).await? {
                Some(p) => (Some(p), Some(ResumedFrom::Id(id.to_owned()))),
                None => (Some(0), Some(ResumedFrom::Earliest)),
            },
        };
        let filter = Arc::new(Filter::new(
            request.selectors,
            request.claims.and_then(|c| c.subscribe),
        ));
        let (queue, live) = mpsc::channel(self.shared.config.queue_capacity.max(1));

        let mut state = self.shared.lock();
        if state.closed {
            return Err(SubscribeError::Closed);
        }
        let head = state.committed;
        let after = after.unwrap_or(head);
        // The id may name an update the store has just made durable but the writer has not yet
        // offered (it is past `head`): live delivery must then start after it, not at `head`.
        let id = state
            .registry
            .insert(filter.clone(), queue, after.max(head));
        let mut replay = VecDeque::new();
        let mut from_store = None;
        if after < head {
            let covered = state
                .tail
                .front()
                .is_some_and(|first| first.update.position <= after.saturating_add(1));
            if covered {
                let start = state.tail.partition_point(|e| e.update.position <= after);
                replay.extend(
                    state
                        .tail
                        .range(start..)
                        .filter(|e| e.update.position <= head && filter.accepts_update(&e.update))
                        .map(|e| e.frame.clone()),
                );
            } else {
                from_store = Some(StoreReplay {
                    store: self.shared.store.clone(),
                    after,
                    until: head,
                    chunk: self.shared.config.replay_chunk.max(1),
                    pending: None,
                });
            }
        }
        drop(state);

        Ok(Subscription {
            resumed_from,
            replay,
            from_store,
            filter,
            live,
            registration: Registration {
                shared: Arc::downgrade(&self.shared),
                id,
            },
            failed: false,
        })
    }

    /// The position of the last update offered to subscribers.
    pub fn committed_position(&self) -> Position {
        self.shared.lock().committed
    }

    /// Live subscribers right now.
    pub fn subscriber_count(&self) -> usize {
        self.shared.lock().registry.len()
    }

    /// Stops accepting publishes, finishes those already queued, ends every subscription.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

type ReadFuture = Pin<Box<dyn Future<Output = Result<Vec<StoredUpdate>, StoreError>> + Send>>;

struct StoreReplay {
    store: Arc<dyn Store>,
    after: Position,
    until: Position,
    chunk: usize,
    pending: Option<ReadFuture>,
}

struct Registration {
    shared: Weak<Shared>,
    id: SubscriberId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.lock().registry.remove(self.id);
        }
    }
}

/// A subscriber's stream of SSE frames: the replay, then live updates, in log order.
///
/// It ends when the subscriber was cut off for being too slow (after the frames already queued),
/// when the hub shuts down, or when a replay read from the store fails. Dropping it unregisters
/// the subscriber.
pub struct Subscription {
    resumed_from: Option<ResumedFrom>,
    replay: VecDeque<Bytes>,
    from_store: Option<StoreReplay>,
    filter: Arc<Filter>,
    live: mpsc::Receiver<Bytes>,
    registration: Registration,
    /// A replay read failed: the stream is over.
    failed: bool,
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
    /// Where the replay started, when a last event id was given.
    pub fn resumed_from(&self) -> Option<&ResumedFrom> {
        self.resumed_from.as_ref()
    }
}

impl Stream for Subscription {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        loop {
            if let Some(frame) = this.replay.pop_front() {
                return Poll::Ready(Some(frame));
            }
            let Some(sr) = this.from_store.as_mut() else {
                return this.live.poll_recv(cx);
            };
            if sr.after >= sr.until {
                this.from_store = None;
                continue;
            }
            let read = sr.pending.get_or_insert_with(|| {
                let store = sr.store.clone();
                let (after, chunk) = (sr.after, sr.chunk);
                Box::pin(async move { store.read_after(after, chunk).await })
            });
            match read.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    tracing::warn!(error = %e, "replay from the store failed; ending the stream");
                    this.failed = true;
                    this.from_store = None;
                    return Poll::Ready(None);
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
                        if this.filter.accepts_update(&update) {
                            this.replay.push_back(encode_frame(&update));
                        }
                    }
                }
            }
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    next_position: Position,
    last_trim: Instant,
}

/// How often the writer applies retention to the store.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Most store trim calls per retention pass.
const TRIM_ROUNDS: usize = 8;

impl Writer {
    fn new(shared: Arc<Shared>, last: Position) -> Self {
        Self {
            shared,
            next_position: last + 1,
            last_trim: Instant::now(),
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let max_batch = self.shared.config.max_batch.max(1);
        let mut batch = Vec::with_capacity(max_batch);
        while let Some(first) = commands.recv().await {
            let mut shutdown = None;
            match first {
                Command::Publish(u, r) => batch.push((u, r)),
                Command::Shutdown(done) => shutdown = Some(done),
            }
            while shutdown.is_none() && batch.len() < max_batch {
                match commands.try_recv() {
                    Ok(Command::Publish(u, r)) => batch.push((u, r)),
                    Ok(Command::Shutdown(done)) => shutdown = Some(done),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(&mut batch).await;
            }
            if let Some(done) = shutdown {
                self.close(&mut commands);
                let _ = done.send(());
                return;
            }
            if self.last_trim.elapsed() >= TRIM_EVERY {
                self.trim().await;
            }
        }
        self.close(&mut commands);
    }

    async fn commit(
        &mut self,
        batch: &mut Vec<(Update, oneshot::Sender<Result<Published, PublishError>>)>,
    ) {
        let now_ms = unix_millis();
        let mut accepted = Vec::with_capacity(batch.len());
        let mut stored = Vec::with_capacity(batch.len());
        let mut ids_in_batch = HashSet::new();
        for (update, reply) in batch.drain(..) {
            let id = match &update.id {
                Some(id) => {
                    let id = id.as_str().to_owned();
                    let known = match self.shared.store.position_of(&id).await {
                        Ok(p) => p.is_some(),
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                            continue;
                        }
                    };
                    if known || !ids_in_batch.insert(id.clone()) {
                        let _ = reply.send(Err(PublishError::DuplicateId(id)));
                        continue;
                    }
                    id
                }
                None => format!("urn:uuid:{}", uuid::Uuid::now_v7()),
            };
            let position = self.next_position;
            self.next_position += 1;
            stored.push(StoredUpdate {
                position,
                id: id.clone(),
                topics: update.topics,
                private: update.private,
                event_type: update.event_type.map(|t| t.into_string()),
                retry: update.retry,
                data: update.data,
                time_ms: now_ms,
            });
            accepted.push((Published { id, position }, reply));
        }
        if stored.is_empty() {
            return;
        }
        if let Err(e) = self.shared.store.append(&stored).await {
            tracing::error!(error = %e, count = stored.len(), "store append failed; publishes refused");
            let message = e.to_string();
            for (_, reply) in accepted {
                let _ = reply.send(Err(PublishError::Store(StoreError::Io(message.clone()))));
            }
            return;
        }
        let entries: Vec<_> = stored.into_iter().map(LogEntry::new).collect();
        {
            let mut state = self.shared.lock();
            let tail_cap = self.tail_capacity();
            for entry in entries {
                state.committed = entry.update.position;
                state.registry.deliver(&entry);
                state.tail.push_back(entry);
            }
            while state.tail.len() > tail_cap {
                state.tail.pop_front();
            }
        }
        for (published, reply) in accepted {
            let _ = reply.send(Ok(published));
        }
    }

    fn tail_capacity(&self) -> usize {
        let by_retention = self
            .shared
            .config
            .retention
            .max_updates
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        self.shared.config.memory_tail.min(by_retention)
    }

    /// Applies retention. A store removes a bounded number of updates per call, so this calls
    /// again while it removes something, up to a bound that keeps publishes from waiting long.
    async fn trim(&mut self) {
        self.last_trim = Instant::now();
        let mut removed = 0;
        for _ in 0..TRIM_ROUNDS {
            match self
                .shared
                .store
                .trim(&self.shared.config.retention, unix_millis())
                .await
            {
                Ok(0) => break,
                Ok(n) => removed += n,
                Err(e) => {
                    tracing::warn!(error = %e, "applying retention failed");
                    break;
                }
            }
        }
        if removed > 0 {
            tracing::debug!(removed, "retention applied");
        }
    }

    /// Refuses what is still queued and ends every live subscription.
    fn close(&mut self, commands: &mut mpsc::Receiver<Command>) {
        commands.close();
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                Command::Publish(_, reply) => {
                    let _ = reply.send(Err(PublishError::Closed));
                }
                Command::Shutdown(done) => {
                    let _ = done.send(());
                }
            }
        }
        let mut state = self.shared.lock();
        state.closed = true;
        state.registry.clear();
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
