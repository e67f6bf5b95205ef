//! Active subscriptions (Mercure's optional feature): when enabled, the hub announces each
//! subscription's start and end as a private update on
//! `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, and can list the active ones.
//!
//! One announcement per topic selector of the subscription; the subscriber id is a `urn:uuid:` per
//! connection. Announcements go through the same writer as every publish, in order, so a
//! subscription's end is never logged before its start.

use std::sync::Arc;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::hub::{Command, Hub, SubscribeError};
use crate::update::Update;

/// The path under which subscriptions are published and listed.
pub const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";

/// Everything but RFC 3986's unreserved characters is percent-encoded in subscription IRIs.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A live subscription, as the subscriptions API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveSubscription {
    /// `urn:uuid:…`, one per connection.
    pub subscriber: String,
    /// The topic selectors it asked for.
    pub topics: Vec<String>,
    /// The `mercure.payload` claim of its token.
    pub payload: Option<Value>,
}

/// `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, both segments percent-encoded.
pub fn subscription_iri(topic: &str, subscriber: &str) -> String {
    format!(
        "{SUBSCRIPTIONS_PATH}/{}/{}",
        utf8_percent_encode(topic, SEGMENT),
        utf8_percent_encode(subscriber, SEGMENT)
    )
}

/// The JSON-LD object describing one (topic, subscriber) pair.
pub fn subscription_object(sub: &ActiveSubscription, topic: &str, active: bool) -> Value {
    let mut object = json!({
        "@context": "https://mercure.rocks/",
        "id": subscription_iri(topic, &sub.subscriber),
        "type": "Subscription",
        "topic": topic,
        "subscriber": sub.subscriber,
        "active": active,
    });
    if let (Some(payload), Some(map)) = (&sub.payload, object.as_object_mut()) {
        map.insert("payload".into(), payload.clone());
    }
    object
}

impl ActiveSubscription {
    pub(crate) fn new(topics: Vec<String>, payload: Option<Value>) -> Arc<Self> {
        Arc::new(Self {
            subscriber: format!("urn:uuid:{}", uuid::Uuid::now_v7()),
            topics,
            payload,
        })
    }
}

/// Queues the announcements of `sub` becoming active or inactive, without waiting: the writer
/// takes them in order with the publishes. If the hub is overloaded or closing they are dropped
/// (logged): an announcement must never hold up a subscriber.
pub(crate) fn announce(commands: &mpsc::Sender<Command>, sub: &ActiveSubscription, active: bool) {
    for topic in &sub.topics {
        let object = subscription_object(sub, topic, active);
        let update =
            Update::new(subscription_iri(topic, &sub.subscriber), object.to_string()).private();
        let (reply, _ignored) = oneshot::channel();
        if commands.try_send(Command::Publish(update, reply)).is_err() {
            tracing::warn!(
                subscriber = %sub.subscriber,
                "subscription announcement dropped: the hub is overloaded or closing"
            );
        }
    }
}

impl Hub {
    /// The subscriptions alive now (empty unless `HubConfig::subscription_events` is on).
    pub fn active_subscriptions(&self) -> Vec<Arc<ActiveSubscription>> {
        let state = self.shared.lock();
        let mut list: Vec<_> = state.active.values().cloned().collect();
        list.sort_by(|a, b| a.subscriber.cmp(&b.subscriber));
        list
    }

    /// The id of the last update in the log, `earliest` when it is empty.
    pub async fn last_event_id(&self) -> Result<String, SubscribeError> {
        let (head, tail_id) = {
            let state = self.shared.lock();
            (
                state.committed,
                state
                    .tail
                    .back()
                    .filter(|e| e.update.position == state.committed)
                    .map(|e| e.update.id.clone()),
            )
        };
        if let Some(id) = tail_id {
            return Ok(id);
        }
        if head == 0 {
            return Ok(crate::EARLIEST.to_owned());
        }
        let chunk = self
            .shared
            .store
            .read_after(head.saturating_sub(1), 1)
            .await?;
        Ok(chunk
            .into_iter()
            .find(|u| u.position == head)
            .map_or_else(|| crate::EARLIEST.to_owned(), |u| u.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iris_are_percent_encoded() {
        assert_eq!(
            subscription_iri("https://ex.com/books/{id}", "urn:uuid:1"),
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fex.com%2Fbooks%2F%7Bid%7D/urn%3Auuid%3A1"
        );
    }

    #[test]
    fn objects_carry_the_payload_when_present() {
        let sub = ActiveSubscription {
            subscriber: "urn:uuid:1".into(),
            topics: vec!["a".into()],
            payload: Some(json!({"user": 7})),
        };
        let o = subscription_object(&sub, "a", true);
        assert_eq!(o["type"], "Subscription");
        assert_eq!(o["active"], true);
        assert_eq!(o["payload"]["user"], 7);
        let none = ActiveSubscription {
            payload: None,
            ..sub
        };
        assert!(subscription_object(&none, "a", false)
            .get("payload")
            .is_none());
    }
}
