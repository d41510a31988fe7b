//! The HTTP contract of API.md against one real node process.

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine;
use quorumkv_tests::Http;
use quorumkv_tests::{Cluster, Reply};

fn error_code(r: &Reply) -> String {
    assert_eq!(r.header("content-type"), Some("application/json"), "errors are JSON: {r:?}");
    let body = r.json();
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "error has a message: {body}");
    body["error"].as_str().expect("error code").to_string()
}

/// Splits a multipart/mixed body into (content type, value) parts.
fn parts(r: &Reply) -> Vec<(String, String)> {
    let ct = r.header("content-type").expect("content type");
    let boundary = ct.split("boundary=").nth(1).expect("boundary");
    let body = r.text();
    let delim = format!("--{boundary}");
    body.split(&delim)
        .filter(|p| !p.is_empty() && !p.starts_with("--"))
        .map(|p| {
            let p = p.strip_prefix("\r\n").expect("part starts on a new line");
            let (head, value) = p.split_once("\r\n\r\n").expect("part headers");
            let ct = head.strip_prefix("Content-Type: ").expect("part content type");
            (ct.to_string(), value.strip_suffix("\r\n").expect("part end").to_string())
        })
        .collect()
}

#[tokio::test]
async fn object_lifecycle_with_siblings_contexts_and_tombstones() {
    let c = Cluster::single(&[]).await;
    let n = &c.nodes[0];
    let http = Http::new();

    // 404 for a key never written: JSON, no context.
    let r = http.get(&n.kv("users", "alice", "")).await;
    assert_eq!(r.status, 404);
    assert_eq!(error_code(&r), "not_found");
    assert_eq!(r.context(), None);

    // PUT → 204 with a context; GET → 200 with value, content type and the same context.
    let r = http.put(&n.kv("users", "alice", ""), &[("content-type", "text/plain")], "v1").await;
    assert_eq!(r.status, 204);
    let ctx1 = r.context().expect("context").to_string();
    let r = http.get(&n.kv("users", "alice", "")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "v1");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.context(), Some(ctx1.as_str()));

    // A second blind PUT is a sibling: 300 multipart with both parts.
    let r = http.put(&n.kv("users", "alice", ""), &[("content-type", "application/json")], "{\"v\":2}").await;
    assert_eq!(r.status, 204);
    let r = http.get(&n.kv("users", "alice", "")).await;
    assert_eq!(r.status, 300);
    let mut got = parts(&r);
    got.sort();
    assert_eq!(
        got,
        vec![("application/json".into(), "{\"v\":2}".into()), ("text/plain".into(), "v1".into())]
    );
    let ctx = r.context().expect("context").to_string();

    // The JSON form of the same.
    let r = http
        .send(
            hyper::Method::GET,
            &n.kv("users", "alice", ""),
            &[("accept", "application/json")],
            bytes::Bytes::new(),
        )
        .await
        .expect("get");
    assert_eq!(r.status, 300);
    let body = r.json();
    assert_eq!(body["context"].as_str(), Some(ctx.as_str()));
    let mut values: Vec<String> = body["siblings"]
        .as_array()
        .expect("siblings")
        .iter()
        .map(|s| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(s["value_base64"].as_str().expect("b64"))
                .expect("b64");
            format!("{}={}", s["content_type"].as_str().expect("ct"), String::from_utf8(raw).expect("utf8"))
        })
        .collect();
    values.sort();
    assert_eq!(values, vec!["application/json={\"v\":2}", "text/plain=v1"]);

    // A PUT with the context collapses them; return_body answers like a GET.
    let r = http
        .put(
            &n.kv("users", "alice", "return_body=true"),
            &[("x-causal-context", &ctx), ("content-type", "text/plain")],
            "merged",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "merged");
    let r = http.get(&n.kv("users", "alice", "")).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "merged".to_string()));
    let ctx = r.context().expect("context").to_string();

    // return_body with siblings answers 300.
    let r = http.put(&n.kv("users", "alice", "return_body=true"), &[], "blind").await;
    assert_eq!(r.status, 300);
    let ctx_after_blind = r.context().expect("context").to_string();
    assert_ne!(ctx_after_blind, ctx);

    // DELETE with the context → 204; GET → 404 carrying a context.
    let r = http.delete(&n.kv("users", "alice", ""), &[("x-causal-context", &ctx_after_blind)]).await;
    assert_eq!(r.status, 204);
    let r = http.get(&n.kv("users", "alice", "")).await;
    assert_eq!(r.status, 404);
    assert_eq!(error_code(&r), "not_found");
    let tomb_ctx = r.context().expect("404 after delete carries a context").to_string();

    // A PUT with that context revives cleanly: one value, no ghost.
    let r = http.put(&n.kv("users", "alice", ""), &[("x-causal-context", &tomb_ctx)], "reborn").await;
    assert_eq!(r.status, 204);
    let r = http.get(&n.kv("users", "alice", "")).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "reborn".to_string()));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));

    // DELETE of a key that never existed is 204.
    let r = http.delete(&n.kv("users", "nobody", ""), &[]).await;
    assert_eq!(r.status, 204);

    // Retrying a blind write of identical bytes leaves no duplicate sibling.
    http.put(&n.kv("users", "retry", ""), &[], "same").await;
    http.put(&n.kv("users", "retry", ""), &[], "same").await;
    let r = http.get(&n.kv("users", "retry", "")).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "same".to_string()));

    // Keys are any bytes after percent-decoding.
    let r = http.put(&n.kv("users", "a%2Fb%20c%00", ""), &[], "odd").await;
    assert_eq!(r.status, 204);
    assert_eq!(http.get(&n.kv("users", "a%2Fb%20c%00", "")).await.text(), "odd");
}

