//! Versions are never issued twice, against real processes: a node that lost its own
//! earlier versions of a key (here: a reaped tombstone, an unclean stop) never stamps a
//! new write with a dot an older version or an old context token already holds.

use std::time::Duration;

use quorumkv_tests::{Cluster, Http, eventually};
use serde_json::Value;

/// The live values of a key as every replica answers (`r=3`), sorted.
async fn values(http: &Http, url: &str) -> Vec<String> {
    let r = http.send(hyper::Method::GET, url, &[("accept", "application/json")], bytes::Bytes::new()).await;
    let r = r.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    if r.status == 404 {
        return vec![];
    }
    assert!(r.status == 200 || r.status == 300, "GET {url}: {} {}", r.status, r.text());
    let body: Value = r.json();
    let mut out: Vec<String> = body["siblings"]
        .as_array()
        .expect("siblings")
        .iter()
        .map(|s| {
            let b64 = s["value_base64"].as_str().expect("value");
            String::from_utf8(base64_decode(b64)).expect("utf-8")
        })
        .collect();
    out.sort();
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).expect("base64")
}

/// Issue 20's reproduction: a context token issued before a key was deleted and reaped
/// must not supersede a write made after the reap. The node that coordinated the first
/// version holds nothing for the key after the reap; before the fix it numbered the next
/// version `(itself, 1)` again, which the old token covers, and the acknowledged blind
/// write was silently dropped.
#[tokio::test]
async fn a_token_from_before_a_reap_does_not_supersede_a_write_after_it() {
    let flags = ["--hinted-handoff", "false", "--aae-interval-ms", "500", "--tombstone-grace-ms", "1000"];
    let c = Cluster::start(3, 3, &flags).await;
    let http = Http::new();
    let a = &c.nodes[0];
    for round in 0..3 {
        let key = format!("k{round}");
        let r = http.put(&a.kv("v", &key, "w=3"), &[], "a").await;
        assert_eq!(r.status, 204, "{}", r.text());
        let t1 = r.context().expect("a write answers its context").to_string();
        let r = http.delete(&a.kv("v", &key, "w=3"), &[("x-causal-context", &t1)]).await;
        assert_eq!(r.status, 204, "{}", r.text());
        // Reaped everywhere: no replica holds even the tombstone's context.
        eventually(
            &format!("{key}'s tombstone is reaped on every node"),
            Duration::from_secs(60),
            || async {
                for n in &c.nodes {
                    let r = http.get(&n.kv("v", &key, "local=true")).await;
                    if r.status != 404 || r.context().is_some() {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
        let r = http.put(&a.kv("v", &key, "w=3"), &[], "b").await;
        assert_eq!(r.status, 204, "{}", r.text());
        let r = http.put(&a.kv("v", &key, "w=3"), &[("x-causal-context", &t1)], "c").await;
        assert_eq!(r.status, 204, "{}", r.text());
        for n in &c.nodes {
            assert_eq!(
                values(&http, &n.kv("v", &key, "r=3")).await,
                vec!["b".to_string(), "c".to_string()],
                "{key} through {}: the write after the reap must survive the old token",
                n.name
            );
        }
    }
}

/// A node killed with kill -9 may have lost the tail of its journal that was never
/// fsynced; it comes back as a new actor, so nothing it stamps after the restart can
/// carry a dot it stamped before.
#[tokio::test]
async fn a_node_restarted_after_kill_9_stamps_with_a_new_actor_and_after_a_clean_stop_keeps_it() {
    let mut c = Cluster::start(3, 3, &["--hinted-handoff", "false"]).await;
    let http = Http::new();
    let actor = |s: Value| s["versions"]["actor"].as_str().map(str::to_owned);
    let status = http.get(&c.nodes[0].url("/v1/status")).await.json();
    let first = actor(status.clone()).unwrap_or_else(|| panic!("status names the actor: {status}"));
    c.node(0).terminate();
    c.node(0).start().await;
    let status = http.get(&c.nodes[0].url("/v1/status")).await.json();
    assert_eq!(actor(status.clone()), Some(first.clone()), "a clean stop keeps the actor: {status}");
    assert_eq!(status["versions"]["last_start"], "clean", "{status}");
    c.node(0).kill9();
    c.node(0).start().await;
    let status = http.get(&c.nodes[0].url("/v1/status")).await.json();
    assert_ne!(actor(status.clone()), Some(first), "kill -9 makes a new actor: {status}");
    assert_eq!(status["versions"]["last_start"], "unclean", "{status}");
}
