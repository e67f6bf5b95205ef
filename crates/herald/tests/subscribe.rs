//! `herald subscribe` against small scripted HTTP/1.1 servers on 127.0.0.1: what it prints, what
//! it sends, and how it exits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(20);
const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";

/// One scripted answer: the response bytes, and whether to keep the connection open after them.
struct Reply {
    bytes: Vec<u8>,
    keep_open: bool,
}

fn reply(head: &str, body: &str, keep_open: bool) -> Reply {
    Reply {
        bytes: [head.as_bytes(), body.as_bytes()].concat(),
        keep_open,
    }
}

/// Serves `replies` to successive connections; each request head is sent on the channel.
async fn serve(replies: Vec<Reply>) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        for r in replies {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            let _ = socket.write_all(&r.bytes).await;
            if r.keep_open {
                held.push(socket);
            }
        }
        // Keep held connections open until the test ends.
        std::future::pending::<()>().await;
    });
    (url, rx)
}

async fn herald(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(LIMIT, child)
        .await
        .expect("herald subscribe finished in time")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn json_output_is_exactly_the_standard_events() {
    let body = ": hello\n\nretry: 5000\nevent: add\nid: 1\ndata: a\ndata: b\n\n\
                data:c\n\nid\ndata: x\n\n:comment\nid: é\ndata\n\nid: 9\ndata: unfinished\n";
    let (url, _heads) = serve(vec![reply(SSE_HEAD, body, false)]).await;
    let out = herald(&["subscribe", "--format", "json", "--no-reconnect", &url]).await;
    assert_eq!(
        text(&out.stdout),
        concat!(
            r#"{"type":"add","data":"a\nb","id":"1"}"#,
            "\n",
            r#"{"type":"message","data":"c","id":"1"}"#,
            "\n",
            r#"{"type":"message","data":"x","id":""}"#,
            "\n",
            r#"{"type":"message","data":"","id":"é"}"#,
            "\n",
        ),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        text(&out.stderr)
    );
}

#[tokio::test]
async fn text_output_and_count() {
    let body = "event: tick\nid: 1\ndata: one\ndata: two\n\ndata: three\n\ndata: four\n\n";
    let (url, _heads) = serve(vec![reply(SSE_HEAD, body, true)]).await;
    let out = herald(&["subscribe", "--count", "2", &url]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "event: tick\nid: 1\ndata: one\ndata: two\n\nevent: message\nid: 1\ndata: three\n\n"
    );
}

#[tokio::test]
async fn not_found_fails_with_one_clear_line() {
    let (url, _heads) = serve(vec![reply(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\n",
        "not found",
        false,
    )])
    .await;
    let out = herald(&["subscribe", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("404"), "{err}");
}

#[tokio::test]
async fn wrong_content_type_fails() {
    let (url, _heads) = serve(vec![reply(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n",
        "data: no\n\n",
        false,
    )])
    .await;
    let out = herald(&["subscribe", "--format", "json", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(err.contains("text/html"), "{err}");
}

#[tokio::test]
async fn refused_connection_without_reconnect_exits_non_zero() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    drop(listener);
    let out = herald(&["subscribe", "--no-reconnect", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).is_empty());
}

#[tokio::test]
async fn sends_headers_and_last_event_id() {
    let (url, mut heads) = serve(vec![reply(SSE_HEAD, "data: x\n\n", true)]).await;
    let out = herald(&[
        "subscribe",
        "--count",
        "1",
        "--last-event-id",
        "é-7",
        "-H",
        "Authorization: Bearer secret-token",
        &url,
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let head = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.contains("last-event-id: é-7\r\n"), "{head}");
    assert!(
        head.contains("authorization: bearer secret-token\r\n"),
        "{head}"
    );
    assert!(head.contains("accept: text/event-stream\r\n"), "{head}");
}

#[tokio::test]
async fn reconnects_with_last_event_id_and_notes_it_on_stderr() {
    let (url, mut heads) = serve(vec![
        reply(SSE_HEAD, "retry: 10\nid: 5\ndata: one\n\n", false),
        reply(SSE_HEAD, "data: two\n\n", true),
    ])
    .await;
    let out = herald(&["subscribe", "--format", "json", "--count", "2", &url]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"type\":\"message\",\"data\":\"one\",\"id\":\"5\"}\n{\"type\":\"message\",\"data\":\"two\",\"id\":\"5\"}\n"
    );
    let first = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(!first.contains("last-event-id"), "{first}");
    let second = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(second.contains("last-event-id: 5\r\n"), "{second}");
    assert!(
        text(&out.stderr).contains("reconnecting"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn bad_arguments_exit_2() {
    let out = herald(&["subscribe", "-H", "nocolon", "http://127.0.0.1:1/"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = herald(&["subscribe", "not a url"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
