//! Debian's real nginx in front of `herald serve`, configured with the documented site block
//! (`deploy/nginx.conf`, only its placeholders substituted): events arrive unbuffered, resuming
//! with `Last-Event-ID` works through the proxy, and the stream's headers pass through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{free_port, subscribe_url_on, token, within, Http, HubProcess, RawStream, STEP};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Where Debian installs nginx.
const NGINX: &str = "/usr/sbin/nginx";

/// Upper bound of the whole test.
const TEST: Duration = Duration::from_secs(50);

/// How long one update may take from its publish answer to the subscriber, through nginx. A
/// buffering proxy would hold a small event until its buffer fills or the stream ends: never,
/// here, since the next update is published only after this one arrived.
const PER_UPDATE: Duration = Duration::from_secs(2);

/// Updates published one at a time, each after the previous one was received.
const N: usize = 20;

/// Updates published while the subscriber is away, then replayed through the proxy.
const MISSED: usize = 5;

const TOPIC: &str = "https://example.com/proxied";

/// The documented site block, with `@HERALD@` and `@LISTEN@` still in it.
fn site_template() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/nginx.conf");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// A running nginx (master and workers, in their own process group); the whole group is killed
/// when dropped.
struct Nginx {
    child: Child,
    pid: u32,
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// Holds the configuration, pid file, logs and temp paths.
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with the documented site block in front of Herald at `herald` (`host:port`),
    /// on a free port of 127.0.0.1, and waits until `/healthz` answers through it.
    async fn start(herald: &str) -> Self {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: this test runs Debian's real nginx in front of Herald. Run \
             scripts/test.sh, which installs it, or `apt-get install nginx-light` (or `nginx`)."
        );
        let template = site_template();
        let without = compiled_out_modules();
        let mut last_failure = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::tempdir().unwrap();
            // Started as root, nginx's workers run as `nobody` and must reach the temp paths.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let site = template
                .replace("@HERALD@", herald)
                .replace("@LISTEN@", &format!("127.0.0.1:{port}"));
            std::fs::write(dir.path().join("site.conf"), site).unwrap();
            std::fs::write(
                dir.path().join("nginx.conf"),
                main_config(dir.path(), &without),
            )
            .unwrap();
            let output = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
            let mut child = Command::new(NGINX)
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(output)
                // Its own group, so that dropping the guard kills the workers too.
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {NGINX}: {e}"));
            let pid = child.id().expect("a running child has a pid");
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + STEP;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    last_failure = format!(
                        "nginx exited with {status}:\n{}{}",
                        read(&dir.path().join("stderr.log")),
                        read(&dir.path().join("error.log"))
                    );
                    break;
                }
                if healthz(port).await {
                    return Self {
                        child,
                        pid,
                        base,
                        dir,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx did not answer /healthz on port {port} within {STEP:?}; error log:\n{}",
                    read(&dir.path().join("error.log"))
                );
                // Polling a port while a process starts; nothing else tells when it is ready.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !last_failure.contains("Address already in use") {
                break;
            }
        }
        panic!("nginx did not start: {last_failure}");
    }

    /// The hub endpoint through nginx.
    fn endpoint(&self) -> String {
        format!("{}/.well-known/mercure", self.base)
    }

    /// nginx's error log so far.
    fn error_log(&self) -> String {
        read(&self.dir.path().join("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The master and its workers: the process group the master leads.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pid)])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.start_kill();
    }
}

/// The main configuration: everything nginx writes stays in `dir`, and the documented site
/// block is included as-is.
fn main_config(dir: &Path, without: &[String]) -> String {
    let d = dir.display();
    let mut temp_paths = format!(
        "    client_body_temp_path {d}/client_body_temp;\n    proxy_temp_path {d}/proxy_temp;\n"
    );
    for module in ["fastcgi", "uwsgi", "scgi"] {
        if !without.iter().any(|m| m == module) {
            temp_paths.push_str(&format!("    {module}_temp_path {d}/{module}_temp;\n"));
        }
    }
    format!(
        "pid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\n\
         worker_processes 1;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n    access_log off;\n{temp_paths}    include {d}/site.conf;\n}}\n"
    )
}

/// HTTP modules this nginx was built without (`--without-http_X_module` in `nginx -V`), whose
/// directives it would reject.
fn compiled_out_modules() -> Vec<String> {
    let output = std::process::Command::new(NGINX)
        .arg("-V")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {NGINX} -V: {e}"));
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.split_whitespace()
        .filter_map(|flag| flag.strip_prefix("--without-http_"))
        .filter_map(|m| m.strip_suffix("_module"))
        .map(str::to_owned)
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Whether `GET /healthz` through the proxy on `port` answers 200.
async fn healthz(port: u16) -> bool {
    let attempt = async {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await.ok()?;
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

/// Opens a subscription through the proxy and checks that it opened at once, with the stream's
/// headers.
async fn subscribe(http: &Http, url: &str, headers: &[(&str, &str)]) -> RawStream {
    // As a browser asks: a proxy that compressed the stream would buffer it.
    let mut headers = headers.to_vec();
    headers.push(("accept-encoding", "gzip, deflate, br"));
    let mut stream = within(
        PER_UPDATE,
        "the stream's head through nginx",
        http.subscribe_raw(url, &headers),
    )
    .await;
    assert_eq!(stream.status, StatusCode::OK, "{:?}", stream.headers);
    assert_eq!(
        stream.header("content-encoding"),
        None,
        "the stream is not compressed: {:?}",
        stream.headers
    );
    let opening = within(
        PER_UPDATE,
        "the opening comment through nginx (the head and a `:` comment are flushed at once)",
        stream.first_bytes(),
    )
    .await;
    assert!(opening.starts_with(b":"), "{opening:?}");
    assert_eq!(
        stream.header("content-type").as_deref(),
        Some("text/event-stream"),
        "{:?}",
        stream.headers
    );
    let cache = stream.header("cache-control").unwrap_or_default();
    assert!(cache.contains("no-cache"), "{:?}", stream.headers);
    stream
}

/// Events arrive through nginx one by one, each before the next is published; a subscriber
/// that went away resumes through nginx with `Last-Event-ID` and gets exactly what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_with_the_documented_config_streams_unbuffered_and_resumes() {
    within(TEST, "the test", async {
        let data = tempfile::tempdir().unwrap();
        let hub = HubProcess::start(data.path(), &["--store", "redb"]).await;
        let nginx = Nginx::start(&hub.authority()).await;
        let endpoint = nginx.endpoint();
        let http = Http::new();
        let publisher = token(Some(&["*"]), None);

        // Herald asks proxies not to buffer; nginx obeys `X-Accel-Buffering` and, like every
        // `X-Accel-*` header, keeps it to itself (it is not passed on to the client).
        let mut direct = http
            .subscribe_raw(&hub.subscribe_url(&[TOPIC], &[]), &[])
            .await;
        assert_eq!(
            direct.header("x-accel-buffering").as_deref(),
            Some("no"),
            "{:?}",
            direct.headers
        );
        direct.first_bytes().await;
        drop(direct);

        // (a) Unbuffered: each update reaches the subscriber through nginx before the next one
        // is published.
        let url = subscribe_url_on(&endpoint, &[TOPIC], &[]);
        let mut stream = subscribe(&http, &url, &[]).await;
        assert_eq!(
            stream.header("last-event-id"),
            None,
            "no cursor was given: {:?}",
            stream.headers
        );
        let mut slowest = Duration::ZERO;
        for i in 0..N {
            let id = format!("p-{i}");
            let data = format!("update {i}");
            let sent = Instant::now();
            http.publish_ok(
                &endpoint,
                &publisher,
                &[("topic", TOPIC), ("id", &id), ("data", &data)],
            )
            .await;
            let what = format!("update {id} through nginx, before the next publish");
            let event = within(PER_UPDATE, &what, stream.next_event()).await;
            slowest = slowest.max(sent.elapsed());
            assert_eq!(event.last_event_id, id);
            assert_eq!(event.data, data);
        }

        // (b) Resume: the subscriber goes away, 5 updates are published, it comes back through
        // nginx with the last id it received and gets exactly those 5, then live updates.
        drop(stream);
        let last_seen = format!("p-{}", N - 1);
        let missed: Vec<String> = (N..N + MISSED).map(|i| format!("p-{i}")).collect();
        for id in &missed {
            http.publish_ok(&endpoint, &publisher, &[("topic", TOPIC), ("id", id)])
                .await;
        }
        let mut resumed = subscribe(&http, &url, &[("last-event-id", &last_seen)]).await;
        // (c) The `Last-Event-ID` response header (where the replay started) passes through.
        assert_eq!(
            resumed.header("last-event-id").as_deref(),
            Some(last_seen.as_str()),
            "{:?}",
            resumed.headers
        );
        for id in &missed {
            let event = within(PER_UPDATE, "a missed update", resumed.next_event()).await;
            assert_eq!(&event.last_event_id, id);
        }
        http.publish_ok(&endpoint, &publisher, &[("topic", TOPIC), ("id", "live")])
            .await;
        let event = within(
            PER_UPDATE,
            "the live update after the replay",
            resumed.next_event(),
        )
        .await;
        assert_eq!(
            event.last_event_id, "live",
            "exactly the missed updates were replayed, then live ones"
        );

        // The same through the `lastEventID` query parameter.
        let by_query = subscribe_url_on(&endpoint, &[TOPIC], &[("lastEventID", "p-22")]);
        let mut resumed = subscribe(&http, &by_query, &[]).await;
        assert_eq!(resumed.header("last-event-id").as_deref(), Some("p-22"));
        let got = within(PER_UPDATE, "the replay", resumed.ids_until("live")).await;
        assert_eq!(got, ["p-23", "p-24", "live"]);

        let errors: Vec<String> = nginx
            .error_log()
            .lines()
            .filter(|l| l.contains("[error]") || l.contains("[crit]") || l.contains("[alert]"))
            .map(str::to_owned)
            .collect();
        assert!(errors.is_empty(), "nginx logged errors: {errors:#?}");
        println!("{N} updates through nginx one at a time; slowest publish-to-receive {slowest:?}");
    })
    .await;
}
