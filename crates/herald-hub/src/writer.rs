//! The single writer: takes publishes in arrival order, commits them to the store in batches
//! (group commit), then offers them to live subscribers and answers the publishers.
//!
//! Commits are pipelined: one batch is in the store (for redb, being written and fsynced on the
//! store's commit thread) while the publishes arriving meanwhile queue up. The moment that commit
//! ends, the queued publishes get their ids and positions and go to the store as the next batch,
//! and only then is the finished batch offered to subscribers and answered. So the store never
//! waits for delivery or replies, and a commit gathers every publish that arrived during the
//! previous one.
//!
//! Positions stay gap-free and in commit order: a batch gets its positions only once the previous
//! commit has ended, right after the last durable one. A failed commit refuses exactly its own
//! publishes, and the next batch reuses its positions. Batches are offered to subscribers in
//! commit order, which is position order, as [`Shared::apply`] requires.

use std::collections::HashSet;
use std::future::{poll_fn, Future};
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::hub::{Command, PublishError, Published, Shared};
use crate::log::StoreError;
use crate::update::{generated_id, LogEntry, Position, StoredUpdate};

type Reply = oneshot::Sender<Result<Published, PublishError>>;

/// How often the writer applies retention to the store.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Most store trim calls per retention pass.
const TRIM_ROUNDS: usize = 8;

/// Publishes that share one commit.
#[derive(Default)]
struct Batch {
    stored: Vec<StoredUpdate>,
    /// One per entry of `stored`.
    replies: Vec<Reply>,
    /// The publisher-given ids among them (see [`Writer::ids_in_flight`]).
    given_ids: Vec<String>,
}

/// What the store said about a batch.
enum Outcome {
    /// A local store: all of the batch is durable, or none of it.
    Local(Result<(), StoreError>),
    /// A shared store: each update's position, or `None` for an id the log already holds.
    Shared(Result<Vec<Option<Position>>, StoreError>),
}

/// A batch in the store.
type Commit = Pin<Box<dyn Future<Output = (Batch, Outcome)> + Send>>;

