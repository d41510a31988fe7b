//! Hostile clients against real node processes: every attack of issue 11 that goes
//! through the client API, refused with a clear error and losing nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use quorumkv_tests::{Cluster, Http, Reply};

fn error_code(r: &Reply) -> String {
    assert_eq!(r.header("content-type"), Some("application/json"), "errors are JSON: {r:?}");
    r.json()["error"].as_str().expect("error code").to_string()
}

/// A context token in the token layout, for `count` actors at `counter`, with a tag made
/// up (an attacker does not have the cluster secret) or, for format 1, a CRC as the old
/// tokens had.
fn forged_token(format: u8, count: u64, counter: u64) -> String {
    let varint = |buf: &mut Vec<u8>, mut v: u64| {
        while v >= 0x80 {
            buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    };
    let mut buf = vec![format];
    varint(&mut buf, count);
    for actor in 0..count {
        buf.extend_from_slice(&actor.to_le_bytes());
        varint(&mut buf, counter);
    }
    if format == 1 {
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
    } else {
        buf.extend_from_slice(&[0x5a; 16]);
    }
    URL_SAFE_NO_PAD.encode(buf)
}

#[tokio::test]
async fn forged_altered_and_foreign_context_tokens_are_refused_and_lose_nothing() {
    let c = Cluster::start(3, 3, &[]).await;
    let http = Http::new();
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let a = n1.kv("t", "a", "w=all");
    let b = n1.kv("t", "b", "w=all");
    assert_eq!(http.put(&a, &[], "value-a").await.status, 204);
    assert_eq!(http.put(&b, &[], "value-b").await.status, 204);
    let token_a = http.get(&n1.kv("t", "a", "")).await.context().expect("a context").to_string();

    let mut attempts = vec![
        ("the largest counter", forged_token(2, 1, u64::MAX)),
        ("the old checksummed format", forged_token(1, 1, u64::MAX)),
        ("4,096 invented actors", forged_token(2, 4096, 1)),
        ("another key's token", token_a.clone()),
    ];
    let mut altered = URL_SAFE_NO_PAD.decode(&token_a).expect("base64url");
    altered[2] ^= 1;
    attempts.push(("an altered token", URL_SAFE_NO_PAD.encode(altered)));
    for (what, token) in &attempts {
        for url in [&b, &n2.kv("t", "b", "w=all")] {
            let r = http.put(url, &[("x-causal-context", token)], "forged").await;
            assert_eq!(r.status, 400, "{what}: {r:?}");
            assert_eq!(error_code(&r), "invalid_context", "{what}");
            let r = http.delete(url, &[("x-causal-context", token)]).await;
            assert_eq!(r.status, 400, "{what} on a delete: {r:?}");
        }
    }
    // b is untouched on every replica, and the token a node issued works on every node.
    for n in &c.nodes {
        let r = http.get(&n.kv("t", "b", "local=true")).await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "value-b".to_string()), "{}", n.name);
    }
    let r = http.put(&n2.kv("t", "a", "w=all"), &[("x-causal-context", &token_a)], "a2").await;
    assert_eq!(r.status, 204, "a token from node-1 is good on node-2: {r:?}");
    let r = http.get(&c.nodes[2].kv("t", "a", "r=all")).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "a2".to_string()), "the write superseded a, no sibling");
    // Writes to b through every node still land.
    for n in &c.nodes {
        let token = http.get(&n.kv("t", "b", "")).await.context().expect("context").to_string();
        let r = http
            .put(&n.kv("t", "b", "w=all"), &[("x-causal-context", &token)], format!("by {}", n.name))
            .await;
        assert_eq!(r.status, 204, "{r:?}");
        let r = http.get(&c.nodes[0].kv("t", "b", "r=all")).await;
        assert_eq!(r.text(), format!("by {}", n.name));
    }
}

/// One GET on a kept-alive connection; the answer (head and body) as text.
async fn keep_alive_get(s: &mut tokio::net::TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "the connection was closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

/// Opens a connection that sends a PUT's headers and two bytes of a 1,000-byte body,
/// then holds it open.
async fn slow_upload(api: std::net::SocketAddr) -> Option<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(api).await.ok()?;
    let head = "PUT /v1/kv/slow/k HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nab";
    s.write_all(head.as_bytes()).await.ok()?;
    Some(s)
}

