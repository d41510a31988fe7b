//! A cluster of real processes end to end over HTTP: a quorum write read through every
//! node, a paused (SIGSTOP) replica, status, and garbage on the real peer socket. The
//! quorum, read-repair, forwarding and partition behaviours run in-process
//! (`in_process.rs`).

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