pub(crate) struct Writer {
    shared: Arc<Shared>,
    /// The position the next accepted update gets (a local store's; a shared store assigns its
    /// own).
    next_position: Position,
    /// Publisher-given ids of the batch being built and of the one in the store: the store does
    /// not know them yet, so a second publish with one of them is caught here.
    ids_in_flight: HashSet<String>,
    /// Whether commands are still taken (no shutdown asked, senders left).
    open: bool,
    /// Shutdown requests, answered once everything taken is finished.
    shutdown: Vec<oneshot::Sender<()>>,
    last_trim: Instant,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, last: Position) -> Self {
        Self {
            shared,
            next_position: last + 1,
            ids_in_flight: HashSet::new(),
            open: true,
            shutdown: Vec::new(),
            last_trim: Instant::now(),
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut pending = Batch::default();
        loop {
            if pending.stored.is_empty() {
                if !self.open {
                    break;
                }
                match commands.recv().await {
                    Some(command) => self.take(command, &mut pending).await,
                    None => self.open = false,
                }
                self.take_queued(&mut commands, &mut pending).await;
                continue;
            }
            if self.last_trim.elapsed() >= TRIM_EVERY {
                self.trim().await;
            }
            let mut commit = self.launch(mem::take(&mut pending)).await;
            loop {
                let (batch, outcome) = commit.await;
                if let (Outcome::Local(Err(_)), Some(first)) = (&outcome, batch.stored.first()) {
                    // Nothing of it was stored: the next batch takes its positions.
                    self.next_position = first.position;
                }
                for id in &batch.given_ids {
                    self.ids_in_flight.remove(id);
                }
                self.take_queued(&mut commands, &mut pending).await;
                let next = if pending.stored.is_empty() || self.last_trim.elapsed() >= TRIM_EVERY {
                    None
                } else {
                    Some(self.launch(mem::take(&mut pending)).await)
                };
                self.finish(batch, outcome);
                match next {
                    Some(c) => commit = c,
                    None => break,
                }
            }
        }
        self.close(&mut commands);
        for done in self.shutdown.drain(..) {
            let _ = done.send(());
        }
    }

    /// Takes what is queued right now, up to a full batch, without waiting.
    async fn take_queued(&mut self, commands: &mut mpsc::Receiver<Command>, batch: &mut Batch) {
        let max_batch = self.shared.config.max_batch.max(1);
        while self.open && batch.stored.len() < max_batch {
            match commands.try_recv() {
                Ok(command) => self.take(command, batch).await,
                Err(_) => break,
            }
        }
    }

    /// Adds a publish to `batch` with its id and position, or refuses it (a duplicate id).
    async fn take(&mut self, command: Command, batch: &mut Batch) {
        let (update, reply) = match command {
            Command::Publish(update, reply) => (update, reply),
            Command::Shutdown(done) => {
                self.open = false;
                self.shutdown.push(done);
                return;
            }
        };
        let id = match update.id {
            Some(id) => {
                let id = id.into_string();
                if self.ids_in_flight.contains(&id) {
                    let _ = reply.send(Err(PublishError::DuplicateId(id)));
                    return;
                }
                // A shared store refuses known ids itself, atomically with the append (another
                // process may be publishing the same id right now); a local one is asked here.
                if !self.shared.store.is_shared() {
                    match self.shared.store.position_of(&id).await {
                        Ok(None) => {}
                        Ok(Some(_)) => {
                            let _ = reply.send(Err(PublishError::DuplicateId(id)));
                            return;
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                            return;
                        }
                    }
                }
                self.ids_in_flight.insert(id.clone());
                batch.given_ids.push(id.clone());
                id
            }
            // A local store knows the position now: the id names it, so the store needs no
            // index entry for it. A shared store assigns positions itself.
            None if self.shared.store.is_shared() => {
                format!("urn:uuid:{}", uuid::Uuid::now_v7())
            }
            None => generated_id(self.next_position, unix_millis()),
        };
        let position = self.next_position;
        self.next_position += 1;
        batch.stored.push(StoredUpdate {
            position,
            id,
            topics: update.topics,
            private: update.private,
            event_type: update.event_type.map(|t| t.into_string()),
            retry: update.retry,
            data: update.data,
            time_ms: 0, // set when the batch goes to the store
        });
        batch.replies.push(reply);
    }

    /// Hands `batch` to the store and returns its commit, already started.
    async fn launch(&self, mut batch: Batch) -> Commit {
        let now_ms = unix_millis();
        for update in &mut batch.stored {
            update.time_ms = now_ms;
        }
        let shared = Arc::clone(&self.shared);
        shared
            .metrics
            .commit_batch_size
            .observe(batch.stored.len() as f64);
        let mut commit: Commit = Box::pin(async move {
            let started = Instant::now();
            let store = &shared.store;
            let outcome = if store.is_shared() {
                Outcome::Shared(store.append_shared(&batch.stored).await)
            } else {
                Outcome::Local(store.append(&batch.stored).await)
            };
            shared
                .metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            (batch, outcome)
        });
        // Poll it once now: the store starts on it (redb: the commit thread has the batch) while
        // this task delivers and answers the previous batch, not after.
        let first = poll_fn(|cx| Poll::Ready(commit.as_mut().poll(cx))).await;
        match first {
            Poll::Ready(done) => Box::pin(std::future::ready(done)),
            Poll::Pending => commit,
        }
    }

    /// Makes a committed batch visible and answers its publishers, or refuses it.
    fn finish(&self, batch: Batch, outcome: Outcome) {
        let Batch {
            stored, replies, ..
        } = batch;
        let metrics = &self.shared.metrics;
        match outcome {
            Outcome::Local(Ok(())) => {
                metrics.updates.inc_by(stored.len() as u64);
                let answers: Vec<Published> = stored
                    .iter()
                    .map(|u| Published {
                        id: u.id.clone(),
                        position: u.position,
                    })
                    .collect();
                self.shared
                    .apply(stored.into_iter().map(LogEntry::new).collect());
                for (published, reply) in answers.into_iter().zip(replies) {
                    let _ = reply.send(Ok(published));
                }
            }
            Outcome::Local(Err(e)) => {
                tracing::error!(error = %e, count = stored.len(), "store append failed; publishes refused");
                refuse_all(replies, &e.to_string());
            }
            Outcome::Shared(Ok(positions)) if positions.len() == stored.len() => {
                for ((update, reply), position) in stored.into_iter().zip(replies).zip(positions) {
                    match position {
                        Some(position) => {
                            metrics.updates.inc();
                            let _ = reply.send(Ok(Published {
                                id: update.id,
                                position,
                            }));
                        }
                        None => {
                            let _ = reply.send(Err(PublishError::DuplicateId(update.id)));
                        }
                    }
                }
            }
            Outcome::Shared(answer) => {
                let message = match answer {
                    Err(e) => e.to_string(),
                    Ok(_) => "the store answered a different number of positions".into(),
                };
                tracing::error!(error = %message, count = stored.len(), "store append failed; publishes refused");
                refuse_all(replies, &message);
            }
        }
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

fn refuse_all(replies: Vec<Reply>, message: &str) {
    for reply in replies {
        let _ = reply.send(Err(PublishError::Store(StoreError::Io(message.to_owned()))));
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
