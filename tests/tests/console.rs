//! The web console's page, as a browser gets it from a real node process. (What the page
//! shows in a browser is `.ci/console-test`'s job: headless Chromium against a cluster.)

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use quorumkv_tests::{Cluster, Http, Reply};

/// Asserts what a browser needs of the page: HTML, a policy that lets nothing but the
/// page's own inline style and script run and only this node be fetched, revalidation.
fn assert_is_the_page(r: &Reply) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").expect("a Content-Security-Policy");
    for directive in ["default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "`{directive}` in {csp}");
    }
    assert!(csp.contains("script-src 'sha256-") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let html = r.text();
    assert!(html.starts_with("<!doctype html>"), "{}", &html[..40.min(html.len())]);
    for external in ["http:", "https:", "src=", "@import", "url("] {
        assert!(!html.contains(external), "the page refers to something elsewhere: `{external}`");
    }
    // What the page reads, and the ids the browser test finds its way by.
    for needle in
        ["/v1/status", "/v1/ring", "/metrics", "id=\"members\"", "id=\"partitions\"", "id=\"banner\""]
    {
        assert!(html.contains(needle), "the page has `{needle}`");
    }
}

#[tokio::test]
async fn every_node_serves_the_console_at_the_root_and_at_console() {
    let c = Cluster::single(&[]).await;
    let n = &c.nodes[0];
    let http = Http::new();
    let root = http.get(&n.url("/")).await;
    assert_is_the_page(&root);
    let console = http.get(&n.url("/console")).await;
    assert_is_the_page(&console);
    assert_eq!(root.body, console.body);

    // A browser holding this version revalidates for nothing.
    let etag = root.header("etag").expect("an ETag");
    let again =
        http.send(Method::GET, &n.url("/"), &[("if-none-match", etag)], Bytes::new()).await.expect("get");
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());

    // Other methods: 405, JSON like every error.
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let r = http.send(method.clone(), &n.url("/console"), &[], Bytes::new()).await.expect("send");
        assert_eq!(r.status, 405, "{method} /console");
        assert_eq!(r.json()["error"], "method_not_allowed");
    }
}

#[tokio::test]
async fn with_client_tokens_the_page_is_open_and_its_data_is_not() {
    let c = Cluster::single(&["--client-token", "ro:console-read-only-token-0123"]).await;
    let n = &c.nodes[0];
    let http = Http::new();
    // A browser navigation sends no bearer token: the page, which holds no data, is served.
    assert_is_the_page(&http.get(&n.url("/")).await);
    // What the page then reads needs the token, which it asks for and sends.
    assert_eq!(http.get(&n.url("/v1/status")).await.status, 401);
    let bearer = [("authorization", "Bearer console-read-only-token-0123")];
    for path in ["/v1/status", "/v1/ring", "/v1/admin/layout", "/metrics"] {
        let r = http.send(Method::GET, &n.url(path), &bearer, Bytes::new()).await.expect("get");
        assert_eq!(r.status, 200, "{path} with a read-only token");
    }
}

/// What the console shows of a member going down comes from `/v1/status`: a warning that
/// names it, and anti-entropy exchanges that say how many peers took part and agreed.
#[tokio::test]
async fn status_names_a_member_down_and_exchanges_say_whom_they_reached() {
    let mut c = Cluster::start(3, 3, &[]).await;
    let http = Http::new();
    let status_url = c.nodes[0].url("/v1/status");
    let exchange_url = c.nodes[0].url("/v1/admin/anti-entropy?partition=0");
    // Partition 0's last exchange, once it says `pred` of (peers tried, roots agreed).
    let exchanged = |pred: fn(u64, u64) -> bool| {
        let http = http.clone();
        let (status_url, exchange_url) = (status_url.clone(), exchange_url.clone());
        async move {
            http.send(Method::POST, &exchange_url, &[], Bytes::new()).await.ok()?;
            let status = http.get(&status_url).await.json();
            let p = &status["workers"]["anti_entropy"]["partitions"]["0"];
            let (peers, agreed) = (p["peers"].as_u64()?, p["roots_agreed"].as_u64()?);
            pred(peers, agreed).then_some(status)
        }
    };
    let status =
        quorumkv_tests::eventually("partition 0 exchanged with both peers", Duration::from_secs(20), || {
            exchanged(|peers, agreed| peers == 2 && agreed == 2)
        })
        .await;
    assert_eq!(status["warnings"], serde_json::json!([]), "a healthy cluster warns of nothing");

    c.node(2).kill9();
    let status = quorumkv_tests::eventually(
        "partition 0 exchanged with the one peer up",
        Duration::from_secs(20),
        || exchanged(|peers, agreed| peers == 1 && agreed == 1),
    )
    .await;
    let warnings: Vec<&str> =
        status["warnings"].as_array().expect("warnings").iter().filter_map(|w| w.as_str()).collect();
    assert!(warnings.iter().any(|w| w.contains("node-3") && w.contains("down")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("only 2 of 3 members are up")), "{warnings:?}");
}
