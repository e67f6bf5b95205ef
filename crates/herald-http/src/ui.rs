//! The hub UI (`/`) and the demo pages (`/demos/…`): plain HTML, CSS and JavaScript from the
//! workspace's `web/` folder, embedded in the binary at build time. Nothing is read from disk
//! at run time and there is no build step.
//!
//! Every file is listed once in [`FILES`]. Pages get a Content-Security-Policy that allows only
//! the hub's own scripts, styles and connections (no inline code), in place of the default
//! `default-src 'none'`. Responses carry an `ETag` so that browsers revalidate cheaply.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The policy of every UI response: the page may load scripts, styles and images from the hub
/// and connect back to it (EventSource, fetch), and nothing else.
pub const PAGE_CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// One embedded file and the path it is served at.
struct File {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! file {
    ($path:literal, $name:literal, $content_type:expr) => {
        File {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../../../web/", $name)),
        }
    };
}

/// Every file of the UI, by the path it is served at.
const FILES: &[File] = &[
    file!("/", "index.html", HTML),
    file!("/demos", "demos/index.html", HTML),
    file!("/demos/", "demos/index.html", HTML),
    file!("/demos/notifications", "demos/notifications.html", HTML),
    file!("/demos/ticker", "demos/ticker.html", HTML),
    file!("/demos/progress", "demos/progress.html", HTML),
    file!("/demos/chat", "demos/chat.html", HTML),
    file!("/demos/metrics", "demos/metrics.html", HTML),
    file!("/assets/herald.css", "assets/herald.css", CSS),
    file!("/assets/favicon.svg", "assets/favicon.svg", SVG),
    file!("/assets/live.js", "assets/live.js", JS),
    file!("/assets/page.js", "assets/page.js", JS),
    file!("/assets/hub.js", "assets/hub.js", JS),
    file!("/assets/notifications.js", "assets/notifications.js", JS),
    file!("/assets/ticker.js", "assets/ticker.js", JS),
    file!("/assets/progress.js", "assets/progress.js", JS),
    file!("/assets/chat.js", "assets/chat.js", JS),
    file!("/assets/metrics.js", "assets/metrics.js", JS),
];

/// The routes of every file in [`FILES`] (GET and HEAD).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    FILES.iter().fold(Router::new(), |router, file| {
        router.route(
            file.path,
            get(move |headers: HeaderMap| serve(file, headers)),
        )
    })
}

async fn serve(file: &'static File, request: HeaderMap) -> Response {
    let etag = etag(file.body);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, file.body).into_response()
}

/// A strong validator for an embedded file: its FNV-1a hash (the files never change while the
/// process runs, so this only has to tell builds apart).
fn etag(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_and_pages_link_only_listed_assets() {
        let mut paths: Vec<_> = FILES.iter().map(|f| f.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), FILES.len());
        for page in FILES.iter().filter(|f| f.content_type == HTML) {
            let text = std::str::from_utf8(page.body).unwrap();
            assert!(!text.contains("<script>"), "{}: inline script", page.path);
            assert!(!text.contains("<style"), "{}: inline style", page.path);
            assert!(!text.contains(" style="), "{}: inline style", page.path);
            for asset in text.split("\"/assets/").skip(1) {
                let name = asset.split('"').next().unwrap_or("");
                let path = format!("/assets/{name}");
                assert!(
                    FILES.iter().any(|f| f.path == path),
                    "{} links {path}, which is not served",
                    page.path
                );
            }
        }
    }

    #[test]
    fn etags_differ_by_content() {
        assert_ne!(etag(b"a"), etag(b"b"));
        assert_eq!(etag(b"a"), etag(b"a"));
    }
}
