//! Quorum reads and writes, read repair, forwarding and failures on a 3-node cluster of
//! real processes.

use std::time::Duration;

use quorumkv_tests::{Cluster, Http, eventually};

/// The local replica's value on node `i`, or the status if there is none.
async fn local_value(http: &Http, c: &Cluster, i: usize, bucket: &str, key: &str) -> Result<String, u16> {
    let r = http.get(&c.nodes[i].kv(bucket, key, "local=true")).await;
    if r.status == 200 { Ok(r.text()) } else { Err(r.status.as_u16()) }
}

#[tokio::test]
async fn a_quorum_write_through_one_node_is_read_through_every_other() {
    let c = Cluster::start(3, 3, &[]).await;
    let http = Http::new();
    for k in 0..20 {
        let key = format!("k{k}");
        let r = http.put(&c.nodes[0].kv("b", &key, "w=2"), &[], format!("v{k}")).await;
        assert_eq!(r.status, 204, "{}", r.text());
        for i in 1..3 {
            let r = http.get(&c.nodes[i].kv("b", &key, "r=2")).await;
            assert_eq!((r.status.as_u16(), r.text()), (200, format!("v{k}")), "read through node {i}");
        }
    }
    // With N=3 on 3 nodes, every node is a replica of every key: each holds its own copy.
    for i in 0..3 {
        eventually("all three replicas hold k0", Duration::from_secs(10), || async {
            local_value(&http, &c, i, "b", "k0").await.ok().filter(|v| v == "v0")
        })
        .await;
    }
    let ring = http.get(&c.nodes[1].url("/v1/ring")).await.json();
    assert_eq!(ring["replicas"], 3);
    assert_eq!(ring["partition_count"], 64);
    assert_eq!(ring["partitions"].as_array().expect("partitions").len(), 64);
    assert_eq!(ring["members"].as_array().expect("members").len(), 3);
}

#[tokio::test]
async fn one_node_down_quorums_hold_all_fails_and_read_repair_restores_it() {
    // Without hints, so that only the read can bring node-3 up to date.
    let mut c = Cluster::start(3, 3, &["--hinted-handoff", "false"]).await;
    let http = Http::new();
    c.node(2).kill9();

    let r = http.put(&c.nodes[0].kv("b", "k", "w=2"), &[], "while-down").await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = http.get(&c.nodes[1].kv("b", "k", "r=2")).await;
    assert_eq!(r.text(), "while-down");

    let r = http.put(&c.nodes[0].kv("b", "k2", "w=3&timeout_ms=2000"), &[], "x").await;
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["error"], "quorum_failed");
    assert_eq!(body["required"], 3);
    assert_eq!(body["succeeded"], 2);
    let failed: Vec<&str> =
        body["replicas"].as_array().expect("replicas").iter().filter_map(|r| r["node"].as_str()).collect();
    assert!(failed.contains(&"node-3"), "the failed replica is named: {body}");

    c.node(2).start().await;
    c.wait_members(3).await;
    assert_eq!(local_value(&http, &c, 2, "b", "k").await, Err(404), "node-3 missed the write");
    // A read (at r=3, so node-3 answers too) repairs it.
    let r = http.get(&c.nodes[0].kv("b", "k", "r=3")).await;
    assert_eq!(r.text(), "while-down");
    eventually("read repair reaches node-3", Duration::from_secs(10), || async {
        local_value(&http, &c, 2, "b", "k").await.ok().filter(|v| v == "while-down")
    })
    .await;
    let metrics = http.get(&c.nodes[0].url("/metrics")).await.text();
    let repairs = metrics
        .lines()
        .find(|l| l.starts_with("quorumkv_read_repairs_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("read repair metric");
    assert!(repairs >= 1);
}

#[tokio::test]
async fn two_nodes_down_r2_fails_r1_answers() {
    let mut c = Cluster::start(3, 3, &[]).await;
    let http = Http::new();
    let r = http.put(&c.nodes[0].kv("b", "k", "w=3"), &[], "v").await;
    assert_eq!(r.status, 204);
    c.node(1).kill9();
    c.node(2).kill9();
    let r = http.get(&c.nodes[0].kv("b", "k", "r=2&timeout_ms=2000")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let body = r.json();
    assert_eq!((body["required"].as_u64(), body["succeeded"].as_u64()), (Some(2), Some(1)));
    let r = http.get(&c.nodes[0].kv("b", "k", "r=1")).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "v".to_string()));
}

