//! `herald serve` over real sockets on 127.0.0.1: the real binary, driven by the Rust
//! EventSource client, by hyper and by raw TCP (and by curl when the machine has it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    event_source, messages_until, next_message, opened, rss_kib, token, within, Http, HubProcess,
    STEP,
};
use futures_util::StreamExt;
use herald_client::{ClientEvent, EventSource, ReconnectConfig, Version};
use http::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinSet;

/// Upper bound of one test.
const TEST: Duration = Duration::from_secs(50);

const B1: &str = "https://example.com/books/1";
const B2: &str = "https://example.com/books/2";
const B7: &str = "https://example.com/books/7";
const TEMPLATE: &str = "https://example.com/books/{id}";
const A1: &str = "https://example.com/authors/1";

/// Form fields or query parameters.
type Fields<'a> = Vec<(&'a str, &'a str)>;

/// A subscriber of the private-updates test: name, selectors, bearer token, `authorization`
/// query parameter.
type PrivateSubscriber<'a> = (&'a str, &'a [&'a str], Option<&'a str>, Option<&'a str>);

/// A resume case: name, request headers, query, the ids expected, the `Last-Event-ID` response
/// header expected.
type ResumeCase<'a> = (&'a str, Pairs<'a>, Pairs<'a>, Vec<String>, Option<&'a str>);

/// Borrowed name-value pairs.
type Pairs<'a> = &'a [(&'a str, &'a str)];

fn publisher_token() -> String {
    token(Some(&["*"]), None)
}

/// A publish form: `id`, `data`, one `topic` field per topic, and extra fields.
fn fields<'a>(
    id: &'a str,
    topics: &[&'a str],
    data: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Fields<'a> {
    let mut f = vec![("id", id), ("data", data)];
    f.extend(topics.iter().map(|t| ("topic", *t)));
    f.extend_from_slice(extra);
    f
}

fn ids(messages: &[herald_client::MessageEvent]) -> Vec<&str> {
    messages.iter().map(|m| m.last_event_id.as_str()).collect()
}

/// Exact, URI-template and `*` selectors, alternate topics, one update reaching a subscriber
/// through two selectors: each subscriber gets what matches, once, in publish order, with its
/// data (multi-line, an empty line, CRLF and CR) and type intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_template_and_star_selectors_get_exactly_what_matches_in_order() {
    within(TEST, "the test", async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProcess::start(dir.path(), &[]).await;
        let http = Http::new();
        let publisher = publisher_token();
        let chapter = "https://example.com/books/1/chapters/2";
        let review = "https://example.com/reviews/9";
        let elsewhere = "https://example.org/elsewhere";

        let subscribers: [(&str, &[&str]); 5] = [
            ("exact", &[B1]),
            ("template", &[TEMPLATE]),
            ("star", &["*"]),
            ("authors", &[A1]),
            ("two", &[B2, A1]),
        ];
        let mut sources = Vec::new();
        for (name, topics) in subscribers {
            let mut es = event_source(&hub.subscribe_url(topics, &[]), None, None);
            assert_eq!(opened(&mut es).await, Version::HTTP_11);
            sources.push((name, es));
        }

        let multi_line = "first line\n\nthird line\r\nfourth\rfifth";
        let updates: [(&str, &[&str], &str, Option<&str>); 7] = [
            ("u1", &[B1], multi_line, None),
            ("u2", &[B2], "two", Some("custom")),
            ("u3", &[A1], "author", None),
            ("u4", &[review, B1], "alternate topic", None),
            ("u5", &[chapter], "template does not match a slash", None),
            ("u6", &[elsewhere], "only star", None),
            ("end", &[B1, A1, B2], "the end", None),
        ];
        for (id, topics, data, ty) in updates {
            let extra: Vec<(&str, &str)> = ty.map(|t| ("type", t)).into_iter().collect();
            http.publish_ok(&hub.endpoint, &publisher, &fields(id, topics, data, &extra))
                .await;
        }

        let expected: HashMap<&str, Vec<&str>> = HashMap::from([
            ("exact", vec!["u1", "u4", "end"]),
            ("template", vec!["u1", "u2", "u4", "end"]),
            ("star", vec!["u1", "u2", "u3", "u4", "u5", "u6", "end"]),
            ("authors", vec!["u3", "end"]),
            ("two", vec!["u2", "u3", "end"]),
        ]);
        for (name, es) in &mut sources {
            let got = messages_until(es, "end").await;
            assert_eq!(ids(&got), expected[name], "subscriber {name}");
            for m in &got {
                let (data, ty) = match m.last_event_id.as_str() {
                    "u1" => ("first line\n\nthird line\nfourth\nfifth", "message"),
                    "u2" => ("two", "custom"),
                    _ => {
                        let u = updates.iter().find(|u| u.0 == m.last_event_id).unwrap();
                        (u.2, "message")
                    }
                };
                assert_eq!(m.data, data, "{name}: data of {}", m.last_event_id);
                assert_eq!(m.event_type, ty, "{name}: type of {}", m.last_event_id);
            }
        }
    })
    .await;
}