#[tokio::test]
async fn bad_input_is_a_clear_400_and_loses_nothing() {
    let c = Cluster::single(&["--max-value-bytes", "1000"]).await;
    let n = &c.nodes[0];
    let http = Http::new();
    http.put(&n.kv("b", "k", ""), &[], "keep me").await;

    // (method, url, headers, expected error code)
    type Case<'a> = (hyper::Method, String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (hyper::Method::GET, n.kv("bad%20bucket", "k", ""), vec![], "invalid_bucket"),
        (hyper::Method::GET, n.kv(&"b".repeat(256), "k", ""), vec![], "invalid_bucket"),
        (hyper::Method::PUT, n.kv("b", &"k".repeat(1025), ""), vec![], "invalid_key"),
        (hyper::Method::GET, format!("http://{}/v1/kv/b/", n.api), vec![], "invalid_key"),
        (hyper::Method::GET, n.kv("b", "k", "r=2"), vec![], "invalid_parameter"),
        (hyper::Method::GET, n.kv("b", "k", "r=0"), vec![], "invalid_parameter"),
        (hyper::Method::GET, n.kv("b", "k", "r=lots"), vec![], "invalid_parameter"),
        (hyper::Method::PUT, n.kv("b", "k", "w=5"), vec![], "invalid_parameter"),
        (hyper::Method::PUT, n.kv("b", "k", "dw=2"), vec![], "invalid_parameter"),
        (hyper::Method::PUT, n.kv("b", "k", "timeout_ms=0"), vec![], "invalid_parameter"),
        (hyper::Method::PUT, n.kv("b", "k", "timeout_ms=60001"), vec![], "invalid_parameter"),
        (hyper::Method::PUT, n.kv("b", "k", "sloppy=maybe"), vec![], "invalid_parameter"),
        (hyper::Method::GET, n.kv("b", "k", "frobnicate=1"), vec![], "invalid_parameter"),
        (
            hyper::Method::PUT,
            n.kv("b", "k", ""),
            vec![("x-causal-context", "not-a-token!")],
            "invalid_context",
        ),
        (
            hyper::Method::PUT,
            n.kv("b", "k", ""),
            vec![("x-causal-context", "AQEuuMRF9T4PHgG9qRZW")],
            "invalid_context",
        ),
        (hyper::Method::DELETE, n.kv("b", "k", ""), vec![("x-causal-context", "AAAA")], "invalid_context"),
    ];
    for (method, url, headers, code) in cases {
        let r = http.send(method.clone(), &url, &headers, "x").await.expect("request");
        assert_eq!(r.status, 400, "{method} {url}: {}", r.text());
        assert_eq!(error_code(&r), code, "{method} {url}");
    }

    // Oversized value: 413 before anything is stored, with or without Content-Length.
    let r = http.put(&n.kv("b", "big", ""), &[], vec![b'x'; 1001]).await;
    assert_eq!(r.status, 413);
    assert_eq!(error_code(&r), "value_too_large");
    assert_eq!(http.get(&n.kv("b", "big", "")).await.status, 404);
    let r = http.put(&n.kv("b", "fits", ""), &[], vec![b'x'; 1000]).await;
    assert_eq!(r.status, 204);

    // Unknown routes and methods are JSON errors too.
    let r = http.get(&n.url("/v2/nothing")).await;
    assert_eq!((r.status.as_u16(), error_code(&r)), (404, "no_such_route".to_string()));
    let r = http.send(hyper::Method::POST, &n.kv("b", "k", ""), &[], "x").await.expect("post");
    assert_eq!((r.status.as_u16(), error_code(&r)), (405, "method_not_allowed".to_string()));

    // Nothing was lost.
    assert_eq!(http.get(&n.kv("b", "k", "")).await.text(), "keep me");
}

