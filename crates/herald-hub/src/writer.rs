//! The single writer: takes publishes in arrival order, commits them to the store in batches
//! (group commit), then offers them to live subscribers and answers the publishers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::hub::{Command, PublishError, Published, Shared};
use crate::log::StoreError;
use crate::update::{LogEntry, Position, StoredUpdate, Update};

type Reply = oneshot::Sender<Result<Published, PublishError>>;
type Accepted = (Published, Reply);

pub(crate) struct Writer {
    shared: Arc<Shared>,
    next_position: Position,
    last_trim: Instant,
}

/// How often the writer applies retention to the store.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Most store trim calls per retention pass.
const TRIM_ROUNDS: usize = 8;

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, last: Position) -> Self {
        Self {
            shared,
            next_position: last + 1,
            last_trim: Instant::now(),
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
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

    async fn commit(&mut self, batch: &mut Vec<(Update, Reply)>) {
        let now_ms = unix_millis();
        let mut accepted = Vec::with_capacity(batch.len());
        let mut stored = Vec::with_capacity(batch.len());
        let mut ids_in_batch = HashSet::new();
        for (update, reply) in batch.drain(..) {
            let id = match &update.id {
                Some(id) => {
                    let id = id.as_str().to_owned();
                    // A shared store refuses known ids itself, atomically with the append (another
                    // process may be publishing the same id right now); a local one is asked here.
                    let known = if self.shared.store.is_shared() {
                        false
                    } else {
                        match self.shared.store.position_of(&id).await {
                            Ok(p) => p.is_some(),
                            Err(e) => {
                                let _ = reply.send(Err(e.into()));
                                continue;
                            }
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
        if self.shared.store.is_shared() {
            self.commit_shared(stored, accepted).await;
            return;
        }
        let commit_started = Instant::now();
        let appended = self.shared.store.append(&stored).await;
        let metrics = &self.shared.metrics;
        metrics
            .commit_seconds
            .observe(commit_started.elapsed().as_secs_f64());
        metrics.commit_batch_size.observe(stored.len() as f64);
        if let Err(e) = appended {
            tracing::error!(error = %e, count = stored.len(), "store append failed; publishes refused");
            let message = e.to_string();
            for (_, reply) in accepted {
                let _ = reply.send(Err(PublishError::Store(StoreError::Io(message.clone()))));
            }
            return;
        }
        metrics.updates.inc_by(stored.len() as u64);
        self.shared
            .apply(stored.into_iter().map(LogEntry::new).collect());
        for (published, reply) in accepted {
            let _ = reply.send(Ok(published));
        }
    }

    /// A shared store assigns positions; delivery happens when the tailer reads the updates back
    /// from the log, in the log's order, like every other process's updates.
    async fn commit_shared(&mut self, stored: Vec<StoredUpdate>, accepted: Vec<Accepted>) {
        let commit_started = Instant::now();
        let appended = self.shared.store.append_shared(&stored).await;
        let metrics = &self.shared.metrics;
        metrics
            .commit_seconds
            .observe(commit_started.elapsed().as_secs_f64());
        metrics.commit_batch_size.observe(stored.len() as f64);
        let positions = match appended {
            Ok(p) if p.len() == accepted.len() => p,
            Ok(_) | Err(_) => {
                let message = match appended {
                    Err(e) => e.to_string(),
                    Ok(_) => "the store answered a different number of positions".into(),
                };
                tracing::error!(error = %message, count = stored.len(), "store append failed; publishes refused");
                for (_, reply) in accepted {
                    let _ = reply.send(Err(PublishError::Store(StoreError::Io(message.clone()))));
                }
                return;
            }
        };
        for ((mut published, reply), position) in accepted.into_iter().zip(positions) {
            match position {
                Some(p) => {
                    metrics.updates.inc();
                    published.position = p;
                    let _ = reply.send(Ok(published));
                }
                None => {
                    let _ = reply.send(Err(PublishError::DuplicateId(published.id)));
                }
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

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