/// Private updates never reach anonymous subscribers nor tokens whose `mercure.subscribe` does
/// not match one of the update's topics; they reach matching ones (token in the header or in the
/// `authorization` query parameter), live and in replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_updates_reach_only_subscribers_whose_claims_match() {
    within(TEST, "the test", async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProcess::start(dir.path(), &[]).await;
        let http = Http::new();
        let publisher = publisher_token();
        let secret = "https://example.com/secret/1";

        let books_claim = token(None, Some(&[TEMPLATE]));
        let authors_claim = token(None, Some(&["https://example.com/authors/{id}"]));
        let b1_claim = token(None, Some(&[B1]));
        let all_claim = token(None, Some(&["*"]));
        // (name, selectors, bearer header, authorization query parameter)
        let subscribers: [PrivateSubscriber<'_>; 6] = [
            ("anonymous template", &[TEMPLATE], None, None),
            ("anonymous star", &["*"], None, None),
            ("authors claim", &[TEMPLATE], Some(&authors_claim), None),
            ("books claim", &[TEMPLATE], Some(&books_claim), None),
            ("b1 claim in query", &["*"], None, Some(&b1_claim)),
            ("star claim", &["*"], Some(&all_claim), None),
        ];
        let mut sources = Vec::new();
        for (name, topics, bearer, query) in subscribers {
            let extra: Vec<(&str, &str)> =
                query.map(|t| ("authorization", t)).into_iter().collect();
            let mut es = event_source(&hub.subscribe_url(topics, &extra), bearer, None);
            opened(&mut es).await;
            sources.push((name, es));
        }

        let private = [("private", "on")];
        http.publish_ok(
            &hub.endpoint,
            &publisher,
            &fields("p1", &[B1], "secret 1", &private),
        )
        .await;
        http.publish_ok(
            &hub.endpoint,
            &publisher,
            &fields("pub1", &[B2], "public", &[]),
        )
        .await;
        // Private, and only its alternate topic is one the books claim allows.
        http.publish_ok(
            &hub.endpoint,
            &publisher,
            &fields("p2", &[secret, B7], "secret 2", &private),
        )
        .await;
        // Private; the authors claim allows it but that subscriber did not select it.
        http.publish_ok(
            &hub.endpoint,
            &publisher,
            &fields("p3", &[A1], "secret 3", &private),
        )
        .await;
        http.publish_ok(
            &hub.endpoint,
            &publisher,
            &fields("end", &[B1], "public end", &[]),
        )
        .await;

        let expected: HashMap<&str, Vec<&str>> = HashMap::from([
            ("anonymous template", vec!["pub1", "end"]),
            ("anonymous star", vec!["pub1", "end"]),
            ("authors claim", vec!["pub1", "end"]),
            ("books claim", vec!["p1", "pub1", "p2", "end"]),
            ("b1 claim in query", vec!["p1", "pub1", "end"]),
            ("star claim", vec!["p1", "pub1", "p2", "p3", "end"]),
        ]);
        for (name, es) in &mut sources {
            let got = messages_until(es, "end").await;
            assert_eq!(ids(&got), expected[name], "live: subscriber {name}");
        }

        // The same rules hold for history.
        let mut anonymous = event_source(&hub.subscribe_url(&["*"], &[]), None, Some("earliest"));
        opened(&mut anonymous).await;
        let got = messages_until(&mut anonymous, "end").await;
        assert_eq!(ids(&got), ["pub1", "end"], "replay: anonymous");
        let mut books = event_source(
            &hub.subscribe_url(&[TEMPLATE], &[]),
            Some(&books_claim),
            Some("earliest"),
        );
        opened(&mut books).await;
        let got = messages_until(&mut books, "end").await;
        assert_eq!(
            ids(&got),
            ["p1", "pub1", "p2", "end"],
            "replay: books claim"
        );
    })
    .await;
}

/// 100 updates from 10 concurrent publishers reach 20 subscribers, all 100, once, in one order
/// that keeps each publisher's own order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_one_identical_order_for_every_subscriber() {
    within(TEST, "the test", async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProcess::start(dir.path(), &[]).await;
        let publisher = publisher_token();

        let mut sources = Vec::new();
        for i in 0..20 {
            let topics: &[&str] = if i % 2 == 0 { &["*"] } else { &[TEMPLATE] };
            let mut es = event_source(&hub.subscribe_url(topics, &[]), None, None);
            opened(&mut es).await;
            sources.push(es);
        }

        let mut publishers = JoinSet::new();
        for p in 0..10 {
            let http = Http::new();
            let endpoint = hub.endpoint.clone();
            let publisher = publisher.clone();
            publishers.spawn(async move {
                let topic = format!("https://example.com/books/{p}");
                for i in 0..10 {
                    let id = format!("c-{p}-{i}");
                    http.publish_ok(&endpoint, &publisher, &fields(&id, &[&topic], &id, &[]))
                        .await;
                }
            });
        }
        while let Some(done) = publishers.join_next().await {
            done.unwrap();
        }
        let http = Http::new();
        http.publish_ok(&hub.endpoint, &publisher, &fields("end", &[B1], "", &[]))
            .await;

        let mut first: Option<Vec<String>> = None;
        for (n, es) in sources.iter_mut().enumerate() {
            let got = messages_until(es, "end").await;
            let order: Vec<String> = got.iter().map(|m| m.last_event_id.clone()).collect();
            assert_eq!(order.len(), 101, "subscriber {n}: {order:?}");
            let unique: HashSet<&String> = order.iter().collect();
            assert_eq!(unique.len(), 101, "subscriber {n} got duplicates");
            for p in 0..10 {
                let prefix = format!("c-{p}-");
                let mine: Vec<&String> =
                    order.iter().filter(|id| id.starts_with(&prefix)).collect();
                let want: Vec<String> = (0..10).map(|i| format!("c-{p}-{i}")).collect();
                assert_eq!(
                    mine,
                    want.iter().collect::<Vec<_>>(),
                    "publisher {p}'s order"
                );
            }
            match &first {
                None => first = Some(order),
                Some(f) => assert_eq!(&order, f, "subscriber {n} saw another order"),
            }
        }
    })
    .await;
}

