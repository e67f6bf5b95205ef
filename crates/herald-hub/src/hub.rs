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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::auth::Claims;
use crate::fanout::{Filter, Registry, SubscriberId};
use crate::log::{Retention, Store, StoreError};
use crate::metrics::{FailureReason, HubMetrics, ReplaySource};
use crate::selector::Selector;
use crate::subscription::{Registration, StoreReplay, Subscription};
use crate::subscriptions::{announce, ActiveSubscription};
use crate::update::{LogEntry, Position, Update};
use crate::writer::Writer;

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
    /// Announce each subscription's start and end as private updates on
    /// `/.well-known/mercure/subscriptions/{topic}/{subscriber}` and keep the list for the
    /// subscriptions API. Default: off.
    pub subscription_events: bool,
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
            subscription_events: false,
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
    pub(crate) registry: Registry,
    /// Live subscriptions, kept only when subscription events are on.
    pub(crate) active: HashMap<SubscriberId, Arc<ActiveSubscription>>,
    pub(crate) closed: bool,
}

pub(crate) struct Shared {
    pub(crate) config: HubConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: HubMetrics,
    state: Mutex<State>,
}

impl Shared {
    /// Makes committed entries visible: the memory tail, the committed position, and every live
    /// subscriber they reach. Entries come in log order, after the current committed position.
    pub(crate) fn apply(&self, entries: Vec<Arc<LogEntry>>) {
        let metrics = &self.metrics;
        let tail_cap = self.tail_capacity();
        let mut state = self.lock();
        let (mut delivered, mut cut_off) = (0, 0);
        for entry in entries {
            if entry.update.position <= state.committed {
                continue;
            }
            state.committed = entry.update.position;
            let d = state.registry.deliver(&entry);
            delivered += d.delivered;
            cut_off += d.cut_off;
            state.tail.push_back(entry);
        }
        metrics.deliveries.inc_by(delivered);
        metrics.slow_consumer_disconnects.inc_by(cut_off);
        while state.tail.len() > tail_cap {
            state.tail.pop_front();
        }
    }

    fn tail_capacity(&self) -> usize {
        let by_retention = self
            .config
            .retention
            .max_updates
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        self.config.memory_tail.min(by_retention)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that matters
        // more than stopping the hub would: keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(crate) enum Command {
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
                active: HashMap::new(),
                closed: false,
            }),
            store,
            config,
            metrics: HubMetrics::default(),
        });
        let (commands, rx) = mpsc::channel(shared.config.pending_publishes.max(1));
        tokio::spawn(Writer::new(shared.clone(), last).run(rx));
        if shared.store.is_shared() {
            tokio::spawn(crate::tailer::run(Arc::downgrade(&shared)));
        }
        Ok(Self { shared, commands })
    }

    /// Appends `update` to the log and returns once it is durable and offered to subscribers.
    pub async fn publish(&self, update: Update) -> Result<Published, PublishError> {
        if update.topics.is_empty() {
            return Err(PublishError::NoTopic);
        }
        let started = Instant::now();
        let (reply, answer) = oneshot::channel();
        let outcome = match self.commands.send(Command::Publish(update, reply)).await {
            Ok(()) => answer.await.unwrap_or(Err(PublishError::Closed)),
            Err(_) => Err(PublishError::Closed),
        };
        let metrics = &self.shared.metrics;
        match &outcome {
            Ok(_) => metrics
                .publish_seconds
                .observe(started.elapsed().as_secs_f64()),
            Err(PublishError::DuplicateId(_)) => metrics.failure(FailureReason::Duplicate),
            Err(PublishError::Store(_)) => metrics.failure(FailureReason::Store),
            Err(PublishError::Closed) => metrics.failure(FailureReason::Closed),
            Err(PublishError::NoTopic) => {}
        }
        outcome
    }

    /// The settings the hub was opened with.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// The engine's metrics (register them with [`HubMetrics::register`]).
    pub fn metrics(&self) -> &HubMetrics {
        &self.shared.metrics
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
        let active = self.shared.config.subscription_events.then(|| {
            ActiveSubscription::new(
                request
                    .selectors
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
                request.claims.as_ref().and_then(|c| c.payload.clone()),
            )
        });
        let filter = Arc::new(Filter::new(
            request.selectors,
            request.claims.and_then(|c| c.subscribe),
        ));

        let mut state = self.shared.lock();
        if state.closed {
            return Err(SubscribeError::Closed);
        }
        let head = state.committed;
        let after = after.unwrap_or(head);
        // The id may name an update the store has just made durable but the writer has not yet
        // offered (it is past `head`): live delivery must then start after it, not at `head`.
        let (id, live) = state.registry.subscribe(
            filter.clone(),
            after.max(head),
            self.shared.config.queue_capacity,
        );
        let mut replay = VecDeque::new();
        let mut from_store = None;
        if after < head {
            let covered = state
                .tail
                .front()
                .is_some_and(|first| first.update.position <= after.saturating_add(1));
            if covered {
                self.shared.metrics.replay(ReplaySource::Memory);
                let start = state.tail.partition_point(|e| e.update.position <= after);
                replay.extend(
                    state
                        .tail
                        .range(start..)
                        .filter(|e| e.update.position <= head && filter.accepts_update(&e.update))
                        .map(|e| e.frame.clone()),
                );
            } else {
                self.shared.metrics.replay(ReplaySource::Store);
                from_store = Some(StoreReplay {
                    store: self.shared.store.clone(),
                    after,
                    until: head,
                    chunk: self.shared.config.replay_chunk.max(1),
                    pending: None,
                });
            }
        }
        if let Some(sub) = &active {
            state.active.insert(id, sub.clone());
        }
        drop(state);
        if let Some(sub) = &active {
            announce(&self.commands, sub, true);
        }
        self.shared.metrics.subscriptions.inc();
        self.shared.metrics.subscribers_connected.inc();

        Ok(Subscription {
            resumed_from,
            replay,
            from_store,
            filter,
            live,
            registration: Registration {
                shared: Arc::downgrade(&self.shared),
                id,
                announce: active.map(|sub| (self.commands.downgrade(), sub)),
            },
            failed: false,
        })
    }

    /// Whether the hub can take publishes now: not shutting down, and its store answers.
    pub async fn ready(&self) -> Result<(), String> {
        if self.shared.lock().closed || self.commands.is_closed() {
            return Err("the hub is shutting down".into());
        }
        self.shared
            .store
            .last_position()
            .await
            .map(|_| ())
            .map_err(|e| format!("the store does not answer: {e}"))
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
