//! Failure detection, sloppy quorum and hinted handoff against real processes.

use std::time::Duration;

use quorumkv_tests::{Cluster, Http, NodeProcess, eventually, member_state, metric};

/// Keys of `bucket` whose primaries (first `n` of the preference list) include `node`,
/// computed from the ring a node serves.
async fn keys_with_primary(
    http: &Http,
    via: &NodeProcess,
    bucket: &str,
    node: &str,
    count: usize,
) -> Vec<String> {
    let ring = http.get(&via.url("/v1/ring")).await.json();
    let n = ring["replicas"].as_u64().expect("replicas") as usize;
    let q = ring["partition_count"].as_u64().expect("partitions") as u32;
    let partitions = ring["partitions"].as_array().expect("partitions");
    let mut keys = Vec::new();
    for i in 0.. {
        let key = format!("k{i}");
        let p = quorumkv_ring::key_partition(bucket.as_bytes(), key.as_bytes(), q) as usize;
        let prefs = partitions[p]["preference_list"].as_array().expect("list");
        if prefs.iter().take(n).any(|x| x == node) {
            keys.push(key);
            if keys.len() == count {
                break;
            }
        }
    }
    keys
}

async fn wait_state(http: &Http, c: &Cluster, observers: &[usize], of: &str, state: &str) {
    for &i in observers {
        eventually(&format!("node-{} sees {of} {state}", i + 1), Duration::from_secs(15), || async {
            (member_state(http, &c.nodes[i], of).await.as_deref() == Some(state)).then_some(())
        })
        .await;
    }
}

/// Waits until no node holds a hint.
async fn wait_no_hints(http: &Http, c: &Cluster, deadline: Duration) {
    for n in c.nodes.iter().filter(|n| n.is_running()) {
        eventually(&format!("{} holds no hints", n.name), deadline, || async {
            let status = http.get(&n.url("/v1/status")).await.json();
            let pending = status["workers"]["hinted_handoff"]["pending"].as_object()?;
            pending.is_empty().then_some(())
        })
        .await;
    }
}

async fn local_value(http: &Http, node: &NodeProcess, bucket: &str, key: &str) -> Option<String> {
    let r = http.get(&node.kv(bucket, key, "local=true")).await;
    (r.status == 200).then(|| r.text())
}

