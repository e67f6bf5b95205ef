//! `herald serve --demo`: a publisher inside the hub process that feeds the demo pages at
//! `/demos/`, publishing through the [`Hub`] directly (no HTTP, no token):
//!
//! | topic | event type | what |
//! |---|---|---|
//! | `urn:herald:demo:notifications` | `notification` | `{"title","body","level"}` every 3 s |
//! | `urn:herald:demo:ticker` | `quotes` | `{"quotes":[{"symbol","price","change"}]}` every second |
//! | `urn:herald:demo:jobs` | `progress`, `complete`, `error` | a job of ten steps every 6.5 s |
//! | `urn:herald:demo:metrics` | `metrics` | CPU, memory, temperature, humidity, and the hub's own subscriber count and log position, every second |
//! | `urn:herald:demo:chat` | `chat` | `{"name","text"}`: a bot's line every 8 s (people post through `/demos/chat/messages`) |
//!
//! Each feed is its own task; all of them end when the hub shuts down.

use std::time::Duration;

use herald_hub::{Hub, PublishError, Update};
use herald_sse::EventType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Prefix of every demo topic.
pub const TOPIC_PREFIX: &str = "urn:herald:demo:";

/// Starts every demo feed on the current tokio runtime.
pub fn spawn(hub: &Hub) {
    tokio::spawn(notifications(hub.clone()));
    tokio::spawn(ticker(hub.clone()));
    tokio::spawn(jobs(hub.clone()));
    tokio::spawn(metrics(hub.clone()));
    tokio::spawn(chat_bot(hub.clone()));
}

/// Whether the feed should go on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// Publishes `data` as an event of type `event_type` to the demo topic `name`.
async fn send(hub: &Hub, name: &str, event_type: &str, data: serde_json::Value) -> Flow {
    let mut update = Update::new(format!("{TOPIC_PREFIX}{name}"), data.to_string());
    if let Ok(t) = EventType::new(event_type) {
        update = update.with_type(t);
    }
    match hub.publish(update).await {
        Ok(_) => Flow::Continue,
        Err(PublishError::Closed) => Flow::Stop,
        Err(e) => {
            // A store hiccup loses one demo update; the feed goes on.
            eprintln!("herald: demo {name}: {e}");
            Flow::Continue
        }
    }
}

fn rng() -> StdRng {
    StdRng::from_os_rng()
}

/// Rounds to two decimals, for prices and readings that read well.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

const NOTIFICATIONS: &[(&str, &str, &str)] = &[
    (
        "Build passed",
        "main #{n} is green: 412 tests in 38 s.",
        "success",
    ),
    (
        "New sign-up",
        "Ada from Lisbon just created an account.",
        "info",
    ),
    ("Disk usage high", "db-2 is {p} % full.", "warning"),
    ("Invoice paid", "INV-{n} was paid by Globex.", "success"),
    (
        "Deploy started",
        "api v3.{n} is rolling out to 3 regions.",
        "info",
    ),
    (
        "Login from a new device",
        "Someone signed in from Firefox on Linux.",
        "warning",
    ),
    (
        "Comment",
        "Grace replied to your review: \"Looks good to me\".",
        "info",
    ),
    (
        "Backup failed",
        "The nightly backup of files-1 timed out.",
        "error",
    ),
];