/// Subscribes to `B1` plus a sentinel topic of its own, then publishes the sentinel and returns
/// the `Last-Event-ID` response header and the ids before the sentinel.
async fn resume(
    hub: &HubProcess,
    http: &Http,
    publisher: &str,
    case: &str,
    headers: &[(&str, &str)],
    query: &[(&str, &str)],
) -> (Option<String>, Vec<String>) {
    let sentinel_topic = format!("https://example.com/sentinel/{case}");
    let sentinel_id = format!("sentinel-{case}");
    let url = hub.subscribe_url(&[B1, &sentinel_topic], query);
    let mut stream = http.subscribe_raw(&url, headers).await;
    assert_eq!(stream.status, StatusCode::OK, "{case}");
    assert!(
        stream.first_bytes().await.starts_with(b":"),
        "{case}: the stream opens with a comment"
    );
    http.publish_ok(
        &hub.endpoint,
        publisher,
        &fields(&sentinel_id, &[&sentinel_topic], "", &[]),
    )
    .await;
    let mut got = stream.ids_until(&sentinel_id).await;
    got.pop();
    (stream.header("last-event-id"), got)
}

/// Resuming: from every id (header and query) exactly the rest; the header wins over the query;
/// `earliest` and unknown ids give everything with `Last-Event-ID: earliest`; a known id is
/// echoed in the response header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_last_event_id_header_query_and_earliest() {
    within(TEST, "the test", async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProcess::start(dir.path(), &[]).await;
        let http = Http::new();
        let publisher = publisher_token();
        let all: Vec<String> = (0..10).map(|i| format!("r-{i}")).collect();
        for (i, id) in all.iter().enumerate() {
            http.publish_ok(&hub.endpoint, &publisher, &fields(id, &[B1], id, &[]))
                .await;
            if i == 4 {
                // Ids are one hub-wide cursor: an update the subscriber does not select is a
                // valid place to resume from too.
                http.publish_ok(&hub.endpoint, &publisher, &fields("x-0", &[A1], "", &[]))
                    .await;
            }
        }
        let after = |n: usize| all[n + 1..].to_vec();

        // From every id, with the header.
        for (n, id) in all.iter().enumerate() {
            let case = format!("header-{n}");
            let (header, got) = resume(
                &hub,
                &http,
                &publisher,
                &case,
                &[("last-event-id", id)],
                &[],
            )
            .await;
            assert_eq!(got, after(n), "{case}");
            assert_eq!(header.as_deref(), Some(id.as_str()), "{case}");
        }
        // From every id, with the query parameter.
        for (n, id) in all.iter().enumerate() {
            let case = format!("query-{n}");
            let (header, got) =
                resume(&hub, &http, &publisher, &case, &[], &[("lastEventID", id)]).await;
            assert_eq!(got, after(n), "{case}");
            assert_eq!(header.as_deref(), Some(id.as_str()), "{case}");
        }
        let cases: [ResumeCase<'_>; 7] = [
            (
                "header-wins",
                &[("last-event-id", "r-7")],
                &[("lastEventID", "r-2")],
                after(7),
                Some("r-7"),
            ),
            (
                "unselected-id",
                &[("last-event-id", "x-0")],
                &[],
                after(4),
                Some("x-0"),
            ),
            (
                "earliest-header",
                &[("last-event-id", "earliest")],
                &[],
                all.clone(),
                Some("earliest"),
            ),
            (
                "earliest-query",
                &[],
                &[("lastEventID", "earliest")],
                all.clone(),
                Some("earliest"),
            ),
            (
                "unknown-header",
                &[("last-event-id", "no-such-id")],
                &[],
                all.clone(),
                Some("earliest"),
            ),
            (
                "unknown-query",
                &[],
                &[("lastEventID", "no-such-id")],
                all.clone(),
                Some("earliest"),
            ),
            ("none", &[], &[], Vec::new(), None),
        ];
        for (case, headers, query, want, want_header) in cases {
            let (header, got) = resume(&hub, &http, &publisher, case, headers, query).await;
            assert_eq!(got, want, "{case}");
            assert_eq!(
                header.as_deref(),
                want_header,
                "{case}: Last-Event-ID response header"
            );
        }

        // The Rust EventSource resumes the same way.
        let mut es = event_source(&hub.subscribe_url(&[B1], &[]), None, Some("r-4"));
        opened(&mut es).await;
        let got = messages_until(&mut es, "r-9").await;
        assert_eq!(ids(&got), after(4));
    })
    .await;
}

