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

use std::collections::HashMap;
use std::sync::Arc;

use std::time::Instant;

use bytes::Bytes;

use crate::channel::Channel;
use crate::queue::{self, PushError};
use crate::selector::{Selector, SelectorSet};
use crate::subscription::Live;
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
    id: SubscriberId,
    queue: queue::Sender,
    filter: Arc<Filter>,
    /// Every selector is an exact topic: a public update found through the topic index is
    /// known to match, without looking at the filter.
    exact_only: bool,
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

/// Index of a slot in [`Registry::slots`].
type SlotIndex = u32;

/// The live subscribers.
///
/// Slots live in a slab (a vector with a free list) and the topic index holds slab indices, so
/// delivering to the subscribers of a topic walks a dense list of small integers and indexes a
/// vector: no hashing per subscriber.
#[derive(Default)]
pub(crate) struct Registry {
    next_id: SubscriberId,
    slots: Vec<Option<Slot>>,
    free: Vec<SlotIndex>,
    /// Where each live subscriber's slot is.
    index_of: HashMap<SubscriberId, SlotIndex>,
    by_topic: HashMap<Box<str>, Vec<SlotIndex>>,
    wide: Vec<SlotIndex>,
    /// Subscribers of exactly one topic read that topic's channel instead of having a queue.
    channels: HashMap<Box<str>, Member>,
    /// Which channel each such subscriber reads.
    channel_of: HashMap<SubscriberId, Box<str>>,
}

/// A channel and how many subscribers read it.
struct Member {
    channel: Arc<Channel>,
    subscribers: usize,
}

impl Registry {
    pub fn len(&self) -> usize {
        self.index_of.len() + self.channel_of.len()
    }

    /// Registers a subscriber that receives entries after `after`: through its topic's channel
    /// if it asked for exactly one topic, else through a queue of `capacity` frames.
    pub fn subscribe(
        &mut self,
        filter: Arc<Filter>,
        after: Position,
        capacity: usize,
    ) -> (SubscriberId, Live) {
        if let [only] = filter.selectors.as_slice() {
            if let Some(topic) = only.exact_topic() {
                self.next_id += 1;
                let id = self.next_id;
                let member = self.channels.entry(topic.into()).or_insert_with(|| Member {
                    channel: Channel::new(capacity),
                    subscribers: 0,
                });
                member.subscribers += 1;
                let cursor = member.channel.join(filter.clone(), after);
                self.channel_of.insert(id, topic.into());
                return (id, Live::Channel(cursor));
            }
        }
        let (tx, rx) = queue::bounded(capacity);
        (self.insert(filter, tx, after), Live::Queue(rx))
    }

