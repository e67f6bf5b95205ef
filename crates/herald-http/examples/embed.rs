//! Embedding Herald in an axum application: the app serves its own pages and Herald's Mercure
//! endpoint from one process, and publishes from its own handlers through the [`Hub`] directly.
//!
//! Run it with `cargo run -p herald-http --example embed`, open <http://127.0.0.1:3000/>, and
//! press the button: the page's `EventSource` receives what the app published.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::Router;
use herald_http::{router, HttpConfig};
use herald_hub::auth::Verifier;
use herald_hub::log::memory::MemoryStore;
use herald_hub::{Hub, HubConfig, Update};

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Herald embedded</title></head>
<body><main>
<h1>An axum app with Herald inside</h1>
<button id="ping">Publish a ping</button>
<ul id="log" aria-live="polite"></ul>
<script src="/app.js"></script>
</main></body></html>"#;

const SCRIPT: &str = r#"
const log = document.getElementById("log");
const events = new EventSource("/.well-known/mercure?topic=" + encodeURIComponent("urn:example:pings"));
events.onmessage = (e) => {
  const item = document.createElement("li");
  item.textContent = e.data;
  log.append(item);
};
document.getElementById("ping").addEventListener("click", () => fetch("/ping", { method: "POST" }));
"#;

async fn ping(State(hub): State<Hub>) -> impl IntoResponse {
    let data = format!("ping at {:?}", std::time::SystemTime::now());
    match hub.publish(Update::new("urn:example:pings", data)).await {
        Ok(published) => published.id.into_response(),
        Err(e) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::open(HubConfig::default(), Arc::new(MemoryStore::new())).await?;
    let secret = std::env::var("HERALD_JWT_KEY").unwrap_or_else(|_| "change-me-please".into());
    let herald = router(
        hub.clone(),
        HttpConfig {
            publisher_key: Some(Verifier::hs256(secret.as_bytes())),
            subscriber_key: Some(Verifier::hs256(secret.as_bytes())),
            ..HttpConfig::default()
        },
    );
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/app.js",
            get(|| async { ([("content-type", "text/javascript")], SCRIPT) }),
        )
        .route("/ping", post(ping))
        .with_state(hub)
        // Herald's routes: /.well-known/mercure (the app's own `/` wins over Herald's page).
        .fallback_service(herald);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("open http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