/// Resumes that race with a stream of publishes: exactly the rest, no gap, no duplicate, and a
/// `Last-Event-ID` response header that says where the replay started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_while_publishing_gives_exactly_the_rest() {
    const N: usize = 300;
    within(TEST, "the test", async {
        let dir = tempfile::tempdir().unwrap();
        let hub = Arc::new(HubProcess::start(dir.path(), &[]).await);
        let publisher = publisher_token();
        let all: Arc<Vec<String>> = Arc::new((0..N).map(|i| format!("q-{i}")).collect());

        let (answered, mut progress) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let stream = {
            let (hub, all) = (hub.clone(), all.clone());
            tokio::spawn(async move {
                let http = Http::new();
                for (i, id) in all.iter().enumerate() {
                    http.publish_ok(&hub.endpoint, &publisher, &fields(id, &[B1], id, &[]))
                        .await;
                    if i % 15 == 0 {
                        let _ = answered.send(i);
                    }
                }
            })
        };

        // Resume from the id just answered, and from the next one (in flight or not yet sent:
        // the hub either knows it or answers from `earliest`).
        let mut resumers = JoinSet::new();
        while let Some(i) = progress.recv().await {
            for last in [i, i + 1] {
                let (hub, all) = (hub.clone(), all.clone());
                resumers.spawn(async move {
                    let http = Http::new();
                    let id = all[last].clone();
                    let mut s = http
                        .subscribe_raw(&hub.subscribe_url(&[B1], &[]), &[("last-event-id", &id)])
                        .await;
                    assert_eq!(s.status, StatusCode::OK);
                    let header = s.header("last-event-id").expect("a Last-Event-ID header");
                    let got = s.ids_until(&all[N - 1]).await;
                    let from = if header == "earliest" {
                        assert_ne!(last, i, "{id} was answered, so it is known");
                        0
                    } else {
                        assert_eq!(header, id);
                        last + 1
                    };
                    assert_eq!(got, all[from..], "resumed from {id}, header {header}");
                });
            }
        }
        stream.await.unwrap();
        let mut count = 0;
        while let Some(done) = resumers.join_next().await {
            done.unwrap();
            count += 1;
        }
        assert_eq!(count, 2 * N.div_ceil(15));
    })
    .await;
}

/// What one durability publisher did: `(id, sent, answered 200 at)`, in its order.
type Attempts = Vec<(String, Instant, Option<Instant>)>;

/// Publishers stream updates (with `padding` bytes of data beyond their id) into a redb hub;
/// once `stop_after` are answered, the hub is killed (SIGKILL) or terminated (SIGTERM) and
/// restarted on the same data directory. Every update answered 200 must be in the history exactly
/// once, in an order consistent with the answers.
async fn restart_mid_stream(graceful: bool, padding: usize, stop_after: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = HubProcess::start(dir.path(), &["--store", "redb"]).await;
    let topic = "https://example.com/durable";
    let publisher = publisher_token();

    // Under SIGTERM, open streams are ended so that clients reconnect elsewhere.
    let mut watcher = EventSource::builder(&hub.subscribe_url(&[topic], &[]))
        .reconnect(false)
        .build()
        .unwrap();
    opened(&mut watcher).await;

    let (progress, mut answers) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = JoinSet::new();
    for p in 0..4 {
        let http = Http::new();
        let endpoint = hub.endpoint.clone();
        let publisher = publisher.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let mut attempts: Attempts = Vec::new();
            for i in 0..1_000_000 {
                let id = format!("d-{p}-{i}");
                let data = format!("{id}{}", ".".repeat(padding));
                let sent = Instant::now();
                let answer = http
                    .try_publish(&endpoint, &publisher, &fields(&id, &[topic], &data, &[]))
                    .await;
                match answer {
                    Ok(a) if a.status == StatusCode::OK => {
                        assert_eq!(a.body, id);
                        attempts.push((id, sent, Some(Instant::now())));
                        let _ = progress.send(());
                    }
                    _ => {
                        attempts.push((id, sent, None));
                        break;
                    }
                }
            }
            (p, attempts)
        });
    }
    drop(progress);
    for _ in 0..stop_after {
        within(STEP, "publish answers before the kill", answers.recv())
            .await
            .expect("publishers are running");
    }
    let status = if graceful {
        hub.terminate().await
    } else {
        hub.kill9().await
    };
    if graceful {
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM exits 0; stderr:\n{}",
            hub.stderr_text()
        );
        assert!(
            hub.stderr_text().contains("herald: stopped"),
            "{}",
            hub.stderr_text()
        );
        // The open stream was ended cleanly (no network error), after whatever it had.
        loop {
            match within(STEP, "the stream ends at shutdown", watcher.next()).await {
                None => break,
                Some(Ok(ClientEvent::Message(_) | ClientEvent::Retry(_))) => {}
                Some(other) => panic!("expected a clean end of the stream, got {other:?}"),
            }
        }
    } else {
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
    let mut attempts: HashMap<usize, Attempts> = HashMap::new();
    while let Some(done) = within(STEP, "publishers stop", tasks.join_next()).await {
        let (p, a) = done.unwrap();
        attempts.insert(p, a);
    }
    let answered: usize = attempts
        .values()
        .map(|a| a.iter().filter(|x| x.2.is_some()).count())
        .sum();

    let hub = HubProcess::start(dir.path(), &["--store", "redb"]).await;
    let mut history = event_source(&hub.subscribe_url(&[topic], &[]), None, Some("earliest"));
    opened(&mut history).await;
    let http = Http::new();
    http.publish_ok(
        &hub.endpoint,
        &publisher,
        &fields("after-restart", &[topic], "", &[]),
    )
    .await;
    let got = messages_until(&mut history, "after-restart").await;
    let mut order: Vec<&str> = ids(&got);
    order.pop();
    let position: HashMap<&str, usize> = order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    assert_eq!(position.len(), order.len(), "no update is in history twice");

    // Per publisher: every answered update, in its order, then at most the one in flight.
    for (p, a) in &attempts {
        let prefix = format!("d-{p}-");
        let mine: Vec<&str> = order
            .iter()
            .copied()
            .filter(|id| id.starts_with(&prefix))
            .collect();
        let answered_here: Vec<&str> = a
            .iter()
            .filter(|x| x.2.is_some())
            .map(|x| x.0.as_str())
            .collect();
        assert!(
            mine.len() == answered_here.len()
                || (mine.len() == answered_here.len() + 1
                    && a.last()
                        .is_some_and(|x| x.2.is_none() && x.0 == mine[mine.len() - 1])),
            "publisher {p}: history {} updates, answered {}",
            mine.len(),
            answered_here.len()
        );
        assert_eq!(
            &mine[..answered_here.len()],
            &answered_here[..],
            "publisher {p}"
        );
    }
    assert!(
        order.iter().all(|id| id.starts_with("d-")),
        "nothing else is in history"
    );
    // Across publishers: an update answered before another was sent comes first.
    let timed: Vec<(&str, Instant, Option<Instant>)> = attempts
        .values()
        .flatten()
        .filter(|x| position.contains_key(x.0.as_str()))
        .map(|x| (x.0.as_str(), x.1, x.2))
        .collect();
    for (a, _, answered_at) in &timed {
        let Some(answered_at) = answered_at else {
            continue;
        };
        for (b, sent, _) in &timed {
            if sent > answered_at {
                assert!(
                    position[a] < position[b],
                    "{a} was answered before {b} was sent"
                );
            }
        }
    }
    println!(
        "{}: {answered} updates answered 200 before the stop, {} in history after the restart",
        if graceful { "SIGTERM" } else { "SIGKILL" },
        order.len()
    );
}