#[tokio::test]
async fn a_node_that_was_down_gets_every_write_from_hints_without_a_read() {
    let mut c = Cluster::start(3, 3, &[]).await;
    let http = Http::new();
    c.node(2).kill9();
    for i in 0..1000 {
        let via = &c.nodes[i % 2];
        let r = http.put(&via.kv("hh", &format!("k{i}"), "w=2"), &[], format!("v{i}")).await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let stored = metric(&http, &c.nodes[0], "quorumkv_hints_stored_total").await
        + metric(&http, &c.nodes[1], "quorumkv_hints_stored_total").await;
    assert!(stored >= 1000.0, "every missed copy became a hint: {stored}");

    c.node(2).start().await;
    wait_no_hints(&http, &c, Duration::from_secs(60)).await;
    for i in 0..1000 {
        assert_eq!(
            local_value(&http, &c.nodes[2], "hh", &format!("k{i}")).await.as_deref(),
            Some(format!("v{i}").as_str()),
            "node-3 lacks k{i} after handoff"
        );
    }
    let delivered = metric(&http, &c.nodes[0], "quorumkv_hints_delivered_total").await
        + metric(&http, &c.nodes[1], "quorumkv_hints_delivered_total").await;
    assert!(delivered >= 1000.0, "{delivered}");
}

#[tokio::test]
async fn hint_delivery_resumes_after_kill_9_of_the_node_holding_them() {
    // Slow delivery so the kill lands in the middle of it.
    let mut c = Cluster::start(3, 3, &["--hint-rate", "300"]).await;
    let http = Http::new();
    c.node(2).kill9();
    for i in 0..1500 {
        let r = http.put(&c.nodes[0].kv("kk", &format!("k{i}"), "w=2"), &[], format!("v{i}")).await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    c.node(2).start().await;
    eventually("delivery has started", Duration::from_secs(30), || async {
        (metric(&http, &c.nodes[0], "quorumkv_hints_delivered_total").await > 0.0).then_some(())
    })
    .await;
    let pending = metric(&http, &c.nodes[0], "quorumkv_hints_pending").await;
    assert!(pending > 0.0, "the kill must land mid-delivery");
    c.node(0).kill9();
    c.node(0).start().await;
    // A restarted node knows its hints from the moment it serves: at 300 hints/s the
    // rest cannot have been delivered yet, so "no hints" now would be a false report.
    let status = http.get(&c.nodes[0].url("/v1/status")).await.json();
    let after_restart = status["workers"]["hinted_handoff"]["pending"]["node-3"].as_u64().unwrap_or(0);
    assert!(after_restart > 0, "the restarted node reports no pending hints: {status}");
    wait_no_hints(&http, &c, Duration::from_secs(60)).await;
    for i in 0..1500 {
        assert_eq!(
            local_value(&http, &c.nodes[2], "kk", &format!("k{i}")).await.as_deref(),
            Some(format!("v{i}").as_str()),
            "k{i} lost across the kill"
        );
    }
}

#[tokio::test]
async fn a_hint_never_makes_an_older_value_win() {
    let mut c = Cluster::start(4, 3, &[]).await;
    let http = Http::new();
    let keys = keys_with_primary(&http, &c.nodes[0], "cz", "node-4", 20).await;
    c.node(3).kill9();
    wait_state(&http, &c, &[0, 1, 2], "node-4", "down").await;
    // Written while node-4 is away: a fallback keeps its copy as a hint.
    for key in &keys {
        let r = http.put(&c.nodes[0].kv("cz", key, "w=3"), &[], "old").await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    c.node(3).start().await;
    wait_state(&http, &c, &[0, 1, 2], "node-4", "up").await;
    // Updated on the primaries after it returns, with the context: the newer value.
    // And one blind write: concurrent, so a sibling.
    for (i, key) in keys.iter().enumerate() {
        let r = http.get(&c.nodes[1].kv("cz", key, "r=2")).await;
        let ctx = r.context().expect("context").to_string();
        let r = http.put(&c.nodes[1].kv("cz", key, "w=3"), &[("x-causal-context", &ctx)], "new").await;
        assert_eq!(r.status, 204, "{}", r.text());
        if i % 2 == 0 {
            let r = http.put(&c.nodes[2].kv("cz", key, "w=3"), &[], "concurrent").await;
            assert_eq!(r.status, 204, "{}", r.text());
        }
    }
    wait_no_hints(&http, &c, Duration::from_secs(30)).await;
    for (i, key) in keys.iter().enumerate() {
        for n in 0..4 {
            let r = http.get(&c.nodes[n].kv("cz", key, "r=3")).await;
            let body = r.text();
            assert!(!body.contains("old"), "{key}: the older value came back on node-{}: {body}", n + 1);
            if i % 2 == 0 {
                assert_eq!(r.status, 300, "{key}: concurrent writes are siblings");
                assert!(body.contains("new") && body.contains("concurrent"), "{body}");
            } else {
                assert_eq!((r.status.as_u16(), body), (200, "new".to_string()));
            }
        }
    }
}

#[tokio::test]
async fn a_paused_node_is_marked_down_then_up_and_catches_up() {
    let c = Cluster::start(3, 3, &[]).await;
    let http = Http::new();
    c.nodes[2].pause();
    wait_state(&http, &c, &[0, 1], "node-3", "down").await;
    for i in 0..200 {
        let r = http
            .put(&c.nodes[i % 2].kv("pz", &format!("k{i}"), "w=2&timeout_ms=2000"), &[], format!("v{i}"))
            .await;
        assert_eq!(r.status, 204, "traffic flows around the paused node: {}", r.text());
    }
    let transitions = metric(&http, &c.nodes[0], "quorumkv_member_transitions_total").await;
    assert!(transitions >= 1.0);
    c.nodes[2].resume();
    wait_state(&http, &c, &[0, 1], "node-3", "up").await;
    wait_no_hints(&http, &c, Duration::from_secs(60)).await;
    for i in 0..200 {
        assert_eq!(
            local_value(&http, &c.nodes[2], "pz", &format!("k{i}")).await.as_deref(),
            Some(format!("v{i}").as_str()),
            "node-3 caught up on k{i}"
        );
    }
}
