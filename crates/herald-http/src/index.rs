//! `GET /`: a short page saying what this is and how to use it (the full UI comes later).

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Herald hub</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; }
code, pre { background: #f2f2f2; border-radius: 4px; }
pre { padding: .75rem; overflow-x: auto; }
</style>
</head>
<body>
<main>
<h1>Herald hub</h1>
<p>This is a Herald push hub, speaking Server-Sent Events and the Mercure protocol.</p>
<h2>Subscribe</h2>
<pre><code>const events = new EventSource("/.well-known/mercure?topic=" + encodeURIComponent("https://example.com/books/{id}"));
events.onmessage = (e) =&gt; console.log(e.data);</code></pre>
<h2>Publish</h2>
<pre><code>curl -X POST /.well-known/mercure \
  -H "Authorization: Bearer $PUBLISHER_JWT" \
  -d topic=https://example.com/books/1 -d data='{"title":"Dune"}'</code></pre>
<p>The publish answer is the update's id. Subscribers that reconnect with <code>Last-Event-ID</code> get everything they missed.</p>
</main>
</body>
</html>
"#;

pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        PAGE,
    )
}