/// `kill -9` in the middle of a publish stream loses no update that was answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_answered_update() {
    within(TEST, "the test", restart_mid_stream(false, 0, 300)).await;
}

/// `kill -9` while the write-ahead log moves from one file to the other and the full one is
/// checkpointed (8 KiB updates: ~6 MiB before the kill, a switch every 2 MiB): still no update
/// answered 200 is lost, none is there twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_the_log_switches_files_loses_no_answered_update() {
    within(TEST, "the test", restart_mid_stream(false, 8 * 1024, 700)).await;
}

/// SIGTERM in the middle of a publish stream: open streams end cleanly, exit code 0, no update
/// answered 200 is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_exits_0_and_loses_no_answered_update() {
    within(TEST, "the test", restart_mid_stream(true, 0, 300)).await;
}

fn curl_available() -> bool {
    std::process::Command::new("which")
        .arg("curl")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs curl on an event stream and returns its output lines (`-i`: the head first).
fn curl_stream(
    args: &[&str],
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = tokio::process::Command::new("curl")
        .args(["-sS", "-N", "-i"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Reads curl's lines until one satisfies `pred`; returns every line read.
async fn curl_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pred: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = within(STEP, "a line from curl", lines.next_line())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("curl's output ended; so far: {seen:?}"));
        let line = line.trim_end_matches('\r').to_owned();
        let done = pred(&line);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// Streams with curl, publishes `id` once the stream is open, and checks curl saw it over `version`.
async fn curl_receives(
    hub: &HubProcess,
    http: &Http<impl hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static>,
    args: &[&str],
    id: &str,
) {
    let (mut child, mut lines) = curl_stream(args);
    let head = curl_until(&mut lines, |l| l == ":").await;
    assert_eq!(head[0].trim_end(), "HTTP/2 200", "curl: {head:?}");
    assert!(
        head.iter()
            .any(|l| l.eq_ignore_ascii_case("content-type: text/event-stream")),
        "{head:?}"
    );
    http.publish_ok(
        &hub.endpoint,
        &publisher_token(),
        &fields(id, &[B1], "via curl", &[]),
    )
    .await;
    let body = curl_until(&mut lines, |l| l == "data: via curl").await;
    assert!(body.contains(&format!("id: {id}")), "{body:?}");
    child.start_kill().unwrap();
    let _ = within(STEP, "curl exits", child.wait()).await;
}

/// Cleartext HTTP/2 with prior knowledge: the Rust client, an h2c publisher and curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_streams() {
    within(TEST, "the test", async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProcess::start(dir.path(), &[]).await;
        let url = hub.subscribe_url(&[B1], &[]);
        let mut es = EventSource::builder(&url)
            .http2_prior_knowledge(true)
            .build()
            .unwrap();
        assert_eq!(opened(&mut es).await, Version::HTTP_2);

        // Publishing over h2c works too.
        let h2 = Http::h2c();
        let answer = h2
            .publish(
                &hub.endpoint,
                Some(&publisher_token()),
                &fields("h2-1", &[B1], "over h2c", &[]),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.version, Version::HTTP_2);
        let m = next_message(&mut es).await;
        assert_eq!(
            (m.last_event_id.as_str(), m.data.as_str()),
            ("h2-1", "over h2c")
        );

        if curl_available() {
            curl_receives(&hub, &h2, &["--http2-prior-knowledge", &url], "h2-curl").await;
            assert_eq!(next_message(&mut es).await.last_event_id, "h2-curl");
        } else {
            println!("note: curl is not installed; skipped the curl --http2-prior-knowledge check");
        }
    })
    .await;
}

/// TLS with a certificate generated here: ALPN picks HTTP/2 for the Rust client, a hyper-rustls
/// publisher and curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_generated_certificate_serves_http2() {
    within(TEST, "the test", async {
        let dir = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
        let hub = HubProcess::start(
            &dir.path().join("data"),
            &[
                "--tls-cert",
                cert_path.to_str().unwrap(),
                "--tls-key",
                key_path.to_str().unwrap(),
            ],
        )
        .await;
        assert!(
            hub.endpoint.starts_with("https://127.0.0.1:"),
            "{}",
            hub.endpoint
        );

        let url = hub.subscribe_url(&[B1], &[]);
        let mut es = EventSource::builder(&url)
            .add_root_certificate_pem(cert.pem().as_bytes())
            .build()
            .unwrap();
        assert_eq!(opened(&mut es).await, Version::HTTP_2);

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        let https = Http::with_client(Client::builder(TokioExecutor::new()).build(connector));
        let answer = https
            .publish(
                &hub.endpoint,
                Some(&publisher_token()),
                &fields("tls-1", &[B1], "over TLS", &[]),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.version, Version::HTTP_2, "ALPN picked h2");
        let m = next_message(&mut es).await;
        assert_eq!(
            (m.last_event_id.as_str(), m.data.as_str()),
            ("tls-1", "over TLS")
        );

        if curl_available() {
            let cacert = cert_path.to_str().unwrap();
            curl_receives(
                &hub,
                &https,
                &["--http2", "--cacert", cacert, &url],
                "tls-curl",
            )
            .await;
            assert_eq!(next_message(&mut es).await.last_event_id, "tls-curl");
        } else {
            println!("note: curl is not installed; skipped the curl over TLS check");
        }
    })
    .await;
}