#[tokio::test]
async fn held_open_uploads_do_not_stop_clients_peers_or_health_checks() {
    let c = Cluster::start(
        3,
        3,
        &["--max-connections", "300", "--request-read-timeout-ms", "8000", "--max-requests-in-flight", "200"],
    )
    .await;
    let http = Http::new();
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    // A client with a keep-alive connection to node-1 before the attack.
    assert_eq!(http.put(&n1.kv("t", "before", "w=all"), &[], "v").await.status, 204);
    let mut client = tokio::net::TcpStream::connect(n1.api).await.expect("connect");
    assert!(keep_alive_get(&mut client, "/v1/kv/t/before").await.starts_with("HTTP/1.1 200"));

    let mut held = Vec::new();
    for _ in 0..2000 {
        if let Some(s) = slow_upload(n1.api).await {
            held.push(s);
        }
    }
    assert!(held.len() >= 1500, "the attack opened its connections: {}", held.len());
    // Within the attack: the connected client, a new health check, and writes that need
    // node-1's peer listener are all served while the uploads are still held: each gets
    // its answer well before the 8 s read deadline could free anything (3 s leaves room
    // for a loaded CI machine; on an idle one each takes milliseconds).
    let within = std::time::Duration::from_secs(3);
    let r =
        tokio::time::timeout(within, keep_alive_get(&mut client, "/v1/kv/t/before")).await.expect("served");
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\nv"), "{r}");
    let health = quorumkv_tests::http::raw_get(n1.api, "/v1/health", within).await;
    assert!(health.starts_with("HTTP/1.1 200"), "health answers past the connection cap: {health}");
    let r = tokio::time::timeout(within, http.put(&n2.kv("t", "during", "w=all"), &[], "v"))
        .await
        .expect("peer write");
    assert_eq!(r.status, 204, "node-1's peer listener takes the copy: {r:?}");
    // A new client connection past the cap gets a JSON 503, not silence.
    let other = quorumkv_tests::http::raw_get(n1.api, "/v1/status", within).await;
    assert!(other.starts_with("HTTP/1.1 503") && other.contains("too_many_connections"), "{other}");

    // The node gives up on the slow bodies (408, after the 8 s read deadline) and frees
    // their connections.
    let mut closed = 0;
    for s in held.iter_mut().take(200) {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_secs(20), s.read(&mut buf)).await {
            let text = String::from_utf8_lossy(&buf[..n]);
            if n == 0 || text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 503") {
                closed += 1;
            }
        }
    }
    assert_eq!(closed, 200, "every held upload was answered or closed");
    drop(held);
    let metrics = http.get(&n1.url("/metrics")).await.text();
    assert!(
        metrics.contains("quorumkv_refusals_total{listener=\"api\",reason=\"too_many_connections\"}"),
        "counted"
    );
    assert_eq!(http.get(&n1.kv("t", "during", "r=all")).await.status, 200);
    let r = http.get(&n1.url("/v1/status")).await;
    assert_eq!(r.status, 200, "the node serves as before");
}

#[tokio::test]
async fn names_that_proxies_rewrite_or_that_alias_are_refused() {
    let c = Cluster::single(&[]).await;
    let n = &c.nodes[0];
    let within = std::time::Duration::from_secs(2);
    for path in ["/v1/kv/./k", "/v1/kv/../k", "/v1/kv/b/%zz", "/v1/kv/b/%4", "/v1/kv/b/a%"] {
        let r = quorumkv_tests::http::raw_request(n.api, "PUT", path, "v", within).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{path}: {r}");
        assert!(
            r.contains("\"error\":\"invalid_bucket\"") || r.contains("\"error\":\"invalid_key\""),
            "{path}: {r}"
        );
    }
    // `%25zz` is the key `%zz`, once.
    let http = Http::new();
    assert_eq!(http.put(&n.url("/v1/kv/b/%25zz"), &[], "v").await.status, 204);
    assert_eq!(http.get(&n.url("/v1/kv/b/%25zz")).await.text(), "v");
}

#[tokio::test]
async fn an_http2_client_is_told_to_use_http_1_1() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Cluster::single(&[]).await;
    let mut s = tokio::net::TcpStream::connect(c.nodes[0].api).await.expect("connect");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("preface");
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .expect("the node answers and closes")
        .expect("read");
    // A SETTINGS frame, then a GOAWAY (type 7) whose error code is HTTP_1_1_REQUIRED (0xd).
    assert_eq!(&answer[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0], "{answer:?}");
    assert_eq!(answer[12], 7, "{answer:?}");
    assert_eq!(&answer[22..26], &[0, 0, 0, 0xd], "{answer:?}");
    assert!(String::from_utf8_lossy(&answer).contains("HTTP/1.1"));
}

#[tokio::test]
async fn past_the_in_flight_limit_a_request_gets_503_overloaded_with_retry_after() {
    let c = Cluster::start(3, 3, &["--max-requests-in-flight", "1"]).await;
    let http = Http::new();
    // node-3 stops answering: a w=all write through node-1 holds its one slot until its
    // deadline.
    c.nodes[2].pause();
    let slow = {
        let (http, url) = (http.clone(), c.nodes[0].kv("t", "k", "w=all&timeout_ms=3000&sloppy=false"));
        tokio::spawn(async move { http.put(&url, &[], "v").await })
    };
    // Let the write reach the node first (the probes below take the slot too).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let n1 = &c.nodes[0];
    let refused =
        quorumkv_tests::eventually("the slot is taken", std::time::Duration::from_secs(3), || async {
            let r = http.get(&n1.kv("t", "other", "")).await;
            (r.status == 503).then_some(r)
        })
        .await;
    assert_eq!(error_code(&refused), "overloaded");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(http.get(&n1.url("/v1/health")).await.status, 200, "health takes no slot");
    let slow = slow.await.expect("the slow write");
    assert_eq!(
        (slow.status.as_u16(), error_code(&slow)),
        (503, "quorum_failed".to_string()),
        "w=all could not be met"
    );
    c.nodes[2].resume();
    assert_eq!(http.get(&n1.kv("t", "k", "")).await.status, 200, "the slot is free again");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408() {
    let c = Cluster::single(&["--request-read-timeout-ms", "500"]).await;
    let stream = slow_upload(c.nodes[0].api).await.expect("connect");
    let mut stream = stream;
    let mut answer = Vec::new();
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the node answers")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408") && text.contains("\"error\":\"request_timeout\""), "{text}");
}

#[tokio::test]
async fn without_a_cluster_secret_a_node_refuses_to_serve_peers_beyond_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(quorumkv_tests::process::node_binary())
        .args(["--listen", "127.0.0.1:0", "--peer-listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("QUORUMKV_CLUSTER_SECRET")
        .output()
        .expect("run the node");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("without a cluster secret") && stderr.contains("QUORUMKV_CLUSTER_SECRET"),
        "{stderr}"
    );
}
