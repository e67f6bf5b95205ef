//! Delivery of committed log entries to live subscribers.
//!
//! - **Routing, not scanning.** A subscriber whose selectors are all exact topics is found through
//!   a topic index; only subscribers with `*` or template selectors are matched per entry.
//! - **Bounded queues.** Each subscriber has a bounded queue of frames ([`bytes::Bytes`] shared
//!   with every other subscriber of the same entry, so a queued frame costs a pointer, not a copy).
//! - **Slow consumers are cut, never waited for.** When a subscriber's queue is full, it is removed
//!   from live delivery and its queue is closed: its stream ends after the frames already queued,
//!   so its EventSource reconnects with the last id it received and catches up from the log.
//!   Nobody else is slowed and memory stays bounded by the queue size.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use std::time::Instant;

use bytes::Bytes;

use crate::queue::{self, PushError};
use crate::selector::{Selector, SelectorSet};
use crate::update::{LogEntry, Position, StoredUpdate};

/// Identifies a live subscriber in the registry.
pub(crate) type SubscriberId = u64;

/// A frame in a subscriber's queue, with its commit time (for the delivery latency metric).
pub(crate) type Queued = (Bytes, Instant);

/// What one subscriber asked for and may see.
#[derive(Debug)]
pub struct Filter {
    selectors: Vec<Selector>,
    private_access: Option<SelectorSet>,
}

impl Filter {
    /// A filter for `selectors`, seeing private updates allowed by `private_access` (the
    /// subscriber's `mercure.subscribe` claim; `None` for anonymous subscribers).
    pub fn new(selectors: Vec<Selector>, private_access: Option<SelectorSet>) -> Self {
        Self {
            selectors,
            private_access,
        }
    }

    /// Whether an update with these topics and privacy reaches this subscriber.
    pub fn accepts(&self, topics: &[String], private: bool) -> bool {
        let wanted = self
            .selectors
            .iter()
            .any(|s| topics.iter().any(|t| s.matches(t)));
        wanted
            && (!private
                || self
                    .private_access
                    .as_ref()
                    .is_some_and(|a| a.matches_any(topics)))
    }

    /// Whether a stored update reaches this subscriber.
    pub fn accepts_update(&self, update: &StoredUpdate) -> bool {
        self.accepts(&update.topics, update.private)
    }
}

struct Slot {
    queue: queue::Sender,
    filter: Arc<Filter>,
    /// The last position offered, so a subscriber reached through several topics or selectors
    /// gets an entry once.
    last_offered: Position,
}

/// Counts from one delivery.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub delivered: u64,
    pub cut_off: u64,
}

/// The live subscribers.
#[derive(Default)]
pub(crate) struct Registry {
    next_id: SubscriberId,
    slots: HashMap<SubscriberId, Slot>,
    by_topic: HashMap<Box<str>, HashSet<SubscriberId>>,
    wide: HashSet<SubscriberId>,
}

impl Registry {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Registers a subscriber that receives entries after `after`.
    pub fn insert(
        &mut self,
        filter: Arc<Filter>,
        queue: queue::Sender,
        after: Position,
    ) -> SubscriberId {
        self.next_id += 1;
        let id = self.next_id;
        for s in &filter.selectors {
            match s.exact_topic() {
                Some(topic) => {
                    self.by_topic.entry(topic.into()).or_default().insert(id);
                }
                None => {
                    self.wide.insert(id);
                }
            }
        }
        self.slots.insert(
            id,
            Slot {
                queue,
                filter,
                last_offered: after,
            },
        );
        id
    }

    /// Unregisters a subscriber (no-op if it was already cut off).
    pub fn remove(&mut self, id: SubscriberId) {
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        for s in &slot.filter.selectors {
            match s.exact_topic() {
                Some(topic) => {
                    if let Some(set) = self.by_topic.get_mut(topic) {
                        set.remove(&id);
                        if set.is_empty() {
                            self.by_topic.remove(topic);
                        }
                    }
                }
                None => {
                    self.wide.remove(&id);
                }
            }
        }
    }

    /// Offers `entry` to every subscriber it reaches.
    pub fn deliver(&mut self, entry: &LogEntry) -> Delivery {
        let update = &entry.update;
        let mut stats = Delivery::default();
        let mut cut = Vec::new();
        let Self {
            slots,
            by_topic,
            wide,
            ..
        } = self;
        let mut offer = |id: SubscriberId| {
            let Some(slot) = slots.get_mut(&id) else {
                return;
            };
            if slot.last_offered >= update.position {
                return;
            }
            slot.last_offered = update.position;
            if !slot.filter.accepts_update(update) {
                return;
            }
            match slot.queue.push((entry.frame.clone(), entry.committed_at)) {
                Ok(()) => stats.delivered += 1,
                Err(PushError::Full) => {
                    stats.cut_off += 1;
                    cut.push(id);
                }
                // The subscription was dropped and is about to unregister itself.
                Err(PushError::Closed) => cut.push(id),
            }
        };
        for topic in &update.topics {
            if let Some(ids) = by_topic.get(topic.as_str()) {
                ids.iter().copied().for_each(&mut offer);
            }
        }
        wide.iter().copied().for_each(&mut offer);
        for id in cut {
            self.remove(id);
        }
        stats
    }

    /// Ends every live subscription (shutdown).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.by_topic.clear();
        self.wide.clear();
    }
}
