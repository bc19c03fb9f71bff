//! The web dashboard served at `/` of the local API: one HTML page, a script
//! and a stylesheet, embedded in the binary so it works with no internet.
//! The page reads the same JSON endpoints as the CLI and follows
//! `/api/v1/events` to update live. It holds no credential: the browser
//! sends the session cookie a one-time login link set (see `guard`), and
//! `/?token=…` is that link.
//!
//! Every answer carries a strong ETag with `Cache-Control: no-cache`: the
//! browser keeps its copy and revalidates, so a page load after the first is
//! a few 304s, and a new binary's assets are never served stale. The
//! Content-Security-Policy allows this origin only: no CDN, no inline script,
//! no framing.

use super::edge::ApiState;
use super::guard;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
#[derive(Debug)]
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    /// FNV-1a of the body, computed at compile time: the ETag.
    tag: u64,
}

impl Asset {
    const fn new(body: &'static [u8], content_type: &'static str) -> Self {
        Asset {
            body,
            content_type,
            tag: fnv1a(body),
        }
    }
}

/// A content hash for ETags (not for security: the files are our own).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

static INDEX: Asset = Asset::new(
    include_bytes!("dashboard/index.html"),
    "text/html; charset=utf-8",
);
static APP_JS: Asset = Asset::new(
    include_bytes!("dashboard/app.js"),
    "text/javascript; charset=utf-8",
);
static STYLE_CSS: Asset = Asset::new(
    include_bytes!("dashboard/style.css"),
    "text/css; charset=utf-8",
);
static FAVICON: Asset = Asset::new(include_bytes!("dashboard/favicon.svg"), "image/svg+xml");

/// Same origin only. `connect-src 'self'` covers the API calls and the event
/// stream; `img-src 'self'` the favicon (charts are SVG built in the DOM).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes, to merge into the API router.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route(
            "/dashboard/app.js",
            get(|h: HeaderMap| async move { serve(&APP_JS, &h) }),
        )
        .route(
            "/dashboard/style.css",
            get(|h: HeaderMap| async move { serve(&STYLE_CSS, &h) }),
        )
        .route(
            "/dashboard/favicon.svg",
            get(|h: HeaderMap| async move { serve(&FAVICON, &h) }),
        )
}

/// The page; with `?token=…`, the login link.
async fn index(State(state): State<ApiState>, query: RawQuery, h: HeaderMap) -> Response {
    let login = query
        .0
        .as_deref()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")));
    match login {
        Some(token) => guard::login(&state, token),
        None => serve(&INDEX, &h),
    }
}

/// The asset, or 304 when the browser's copy (`If-None-Match`) is current.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.tag);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (StatusCode::OK, headers, asset.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&Asset; 4] = [&INDEX, &APP_JS, &STYLE_CSS, &FAVICON];

    #[test]
    fn assets_stay_small() {
        let total: usize = ALL.iter().map(|a| a.body.len()).sum();
        assert!(total < 300 * 1024, "dashboard assets are {total} bytes");
    }

    #[test]
    fn assets_load_nothing_from_elsewhere() {
        for a in ALL {
            let text = String::from_utf8_lossy(a.body);
            // The only absolute URL allowed is the SVG namespace, which is a
            // name, never fetched.
            let stripped = text.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !stripped.contains("http://") && !stripped.contains("https://"),
                "{} refers to another origin",
                a.content_type
            );
            assert!(!stripped.contains("//cdn"), "{}", a.content_type);
        }
        let html = String::from_utf8_lossy(INDEX.body);
        assert!(
            !html.contains("<script>") && !html.contains(" style="),
            "the CSP forbids inline scripts and style attributes"
        );
    }

    #[test]
    fn answers_with_type_policy_and_revalidation() {
        let r = serve(&APP_JS, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii");
        assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
        let etag = h[header::ETAG].clone();

        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve(&APP_JS, &again).status(), StatusCode::NOT_MODIFIED);
        // Another file's tag does not match.
        assert_eq!(serve(&STYLE_CSS, &again).status(), StatusCode::OK);
    }
}