#[tokio::test]
async fn garbage_bytes_on_the_socket_do_not_hurt_the_node() {
    let c = Cluster::single(&[]).await;
    let n = &c.nodes[0];
    let http = Http::new();
    http.put(&n.kv("b", "k", ""), &[], "still here").await;

    let api = n.api;
    tokio::task::spawn_blocking(move || {
        let payloads: Vec<Vec<u8>> = vec![
            b"\x00\x01\x02\xff\xfe garbage \r\n\r\n".to_vec(),
            b"GET / HTTP/9.9\r\n\r\n".to_vec(),
            b"PUT /v1/kv/b/k HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(),
            b"PUT /v1/kv/b/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n".to_vec(),
            (0..65536).map(|i| (i * 7 % 251) as u8).collect(),
        ];
        for p in payloads {
            let mut s = std::net::TcpStream::connect(api).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let _ = s.write_all(&p);
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            if !buf.is_empty() {
                let head = String::from_utf8_lossy(&buf[..buf.len().min(12)]).to_string();
                assert!(head.starts_with("HTTP/1.1 4"), "garbage gets a 4xx or a close, got {head:?}");
            }
        }
        // A connection that sends half a request and goes away.
        let mut s = std::net::TcpStream::connect(api).expect("connect");
        let _ = s.write_all(b"PUT /v1/kv/b/k HTTP/1.1\r\nContent-Length: 10\r\n\r\nab");
    })
    .await
    .expect("garbage sender");

    let r = http.get(&n.url("/v1/health")).await;
    assert_eq!(r.status, 200);
    assert_eq!(http.get(&n.kv("b", "k", "")).await.text(), "still here");
}

#[tokio::test]
async fn health_status_and_metrics() {
    let c = Cluster::single(&[]).await;
    let n = &c.nodes[0];
    let http = Http::new();
    let r = http.get(&n.url("/v1/health")).await;
    assert_eq!(r.json(), serde_json::json!({"status": "ok"}));

    http.put(&n.kv("b", "k", ""), &[], "v").await;
    http.get(&n.kv("b", "k", "")).await;
    http.get(&n.kv("b", "missing", "")).await;

    let status = http.get(&n.url("/v1/status")).await.json();
    assert_eq!(status["node_id"], "node-1");
    assert_eq!(status["api_addr"], n.api.to_string());
    assert!(status["members"].as_array().is_some_and(|m| !m.is_empty()));
    assert!(status["storage"]["disk_bytes"].as_u64().is_some());

    let metrics = http.get(&n.url("/metrics")).await.text();
    for needle in [
        r#"quorumkv_requests_total{op="put",status="204"} 1"#,
        r#"quorumkv_requests_total{op="get",status="200"} 1"#,
        r#"quorumkv_requests_total{op="get",status="404"} 1"#,
        r#"quorumkv_request_duration_seconds_count{op="get",status="200"} 1"#,
        "quorumkv_storage_bytes",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}:\n{metrics}");
    }
}

#[tokio::test]
async fn dw_writes_and_graceful_shutdown_keep_data() {
    let mut c = Cluster::single(&[]).await;
    let http = Http::new();
    for i in 0..50 {
        let r = http.put(&c.nodes[0].kv("b", &format!("k{i}"), "dw=1"), &[], format!("v{i}")).await;
        assert_eq!(r.status, 204);
    }
    let exit = c.node(0).terminate();
    assert!(exit.success(), "SIGTERM exits cleanly: {exit}");
    c.node(0).start().await;
    for i in 0..50 {
        let r = http.get(&c.nodes[0].kv("b", &format!("k{i}"), "")).await;
        assert_eq!(r.text(), format!("v{i}"));
    }
}