#[tokio::test]
async fn concurrent_writes_through_different_nodes_become_siblings_and_resolve_everywhere() {
    let c = Cluster::start(3, 3, &[]).await;
    let http = Http::new();
    let (url_a, url_b) = (c.nodes[0].kv("b", "k", ""), c.nodes[1].kv("b", "k", ""));
    let a = http.put(&url_a, &[], "from-a");
    let b = http.put(&url_b, &[], "from-b");
    let (a, b) = tokio::join!(a, b);
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (204, 204));

    let r = http.get(&c.nodes[2].kv("b", "k", "r=3")).await;
    assert_eq!(r.status, 300, "both concurrent writes are siblings: {}", r.text());
    let body = r.text();
    assert!(body.contains("from-a") && body.contains("from-b"), "{body}");
    let ctx = r.context().expect("context").to_string();

    let r = http.put(&c.nodes[2].kv("b", "k", "w=3"), &[("x-causal-context", &ctx)], "resolved").await;
    assert_eq!(r.status, 204);
    for i in 0..3 {
        eventually("every replica holds only the resolution", Duration::from_secs(10), || async {
            local_value(&http, &c, i, "b", "k").await.ok().filter(|v| v == "resolved")
        })
        .await;
    }
}

#[tokio::test]
async fn a_paused_replica_does_not_hold_requests_past_their_deadline() {
    let c = Cluster::start(3, 3, &["--peer-timeout-ms", "10000"]).await;
    let http = Http::new();
    c.nodes[2].pause();
    // R=2 and W=2 are still reachable: the answers come without waiting for node-3.
    for k in 0..10 {
        let r = http.put(&c.nodes[0].kv("b", &format!("k{k}"), "w=2&timeout_ms=3000"), &[], "v").await;
        assert_eq!(r.status, 204, "{}", r.text());
        let r = http.get(&c.nodes[1].kv("b", &format!("k{k}"), "r=2&timeout_ms=3000")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // W=3 cannot be met: it fails at its own deadline (not the 10 s peer timeout) with a 503.
    let started = std::time::Instant::now();
    let r = http.put(&c.nodes[0].kv("b", "x", "w=3&timeout_ms=500"), &[], "v").await;
    assert_eq!(r.status, 503);
    assert!(started.elapsed() < Duration::from_secs(9), "the request deadline bounds the wait");
    c.nodes[2].resume();
}

#[tokio::test]
async fn writes_through_a_non_replica_are_forwarded() {
    // 4 nodes, N=2: for most keys some node is not a replica and must forward.
    let c = Cluster::start(4, 2, &[]).await;
    let http = Http::new();
    for k in 0..40 {
        let r = http.put(&c.nodes[k % 4].kv("fw", &format!("k{k}"), "w=2"), &[], format!("v{k}")).await;
        assert_eq!(r.status, 204, "{}", r.text());
        let r = http.get(&c.nodes[(k + 1) % 4].kv("fw", &format!("k{k}"), "r=2")).await;
        assert_eq!(r.text(), format!("v{k}"));
    }
    let mut forwarded = 0u64;
    for n in &c.nodes {
        let m = http.get(&n.url("/metrics")).await.text();
        forwarded += m
            .lines()
            .find(|l| l.starts_with("quorumkv_forwarded_writes_total "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    assert!(forwarded > 0, "some writes were forwarded to a replica");
}

#[tokio::test]
async fn status_reports_a_cluster_smaller_than_n() {
    let c = Cluster::start(2, 3, &[]).await;
    let http = Http::new();
    let status = http.get(&c.nodes[0].url("/v1/status")).await.json();
    let warnings = status["warnings"].as_array().expect("warnings");
    assert!(warnings.iter().any(|w| w.as_str().is_some_and(|w| w.contains("fewer than N=3"))), "{status}");
}

#[tokio::test]
async fn garbage_on_the_peer_listener_gets_a_typed_error_and_hurts_nothing() {
    let c = Cluster::start(2, 2, &[]).await;
    let http = Http::new();
    http.put(&c.nodes[0].kv("g", "k", "w=2"), &[], "kept").await;
    let peer = format!("http://{}", c.nodes[1].peer);
    // Undecodable bodies, a wrong protocol version, a truncated message, a wrong path.
    for body in [
        &b""[..],
        &b"\x00\x01\x02"[..],
        &b"\x09hello"[..],
        &b"\x01\xff\xff\xff\xff\xff"[..],
        &[1u8; 4096][..],
    ] {
        let r =
            http.send(hyper::Method::POST, &format!("{peer}/rpc"), &[], body.to_vec()).await.expect("answer");
        assert_eq!(r.status, 400, "garbage is refused with a typed error");
    }
    let r = http.send(hyper::Method::GET, &format!("{peer}/nothing"), &[], "").await.expect("answer");
    assert_eq!(r.status, 404);
    let api = c.nodes[1].peer;
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(api).expect("connect");
        let _ = s.write_all(&[0xde, 0xad, 0xbe, 0xef, b'\r', b'\n', b'\r', b'\n']);
    })
    .await
    .expect("raw garbage");
    // Both nodes still serve, and still replicate to each other.
    let r = http.put(&c.nodes[0].kv("g", "k2", "w=2"), &[], "after").await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(http.get(&c.nodes[1].kv("g", "k", "r=2")).await.text(), "kept");
    assert_eq!(http.get(&c.nodes[1].kv("g", "k2", "local=true")).await.text(), "after");
}