async fn notifications(hub: Hub) {
    let mut rng = rng();
    let mut n: u32 = 0;
    loop {
        n += 1;
        let (title, body, level) = NOTIFICATIONS[rng.random_range(0..NOTIFICATIONS.len())];
        let body = body
            .replace("{n}", &(1000 + n).to_string())
            .replace("{p}", &rng.random_range(80..97).to_string());
        let data = json!({ "title": title, "body": body, "level": level });
        if send(&hub, "notifications", "notification", data).await == Flow::Stop {
            return;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

async fn ticker(hub: Hub) {
    let mut rng = rng();
    let mut quotes: Vec<(&str, f64)> = vec![
        ("HRLD", 120.0),
        ("MERC", 310.2),
        ("PUSH", 15.75),
        ("LOGX", 87.4),
        ("SSEV", 48.5),
    ];
    loop {
        let mut out = Vec::with_capacity(quotes.len());
        for (symbol, price) in &mut quotes {
            let step = *price * rng.random_range(-0.015..0.015);
            let new = round2((*price + step).max(1.0));
            out.push(json!({ "symbol": symbol, "price": new, "change": round2(new - *price) }));
            *price = new;
        }
        if send(&hub, "ticker", "quotes", json!({ "quotes": out })).await == Flow::Stop {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

const JOB_STEPS: &[&str] = &[
    "Queued",
    "Fetching orders",
    "Fetching customers",
    "Joining tables",
    "Computing totals",
    "Rendering charts",
    "Writing PDF",
    "Compressing",
    "Uploading",
    "Cleaning up",
];

async fn jobs(hub: Hub) {
    let mut rng = rng();
    let mut n: u32 = 0;
    loop {
        n += 1;
        let job = format!("report-{n}");
        let name = format!("Monthly report #{n}");
        // One job in four fails part-way, so the page's error path is seen too.
        let fails_at = (rng.random_range(0..4) == 0).then(|| rng.random_range(3..JOB_STEPS.len()));
        let mut failed = false;
        for (i, step) in JOB_STEPS.iter().enumerate() {
            if fails_at == Some(i) {
                let data = json!({ "job": job, "name": name, "message": format!("{step} failed: the storage service did not answer") });
                if send(&hub, "jobs", "error", data).await == Flow::Stop {
                    return;
                }
                failed = true;
                break;
            }
            let percent = i * 100 / JOB_STEPS.len();
            let data = json!({ "job": job, "name": name, "percent": percent, "step": step });
            if send(&hub, "jobs", "progress", data).await == Flow::Stop {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !failed {
            let data = json!({ "job": job, "name": name, "percent": 100, "result": format!("{} pages, {} KiB", rng.random_range(4..40), rng.random_range(200..900)) });
            if send(&hub, "jobs", "complete", data).await == Flow::Stop {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

async fn metrics(hub: Hub) {
    let mut rng = rng();
    let (mut cpu, mut memory, mut temperature, mut humidity): (f64, f64, f64, f64) =
        (35.0, 52.0, 21.5, 48.0);
    loop {
        cpu = (cpu + rng.random_range(-8.0..8.0)).clamp(2.0, 98.0);
        memory = (memory + rng.random_range(-1.5..1.5)).clamp(20.0, 95.0);
        temperature = (temperature + rng.random_range(-0.3..0.3)).clamp(15.0, 30.0);
        humidity = (humidity + rng.random_range(-1.0..1.0)).clamp(30.0, 70.0);
        let data = json!({
            "cpu": round2(cpu),
            "memory": round2(memory),
            "temperature": round2(temperature),
            "humidity": round2(humidity),
            "subscribers": hub.subscriber_count(),
            "position": hub.committed_position(),
        });
        if send(&hub, "metrics", "metrics", data).await == Flow::Stop {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

const BOT_LINES: &[&str] = &[
    "Welcome! Messages here travel as Server-Sent Events.",
    "Tip: press Escape to pause this page and again to resume; nothing is lost.",
    "Every message has an id; a reconnecting browser sends the last one it saw.",
    "Open this page in two windows and chat with yourself.",
    "This chat also works without EventSource: it falls back to polling.",
];

async fn chat_bot(hub: Hub) {
    let mut i = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(8)).await;
        let data = json!({ "name": "Herald bot", "text": BOT_LINES[i % BOT_LINES.len()] });
        if send(&hub, "chat", "chat", data).await == Flow::Stop {
            return;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::StreamExt;
    use herald_hub::log::memory::MemoryStore;
    use herald_hub::selector::Selector;
    use herald_hub::{HubConfig, SubscribeRequest};

    use super::*;

    #[tokio::test]
    async fn feeds_publish_and_stop_with_the_hub() {
        let hub = Hub::open(HubConfig::default(), Arc::new(MemoryStore::new()))
            .await
            .unwrap();
        let mut sub = hub
            .subscribe(SubscribeRequest {
                selectors: vec![Selector::parse("urn:herald:demo:{name}")],
                claims: None,
                last_event_id: None,
            })
            .await
            .unwrap();
        spawn(&hub);
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 4 {
            let frame = tokio::time::timeout(Duration::from_secs(5), sub.next())
                .await
                .unwrap()
                .unwrap();
            let text = String::from_utf8_lossy(&frame).into_owned();
            let kind = text.lines().next().unwrap_or("").to_owned();
            seen.insert(kind);
        }
        for kind in ["event: notification", "event: quotes", "event: metrics"] {
            assert!(seen.contains(kind), "{seen:?}");
        }
        hub.shutdown().await;
    }
}
