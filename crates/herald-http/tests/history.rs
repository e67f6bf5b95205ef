//! The JSON history endpoint (`GET /.well-known/mercure/history`, the polling fallback) against a
//! real hub served on 127.0.0.1: paging with cursors, the subscriber's auth rules, errors, and
//! the Mercure endpoint still working beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_http::server::{Server, ServerConfig};
use herald_http::{router, HttpConfig, HISTORY_PATH, MERCURE_PATH};
use herald_hub::auth::{mint_hs256, TokenSpec, Verifier};
use herald_hub::log::memory::MemoryStore;
use herald_hub::{Hub, HubConfig, Update};
use herald_sse::{EventId, EventType};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::oneshot;

const KEY: &[u8] = b"history-test-key";
const STEP: Duration = Duration::from_secs(5);

struct TestHub {
    hub: Hub,
    base: String,
    stop: Option<oneshot::Sender<()>>,
}

impl TestHub {
    async fn start(config: HttpConfig) -> TestHub {
        let hub = Hub::open(HubConfig::default(), Arc::new(MemoryStore::new()))
            .await
            .unwrap();
        let server = Server::bind(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        })
        .await
        .unwrap();
        let base = format!("http://{}", server.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(hub.clone(), config);
        tokio::spawn(server.serve(app, async {
            let _ = stopped.await;
        }));
        TestHub {
            hub,
            base,
            stop: Some(stop),
        }
    }

    async fn default() -> TestHub {
        TestHub::start(HttpConfig {
            publisher_key: Some(Verifier::hs256(KEY)),
            subscriber_key: Some(Verifier::hs256(KEY)),
            ..HttpConfig::default()
        })
        .await
    }

    async fn publish(&self, topic: &str, data: &str, id: &str) {
        let update = Update::new(topic, data).with_id(EventId::new(id).unwrap());
        self.hub.publish(update).await.unwrap();
    }

    async fn get(&self, path_and_query: &str, headers: &[(&str, &str)]) -> Answer {
        call(
            Method::GET,
            &format!("{}{path_and_query}", self.base),
            headers,
            "",
        )
        .await
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.headers["content-type"], "application/json");
        serde_json::from_str(&self.body).unwrap()
    }

    /// The ids of the page's updates, and its `next`.
    fn ids(&self) -> (Vec<String>, String) {
        let page = self.json();
        let ids = page["updates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect();
        (ids, page["next"].as_str().unwrap().to_owned())
    }
}