/// A subscriber that never reads is cut off after its bounded queue fills, with a clean end of
/// stream at a prefix of the log; publishing and a normal subscriber go on at full speed and the
/// hub's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_slows_nobody_and_memory_stays_bounded() {
    // The slow subscriber's hub queue holds 4096 frames and its socket buffers (a 4 KiB receive
    // buffer, the hub's send buffer) and hyper about 3,000 more of ~1 KB: it is cut off after
    // about 7,000, well before the end.
    const UPDATES: usize = 12_000;
    const PUBLISHERS: usize = 16;
    within(TEST, "the test", async {
        let dir = tempfile::tempdir().unwrap();
        // The fan-out path is the same for every store; the memory store keeps this test's
        // publishing fast (durability has its own tests).
        let hub = HubProcess::start(dir.path(), &["--store", "memory"]).await;
        let topic = "https://example.com/firehose";
        let url = hub.subscribe_url(&[topic], &[]);
        let rss_at_start = hub.rss_kib().unwrap_or(0);

        // The slow one: a tiny receive buffer, reads the head and the opening comment, then
        // never reads again.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut slow = socket
            .connect(hub.authority().parse().unwrap())
            .await
            .unwrap();
        let path = &url[url.find("/.well-known").unwrap()..];
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            hub.authority()
        );
        slow.write_all(request.as_bytes()).await.unwrap();
        let mut slow_bytes = Vec::new();
        while !slow_bytes.windows(4).any(|w| w == b":\n\r\n") {
            let mut buf = [0u8; 1024];
            let n = within(STEP, "the slow subscriber's head", slow.read(&mut buf))
                .await
                .unwrap();
            assert!(n > 0, "the slow subscription closed early");
            slow_bytes.extend_from_slice(&buf[..n]);
        }
        assert!(slow_bytes.starts_with(b"HTTP/1.1 200 OK\r\n"));

        // The normal one reconnects quickly if it is ever cut off, and must miss nothing.
        let mut normal = EventSource::builder(&url)
            .reconnect_config(ReconnectConfig {
                initial_retry: Duration::from_millis(10),
                ..ReconnectConfig::default()
            })
            .build()
            .unwrap();
        opened(&mut normal).await;
        let consumer = tokio::spawn(async move {
            let mut received = Vec::with_capacity(UPDATES);
            let mut reconnects = 0u32;
            while received.len() < UPDATES {
                match normal
                    .next()
                    .await
                    .expect("alive")
                    .expect("no client error")
                {
                    ClientEvent::Message(m) => received.push(m.last_event_id),
                    ClientEvent::Reconnecting { .. } => reconnects += 1,
                    _ => {}
                }
            }
            (received, reconnects, Instant::now())
        });

        let sampling = Arc::new(AtomicBool::new(true));
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (sampling, peak, pid) = (sampling.clone(), peak.clone(), hub.pid);
            tokio::spawn(async move {
                while sampling.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };

        let started = Instant::now();
        let mut publishers = JoinSet::new();
        let publisher = publisher_token();
        for p in 0..PUBLISHERS {
            let http = Http::new();
            let endpoint = hub.endpoint.clone();
            let publisher = publisher.clone();
            publishers.spawn(async move {
                for i in 0..UPDATES / PUBLISHERS {
                    let id = format!("f-{p}-{i}");
                    let data = format!("{id} {}", "x".repeat(1000));
                    http.publish_ok(&endpoint, &publisher, &fields(&id, &[topic], &data, &[]))
                        .await;
                }
            });
        }
        while let Some(done) = publishers.join_next().await {
            done.unwrap();
        }
        let publish_time = started.elapsed();
        let (received, reconnects, done_at) =
            within(STEP, "the normal subscriber gets everything", consumer)
                .await
                .unwrap();
        let receive_time = done_at - started;
        sampling.store(false, Ordering::Relaxed);
        sampler.await.unwrap();
        let peak_kib = peak.load(Ordering::Relaxed);
        let rss_at_end = hub.rss_kib().unwrap_or(0);

        let unique: HashSet<&String> = received.iter().collect();
        assert_eq!(
            unique.len(),
            UPDATES,
            "the normal subscriber got every update once"
        );
        for p in 0..PUBLISHERS {
            let prefix = format!("f-{p}-");
            let mine: Vec<&String> = received
                .iter()
                .filter(|id| id.starts_with(&prefix))
                .collect();
            assert!(
                mine.iter()
                    .enumerate()
                    .all(|(i, id)| **id == format!("f-{p}-{i}")),
                "publisher {p}'s order"
            );
        }

        // The slow subscriber was cut off: its stream ends (chunked terminator) after a prefix of
        // the log, which it can resume from.
        let drain = async {
            let mut buf = vec![0u8; 256 * 1024];
            while !slow_bytes.ends_with(b"\r\n0\r\n\r\n") {
                let n = slow.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "the slow subscription closed without ending its stream"
                );
                slow_bytes.extend_from_slice(&buf[..n]);
            }
        };
        within(STEP, "the slow subscriber's stream ends", drain).await;
        let text = String::from_utf8_lossy(&slow_bytes);
        let slow_ids: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .collect();
        assert!(slow_ids.len() < UPDATES, "the slow subscriber was cut off");
        assert_eq!(
            slow_ids,
            received[..slow_ids.len()]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            "the slow subscriber got a prefix of the log"
        );

        let rate = UPDATES as f64 / publish_time.as_secs_f64();
        println!("slow subscriber test: {UPDATES} updates of ~1 KB by {PUBLISHERS} publishers");
        println!("  published in {publish_time:?} ({rate:.0}/s)");
        println!("  the normal subscriber had all of them after {receive_time:?}");
        println!("  with {reconnects} reconnection(s)");
        println!(
            "  the slow one got {} before it was cut off",
            slow_ids.len()
        );
        println!("  hub RSS: start {rss_at_start} KiB, peak {peak_kib} KiB, end {rss_at_end} KiB");

        // A resume from before the hub's memory tail (10,000 updates) reads the store, then the
        // tail: exactly the rest.
        let from = 100;
        let http = Http::new();
        let mut resumed = http
            .subscribe_raw(&url, &[("last-event-id", &received[from])])
            .await;
        let rest = resumed.ids_until(&received[UPDATES - 1]).await;
        assert_eq!(
            rest,
            received[from + 1..],
            "resumed from {}",
            received[from]
        );

        assert!(peak_kib < 300 * 1024, "hub RSS peaked at {peak_kib} KiB");
        assert!(
            publish_time < Duration::from_secs(40),
            "publishing took {publish_time:?}"
        );
    })
    .await;
}