    /// Registers a subscriber with a queue.
    pub fn insert(
        &mut self,
        filter: Arc<Filter>,
        queue: queue::Sender,
        after: Position,
    ) -> SubscriberId {
        self.next_id += 1;
        let id = self.next_id;
        let exact_only = filter.selectors.iter().all(|s| s.exact_topic().is_some());
        let slot = Slot {
            id,
            queue,
            filter,
            exact_only,
            last_offered: after,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                // More than 4 billion live subscribers would not fit in memory anyway.
                let i = SlotIndex::try_from(self.slots.len()).unwrap_or(SlotIndex::MAX);
                self.slots.push(Some(slot));
                i
            }
        };
        self.index_of.insert(id, index);
        let mut wide = false;
        if let Some(Some(slot)) = self.slots.get(index as usize) {
            for s in &slot.filter.selectors {
                match s.exact_topic() {
                    Some(topic) => {
                        let list = self.by_topic.entry(topic.into()).or_default();
                        // A subscription naming a topic twice is listed once.
                        if list.last() != Some(&index) && !list.contains(&index) {
                            list.push(index);
                        }
                    }
                    None => wide = true,
                }
            }
        }
        if wide {
            self.wide.push(index);
        }
        id
    }

    /// Unregisters a subscriber (no-op if it was already cut off).
    pub fn remove(&mut self, id: SubscriberId) {
        if let Some(topic) = self.channel_of.remove(&id) {
            if let Some(member) = self.channels.get_mut(&topic) {
                member.subscribers -= 1;
                if member.subscribers == 0 {
                    self.channels.remove(&topic);
                }
            }
            return;
        }
        let Some(index) = self.index_of.remove(&id) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(index as usize).and_then(Option::take) else {
            return;
        };
        self.free.push(index);
        let unlist = |list: &mut Vec<SlotIndex>| {
            if let Some(at) = list.iter().position(|&i| i == index) {
                list.swap_remove(at);
            }
        };
        let mut wide = false;
        for s in &slot.filter.selectors {
            match s.exact_topic() {
                Some(topic) => {
                    if let Some(list) = self.by_topic.get_mut(topic) {
                        unlist(list);
                        if list.is_empty() {
                            self.by_topic.remove(topic);
                        }
                    }
                }
                None => wide = true,
            }
        }
        if wide {
            unlist(&mut self.wide);
        }
    }

    /// Offers `entry` to every subscriber it reaches.
    pub fn deliver(&mut self, entry: &Arc<LogEntry>) -> Delivery {
        let update = &entry.update;
        let mut stats = Delivery::default();
        let mut cut = Vec::new();
        let Self {
            slots,
            by_topic,
            wide,
            channels,
            ..
        } = self;
        for topic in &update.topics {
            if let Some(member) = channels.get(topic.as_str()) {
                let readers = member.channel.append(entry);
                if !update.private {
                    stats.delivered += readers as u64;
                }
            }
        }
        let mut offer = |index: SlotIndex, indexed: bool| {
            let Some(Some(slot)) = slots.get_mut(index as usize) else {
                return;
            };
            if slot.last_offered >= update.position {
                return;
            }
            slot.last_offered = update.position;
            let known_match = indexed && slot.exact_only && !update.private;
            if !known_match && !slot.filter.accepts_update(update) {
                return;
            }
            match slot.queue.push((entry.frame.clone(), entry.committed_at)) {
                Ok(()) => stats.delivered += 1,
                Err(PushError::Full) => {
                    stats.cut_off += 1;
                    cut.push(slot.id);
                }
                // The subscription was dropped and is about to unregister itself.
                Err(PushError::Closed) => cut.push(slot.id),
            }
        };
        for topic in &update.topics {
            if let Some(list) = by_topic.get(topic.as_str()) {
                list.iter().for_each(|&i| offer(i, true));
            }
        }
        wide.iter().for_each(|&i| offer(i, false));
        for id in cut {
            self.remove(id);
        }
        stats
    }

    /// Ends every live subscription (shutdown).
    pub fn clear(&mut self) {
        for member in self.channels.values() {
            member.channel.close();
        }
        self.channels.clear();
        self.channel_of.clear();
        self.slots.clear();
        self.free.clear();
        self.index_of.clear();
        self.by_topic.clear();
        self.wide.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Waker};

    fn entry(position: Position, topics: &[&str]) -> Arc<LogEntry> {
        LogEntry::new(StoredUpdate {
            position,
            id: format!("id-{position}"),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            private: false,
            event_type: None,
            retry: None,
            data: "x".into(),
            time_ms: 0,
        })
    }

    fn subscriber(registry: &mut Registry, selectors: &[&str]) -> (SubscriberId, queue::Receiver) {
        let (tx, rx) = queue::bounded(16);
        let filter = Arc::new(Filter::new(
            selectors.iter().map(|s| Selector::parse(s)).collect(),
            None,
        ));
        (registry.insert(filter, tx, 0), rx)
    }

    fn received(rx: &mut queue::Receiver) -> usize {
        let mut cx = Context::from_waker(Waker::noop());
        let mut n = 0;
        let _ = rx.poll_drain(&mut cx, |_| n += 1);
        n
    }

    #[test]
    fn routes_by_topic_once_per_subscriber_and_reuses_slots() {
        let mut registry = Registry::default();
        let (a, mut rx_a) = subscriber(&mut registry, &["t1", "t2", "t1"]);
        let (_b, mut rx_b) = subscriber(&mut registry, &["t2"]);
        let (_w, mut rx_w) = subscriber(&mut registry, &["{+any}"]);
        let d = registry.deliver(&entry(1, &["t1", "t2"]));
        assert_eq!(
            d.delivered, 3,
            "a once (two topics, a duplicate selector), b, the template"
        );
        assert_eq!(
            (
                received(&mut rx_a),
                received(&mut rx_b),
                received(&mut rx_w)
            ),
            (1, 1, 1)
        );

        registry.remove(a);
        assert_eq!(registry.len(), 2);
        assert!(
            !registry.by_topic.contains_key("t1"),
            "an empty topic list is dropped"
        );
        // The freed slot is reused by the next subscriber, which must not inherit a's topics.
        let (_c, mut rx_c) = subscriber(&mut registry, &["t3"]);
        let d = registry.deliver(&entry(2, &["t1", "t2"]));
        assert_eq!(d.delivered, 2);
        assert_eq!(received(&mut rx_c), 0);
        let d = registry.deliver(&entry(3, &["t3"]));
        assert_eq!(d.delivered, 2, "c and the template");
        assert_eq!(received(&mut rx_c), 1);
    }

    #[test]
    fn a_full_queue_is_cut_off_and_unregistered() {
        let mut registry = Registry::default();
        let (tx, _rx) = queue::bounded(1);
        let filter = Arc::new(Filter::new(vec![Selector::parse("t")], None));
        registry.insert(filter, tx, 0);
        assert_eq!(registry.deliver(&entry(1, &["t"])).delivered, 1);
        let d = registry.deliver(&entry(2, &["t"]));
        assert_eq!(d.cut_off, 1);
        assert_eq!(registry.len(), 0);
        assert!(registry.by_topic.is_empty());
    }
}