async fn call(method: Method, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = tokio::time::timeout(STEP, client.request(request))
        .await
        .expect("request timed out")
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = tokio::time::timeout(STEP, response.into_body().collect())
        .await
        .expect("body timed out")
        .unwrap()
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn token(spec: TokenSpec) -> String {
    mint_hs256(KEY, &spec).unwrap()
}

fn subscriber(selectors: &[&str]) -> String {
    token(TokenSpec {
        publish: None,
        subscribe: Some(selectors.iter().map(|s| (*s).to_owned()).collect()),
        ttl_secs: None,
    })
}

#[tokio::test]
async fn pages_follow_the_cursor_from_now() {
    let t = TestHub::default().await;
    t.publish("urn:t:a", "before", "0").await;

    // Without a cursor: nothing yet, and the cursor is "now".
    let answer = t.get(&format!("{HISTORY_PATH}?topic=urn:t:a"), &[]).await;
    assert_eq!(answer.ids(), (vec![], "0".to_owned()));
    assert_eq!(answer.headers.get("last-event-id"), None);
    assert_eq!(
        answer.headers["cache-control"],
        "private, no-cache, no-store, must-revalidate, max-age=0"
    );

    for n in 1..=5 {
        t.publish("urn:t:a", &format!("d{n}"), &n.to_string()).await;
    }
    let page = |after: &str| format!("{HISTORY_PATH}?topic=urn:t:a&after={after}&limit=2");
    let first = t.get(&page("0"), &[]).await;
    assert_eq!(first.headers["last-event-id"], "0");
    assert_eq!(first.ids(), (vec!["1".into(), "2".into()], "2".into()));
    assert_eq!(
        t.get(&page("2"), &[]).await.ids(),
        (vec!["3".into(), "4".into()], "4".into())
    );
    assert_eq!(
        t.get(&page("4"), &[]).await.ids(),
        (vec!["5".into()], "5".into())
    );
    // Caught up: an empty page, same cursor.
    assert_eq!(t.get(&page("5"), &[]).await.ids(), (vec![], "5".into()));
}

#[tokio::test]
async fn updates_carry_type_topics_and_data() {
    let t = TestHub::default().await;
    let named = Update::new("urn:t:b", "line 1\n\nline 3 \"quoted\" <b>")
        .with_topic("urn:t:alt")
        .with_type(EventType::new("greeting").unwrap())
        .with_id(EventId::new("n1").unwrap());
    t.hub.publish(named).await.unwrap();
    t.publish("urn:t:b", "plain", "p1").await;
    t.publish("urn:t:other", "not selected", "o1").await;

    let answer = t
        .get(
            &format!("{HISTORY_PATH}?topic=urn:t:{{x}}&topic=urn:t:alt&after=earliest"),
            &[],
        )
        .await;
    assert_eq!(answer.headers["last-event-id"], "earliest");
    let page = answer.json();
    assert_eq!(
        page,
        serde_json::json!({
            "updates": [
                {"id": "n1", "type": "greeting", "topics": ["urn:t:b", "urn:t:alt"],
                 "data": "line 1\n\nline 3 \"quoted\" <b>"},
                {"id": "p1", "type": "message", "topics": ["urn:t:b"], "data": "plain"},
                {"id": "o1", "type": "message", "topics": ["urn:t:other"], "data": "not selected"},
            ],
            "next": "o1",
        })
    );

    let only_b = t
        .get(&format!("{HISTORY_PATH}?topic=urn:t:b&after=earliest"), &[])
        .await;
    assert_eq!(only_b.ids(), (vec!["n1".into(), "p1".into()], "o1".into()));
}

#[tokio::test]
async fn private_updates_follow_the_subscribers_rules() {
    let t = TestHub::default().await;
    t.publish("urn:t:p", "public", "pub").await;
    t.hub
        .publish(
            Update::new("urn:t:p", "secret")
                .private()
                .with_id(EventId::new("priv").unwrap()),
        )
        .await
        .unwrap();
    let path = format!("{HISTORY_PATH}?topic=urn:t:p&after=earliest");

    // Anonymous: public only; the cursor still passes the private update.
    let anonymous = t.get(&path, &[]).await;
    assert_eq!(anonymous.ids(), (vec!["pub".into()], "priv".into()));

    // A token allowed the topic: both, by header, query parameter or cookie.
    let allowed = subscriber(&["urn:t:{x}"]);
    let by_header = t
        .get(&path, &[("authorization", &format!("Bearer {allowed}"))])
        .await;
    assert_eq!(
        by_header.ids(),
        (vec!["pub".into(), "priv".into()], "priv".into())
    );
    let by_query = t.get(&format!("{path}&authorization={allowed}"), &[]).await;
    assert_eq!(by_query.ids().0, vec!["pub", "priv"]);
    let by_cookie = t
        .get(
            &path,
            &[("cookie", &format!("mercureAuthorization={allowed}"))],
        )
        .await;
    assert_eq!(by_cookie.ids().0, vec!["pub", "priv"]);

    // A token for other topics: public only.
    let other = subscriber(&["urn:t:elsewhere"]);
    let answer = t
        .get(&path, &[("authorization", &format!("Bearer {other}"))])
        .await;
    assert_eq!(answer.ids().0, vec!["pub"]);

    // A bad token is refused, as on the subscribe endpoint.
    let answer = t.get(&path, &[("authorization", "Bearer not.a.jwt")]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(answer.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
}

#[tokio::test]
async fn anonymous_pollers_are_refused_when_anonymous_is_off() {
    let t = TestHub::start(HttpConfig {
        subscriber_key: Some(Verifier::hs256(KEY)),
        anonymous: false,
        ..HttpConfig::default()
    })
    .await;
    let path = format!("{HISTORY_PATH}?topic=urn:t:a");
    assert_eq!(t.get(&path, &[]).await.status, StatusCode::UNAUTHORIZED);
    let allowed = subscriber(&["*"]);
    let answer = t
        .get(&path, &[("authorization", &format!("Bearer {allowed}"))])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

#[tokio::test]
async fn bad_requests_get_short_text_errors() {
    let t = TestHub::default().await;
    let answer = t.get(HISTORY_PATH, &[]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body, "Missing \"topic\" parameter.\n");
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    for query in ["limit=0", "limit=-3", "limit=many", "after=x&limit=1.5"] {
        let answer = t
            .get(&format!("{HISTORY_PATH}?topic=urn:t:a&{query}"), &[])
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{query}: {answer:?}"
        );
        assert!(answer.body.contains("limit"), "{answer:?}");
    }
    let answer = t.get(&format!("{HISTORY_PATH}?topic=%FF"), &[]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let post = call(
        Method::POST,
        &format!("{}{HISTORY_PATH}?topic=a", t.base),
        &[],
        "",
    )
    .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn limits_default_to_100_and_stop_at_1000() {
    let t = TestHub::default().await;
    for n in 0..1005 {
        t.publish("urn:t:many", "x", &format!("m{n}")).await;
    }
    let path = format!("{HISTORY_PATH}?topic=urn:t:many&after=earliest");
    let (ids, next) = t.get(&path, &[]).await.ids();
    assert_eq!(ids.len(), 100);
    assert_eq!(next, "m99");
    let (ids, next) = t.get(&format!("{path}&limit=5000"), &[]).await.ids();
    assert_eq!(ids.len(), 1000);
    assert_eq!(next, "m999");
}

#[tokio::test]
async fn an_unknown_cursor_restarts_from_the_earliest_and_says_so() {
    let t = TestHub::default().await;
    t.publish("urn:t:a", "1", "a1").await;
    let answer = t
        .get(&format!("{HISTORY_PATH}?topic=urn:t:a&after=gone"), &[])
        .await;
    assert_eq!(answer.headers["last-event-id"], "earliest");
    assert_eq!(answer.ids(), (vec!["a1".into()], "a1".into()));
}

#[tokio::test]
async fn the_mercure_endpoint_still_answers_beside_it() {
    let t = TestHub::default().await;
    let publisher = token(TokenSpec {
        publish: Some(vec!["*".into()]),
        subscribe: None,
        ttl_secs: None,
    });
    let published = call(
        Method::POST,
        &format!("{}{MERCURE_PATH}", t.base),
        &[
            ("authorization", &format!("Bearer {publisher}")),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "topic=urn:t:m&data=hi&id=m1",
    )
    .await;
    assert_eq!(published.status, StatusCode::OK, "{published:?}");
    assert_eq!(published.body, "m1");
    let missing = t.get(MERCURE_PATH, &[]).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let answer = t
        .get(&format!("{HISTORY_PATH}?topic=urn:t:m&after=earliest"), &[])
        .await;
    assert_eq!(answer.ids(), (vec!["m1".into()], "m1".into()));
    // The UI is served too, with its own policy.
    let page = t.get("/", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.headers["content-security-policy"],
        herald_http::PAGE_CSP
    );
}