/// `--heartbeat`, `--write-timeout` and `--no-anonymous`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_write_timeout_and_no_anonymous() {
    within(TEST, "the test", async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProcess::start(
            dir.path(),
            &[
                "--heartbeat",
                "200ms",
                "--write-timeout",
                "1s",
                "--no-anonymous",
            ],
        )
        .await;
        let http = Http::new();
        let url = hub.subscribe_url(&[B1], &[]);

        let answer = http.call(Method::GET, &url, &[], "").await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "anonymous: {answer:?}"
        );
        let bearer = format!("Bearer {}", token(None, None));
        let started = Instant::now();
        let mut stream = http
            .subscribe_raw(&url, &[("authorization", &bearer)])
            .await;
        assert_eq!(stream.status, StatusCode::OK);
        // Nothing is published: the stream is comments only, one at the start and one per
        // idle heartbeat, and it ends at the write timeout (randomised down by up to 10 %).
        let body = stream.read_to_end().await;
        let lasted = started.elapsed();
        let text = String::from_utf8_lossy(&body);
        assert!(text.split_terminator('\n').all(|l| l == ":"), "{text:?}");
        let comments = text.matches(":\n").count();
        assert!(
            (3..=7).contains(&comments),
            "{comments} comments in {lasted:?}: {text:?}"
        );
        assert!(
            lasted >= Duration::from_millis(850),
            "ended after {lasted:?}"
        );
        assert!(lasted < Duration::from_secs(5), "ended after {lasted:?}");
    })
    .await;
}

