//! The web console: one self-contained page at `GET /` and `GET /console` that shows the
//! cluster as this node sees it, refreshed every two seconds from the JSON and text the
//! node already serves (`/v1/status`, `/v1/ring`, `/v1/admin/layout`, `/metrics`).
//!
//! The page holds no data, so it is served without a bearer token (a browser navigation
//! cannot send one); its data calls are ordinary API requests and need one when client
//! tokens are on. It loads nothing from anywhere: style and script are inline, and the
//! Content-Security-Policy allows exactly those two (by hash) and fetches to this node.

use std::sync::LazyLock;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderName, HeaderValue, IF_NONE_MATCH,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::Body;

const TEMPLATE: &str = include_str!("console.html");
const STYLE: &str = include_str!("console.css");
const SCRIPT: &str = include_str!("console.js");

/// The paths the page is served at.
pub fn is_page(path: &str) -> bool {
    matches!(path, "/" | "/console")
}

/// The page, assembled once: the template with its style and script inlined.
struct Page {
    html: Bytes,
    csp: HeaderValue,
    /// Changes with the page, so a browser revalidates and gets a 304 until an upgrade.
    etag: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let html = TEMPLATE.replacen("{{style}}", STYLE, 1).replacen("{{script}}", SCRIPT, 1);
    let csp = format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        csp_hash(SCRIPT),
        csp_hash(STYLE)
    );
    let digest = Sha256::digest(html.as_bytes());
    let etag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Page {
        html: Bytes::from(html),
        // Both are made of base64 and ASCII, always valid header values; the fallbacks
        // (a policy that allows nothing, no validator) are never expected.
        csp: HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
        etag: HeaderValue::from_str(&format!("\"{etag}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
    }
});

/// A CSP source expression allowing an inline element whose text is `text`.
fn csp_hash(text: &str) -> String {
    format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes())))
}

/// `GET /` and `GET /console`: the page, or a 304 when the browser holds this version.
pub fn page(req: &Request<Bytes>) -> Response<Body> {
    let page = &*PAGE;
    let held = req.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t.as_bytes() == page.etag.as_bytes())
    });
    let mut resp = if held {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp
    } else {
        let mut resp = Response::new(Full::new(page.html.clone()));
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        resp
    };
    let headers = resp.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, page.csp.clone());
    headers.insert(ETAG, page.etag.clone());
    // Revalidated on every load (a 304 costs nothing), so an upgraded node serves its own page.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text between `open` and the next `</close>` in the page.
    fn inline<'a>(html: &'a str, open: &str, close: &str) -> &'a str {
        let start = html.find(open).map(|i| i + open.len()).expect("element present");
        let len = html[start..].find(close).expect("element closed");
        &html[start..start + len]
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_style_and_script() {
        let html = std::str::from_utf8(&PAGE.html).expect("utf-8");
        assert!(!html.contains("{{"), "every placeholder filled");
        assert_eq!(html.matches("<script").count(), 1, "one script element");
        assert_eq!(html.matches("<style").count(), 1, "one style element");
        let csp = PAGE.csp.to_str().expect("ascii");
        assert!(csp.contains(&csp_hash(inline(html, "<script>", "</script>"))), "{csp}");
        assert!(csp.contains(&csp_hash(inline(html, "<style>", "</style>"))), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let html = std::str::from_utf8(&PAGE.html).expect("utf-8");
        // Inline `style="…"` would be refused by the policy; the rest would load something.
        for needle in ["http:", "https:", "src=", "@import", "url(", "style=\""] {
            assert!(!html.contains(needle), "the page contains `{needle}`");
        }
        for (i, _) in html.match_indices("href=") {
            assert!(
                html[i..].starts_with("href=\"data:"),
                "a link elsewhere: {}",
                html[i..].chars().take(40).collect::<String>()
            );
        }
    }

    #[test]
    fn a_browser_holding_this_version_gets_a_304() {
        let etag = PAGE.etag.to_str().expect("ascii").to_owned();
        let req = |tag: &str| {
            let mut r = Request::new(Bytes::new());
            r.headers_mut().insert(IF_NONE_MATCH, HeaderValue::from_str(tag).expect("header"));
            r
        };
        assert_eq!(page(&req(&etag)).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(page(&req(&format!("\"x\", W/{etag}"))).status(), StatusCode::NOT_MODIFIED);
        let fresh = page(&req("\"older\""));
        assert_eq!(fresh.status(), StatusCode::OK);
        assert_eq!(fresh.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    }
}