/// Status codes, content types and headers of `spec/mercure.md`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_follow_the_mercure_spec() {
    within(TEST, "the test", async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProcess::start(dir.path(), &[]).await;
        let http = Http::new();
        let publisher = publisher_token();
        let endpoint = hub.endpoint.as_str();
        let security = |answer: &common::Answer| {
            assert_eq!(
                answer.headers["x-content-type-options"], "nosniff",
                "{answer:?}"
            );
            assert_eq!(answer.headers["x-frame-options"], "DENY", "{answer:?}");
            assert!(
                answer.headers.contains_key("content-security-policy"),
                "{answer:?}"
            );
        };

        // Subscribe.
        let answer = http.call(Method::GET, endpoint, &[], "").await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "no topic: {answer:?}"
        );
        assert!(
            answer.body.contains("Missing \"topic\" parameter."),
            "{answer:?}"
        );
        security(&answer);
        let stream = http
            .subscribe_raw(&hub.subscribe_url(&[B1], &[]), &[])
            .await;
        assert_eq!(stream.status, StatusCode::OK);
        assert_eq!(
            stream.header("content-type").as_deref(),
            Some("text/event-stream")
        );
        assert_eq!(
            stream.header("cache-control").as_deref(),
            Some("private, no-cache, no-store, must-revalidate, max-age=0")
        );
        assert_eq!(stream.header("x-accel-buffering").as_deref(), Some("no"));
        assert_eq!(stream.header("last-event-id"), None);
        drop(stream);
        let answer = http
            .call(Method::HEAD, &hub.subscribe_url(&[B1], &[]), &[], "")
            .await;
        assert_eq!(answer.status, StatusCode::OK, "HEAD: {answer:?}");
        assert_eq!(answer.headers["content-type"], "text/event-stream");
        let answer = http
            .call(
                Method::GET,
                &hub.subscribe_url(&[B1], &[("authorization", "not.a.jwt")]),
                &[],
                "",
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "bad subscriber token: {answer:?}"
        );
        let many: Vec<String> = (0..1001)
            .map(|i| format!("https://example.com/t/{i}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let answer = http
            .call(Method::GET, &hub.subscribe_url(&many, &[]), &[], "")
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "1001 topics: {answer:?}"
        );

        // Other pages and methods.
        let base = endpoint.trim_end_matches("/.well-known/mercure");
        let answer = http.call(Method::GET, &format!("{base}/"), &[], "").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(
            answer.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{answer:?}"
        );
        for method in [Method::PUT, Method::DELETE, Method::PATCH] {
            let answer = http.call(method.clone(), endpoint, &[], "").await;
            assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        }

        // Publish: authorization.
        let ok_fields = fields("ok-1", &[B1], "d", &[]);
        let answer = http.publish(endpoint, None, &ok_fields).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "no token: {answer:?}"
        );
        let books_only = token(Some(&[TEMPLATE]), None);
        let answer = http
            .publish(endpoint, Some(&books_only), &fields("a-1", &[A1], "d", &[]))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "publish claim does not match: {answer:?}"
        );
        let answer = http
            .publish(
                endpoint,
                Some(&books_only),
                &fields("a-2", &[B1, A1], "d", &[]),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "one topic not allowed: {answer:?}"
        );
        let subscriber_only = token(None, Some(&["*"]));
        let answer = http
            .publish(endpoint, Some(&subscriber_only), &ok_fields)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "no publish claim: {answer:?}"
        );
        let foreign = herald_hub::auth::mint_hs256(
            b"another-key-another-key-another-key!!",
            &herald_hub::auth::TokenSpec {
                publish: Some(vec!["*".into()]),
                ..Default::default()
            },
        )
        .unwrap();
        let answer = http.publish(endpoint, Some(&foreign), &ok_fields).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "wrong key: {answer:?}"
        );
        // A token in the cookie, from no allowed origin (CSRF protection).
        let cookie = format!("mercureAuthorization={publisher}");
        let answer = http
            .call(
                Method::POST,
                endpoint,
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("cookie", &cookie),
                    ("origin", "https://evil.example"),
                ],
                common::form(&ok_fields),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "cookie, foreign origin: {answer:?}"
        );
        http.publish_ok(endpoint, &books_only, &fields("b-1", &[B7], "d", &[]))
            .await;

        // Publish: fields.
        let bad: [(&str, Fields<'_>, StatusCode); 13] = [
            ("no topic", vec![("data", "x")], StatusCode::BAD_REQUEST),
            (
                "reserved topic",
                vec![(
                    "topic",
                    "https://example.com/.well-known/mercure/subscriptions/x",
                )],
                StatusCode::FORBIDDEN,
            ),
            (
                "reserved alternate",
                vec![("topic", B1), ("topic", "/.well-known/mercure")],
                StatusCode::FORBIDDEN,
            ),
            (
                "negative retry",
                vec![("topic", B1), ("retry", "-1")],
                StatusCode::BAD_REQUEST,
            ),
            (
                "fractional retry",
                vec![("topic", B1), ("retry", "1.5")],
                StatusCode::BAD_REQUEST,
            ),
            (
                "word retry",
                vec![("topic", B1), ("retry", "soon")],
                StatusCode::BAD_REQUEST,
            ),
            (
                "id with #",
                vec![("topic", B1), ("id", "#frag")],
                StatusCode::BAD_REQUEST,
            ),
            (
                "id with CR",
                vec![("topic", B1), ("id", "a\rb")],
                StatusCode::BAD_REQUEST,
            ),
            (
                "id with LF",
                vec![("topic", B1), ("id", "a\nb")],
                StatusCode::BAD_REQUEST,
            ),
            (
                "id with NUL",
                vec![("topic", B1), ("id", "a\0b")],
                StatusCode::BAD_REQUEST,
            ),
            (
                "type with CR",
                vec![("topic", B1), ("type", "a\rb")],
                StatusCode::BAD_REQUEST,
            ),
            (
                "type with LF",
                vec![("topic", B1), ("type", "a\nb")],
                StatusCode::BAD_REQUEST,
            ),
            (
                "type with NUL",
                vec![("topic", B1), ("type", "a\0b")],
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (case, f, status) in bad {
            let answer = http.publish(endpoint, Some(&publisher), &f).await;
            assert_eq!(answer.status, status, "{case}: {answer:?}");
            security(&answer);
        }

        // Publish: success.
        let id = "urn:example:é 1/ünïcode?&=";
        let answer = http
            .publish(
                endpoint,
                Some(&publisher),
                &fields(id, &[B1], "d", &[("retry", "1500"), ("type", "t")]),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(answer.body, id, "the client-given id is echoed verbatim");
        security(&answer);
        let answer = http
            .publish(endpoint, Some(&publisher), &[("topic", B1), ("data", "x")])
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert!(
            answer.body.starts_with("urn:uuid:"),
            "generated id: {answer:?}"
        );
        assert_eq!(answer.body.len(), "urn:uuid:".len() + 36, "{answer:?}");
    })
    .await;
}
