//! Growing, shrinking and repairing a cluster of real node processes through the layout
//! API, with writers and readers running the whole time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quorumkv_tests::{Cluster, Http, eventually, member_state};

/// Stages `change` (a path under /v1/admin/layout) through node-1 and commits it.
async fn change(http: &Http, c: &Cluster, change: &str) -> u64 {
    let url = c.nodes[0].url(&format!("/v1/admin/layout/{change}"));
    let r = http.send(hyper::Method::POST, &url, &[], "").await.expect("stage");
    assert_eq!(r.status, 200, "{change}: {}", r.text());
    let r = http
        .send(hyper::Method::POST, &c.nodes[0].url("/v1/admin/layout/commit"), &[], "")
        .await
        .expect("commit");
    assert_eq!(r.status, 200, "commit: {}", r.text());
    r.json()["committed"].as_u64().expect("a version")
}

/// Waits until every running node is on `version`, has synced what it gained, has
/// retired the previous version and holds no hint.
async fn settled(http: &Http, c: &Cluster, version: u64) {
    for n in c.nodes.iter().filter(|n| n.is_running()) {
        eventually(&format!("{} settled on version {version}", n.name), Duration::from_secs(60), || async {
            let status = http.get(&n.url("/v1/status")).await.json();
            let layout = &status["layout"];
            let hints = status["workers"]["hinted_handoff"]["pending"].as_object()?.is_empty();
            (layout["version"] == version
                && layout["syncing"].as_array()?.is_empty()
                && layout["previous_version"].is_null()
                && hints)
                .then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn grow_shrink_remove_and_replace_under_load_lose_no_acknowledged_write() {
    let mut c = Cluster::start(3, 3, &["--aae-interval-ms", "5000"]).await;
    let http = Http::new();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let missing = Arc::new(Mutex::new(Vec::<String>::new()));
    // node-1 and node-2 stay members throughout: writers and readers go through them.
    let urls: Vec<String> = c.nodes[..2].iter().map(|n| format!("http://{}/v1/kv/m/", n.api)).collect();
    let writer = {
        let (http, urls, stop, acked) = (http.clone(), urls.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{i}");
                let url = format!("{}{key}?w=2&timeout_ms=2000", urls[i % 2]);
                if let Ok(r) = http.send(hyper::Method::PUT, &url, &[], format!("v{i}")).await
                    && r.status == 204
                {
                    acked.lock().expect("lock").push(key);
                }
                i += 1;
            }
        })
    };
    let reader = {
        let (http, urls, stop, acked, missing) =
            (http.clone(), urls, stop.clone(), acked.clone(), missing.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = {
                    let acked = acked.lock().expect("lock");
                    (!acked.is_empty()).then(|| acked[(i * 7919) % acked.len()].clone())
                };
                if let Some(key) = key {
                    let url = format!("{}{key}?r=2&timeout_ms=2000", urls[i % 2]);
                    if let Ok(r) = http.send(hyper::Method::GET, &url, &[], "").await
                        && r.status == 404
                    {
                        missing.lock().expect("lock").push(key);
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            i
        })
    };

    // Grow 3 -> 4 -> 5.
    c.add_node(3, &["--aae-interval-ms", "5000"]).await;
    settled(&http, &c, change(&http, &c, "join?node=node-4").await).await;
    c.add_node(3, &["--aae-interval-ms", "5000"]).await;
    settled(&http, &c, change(&http, &c, "join?node=node-5").await).await;
    // node-5 leaves, hands off, says it may stop, and stops.
    let v = change(&http, &c, "leave?node=node-5").await;
    eventually("node-5 may stop", Duration::from_secs(60), || async {
        let status = http.get(&c.nodes[4].url("/v1/status")).await.json();
        (status["layout"]["may_stop"] == true).then_some(())
    })
    .await;
    assert!(c.node(4).terminate().success());
    settled(&http, &c, v).await;
    // node-4 is killed and removed.
    c.node(3).kill9();
    eventually("node-1 holds node-4 down", Duration::from_secs(20), || async {
        (member_state(&http, &c.nodes[0], "node-4").await.as_deref() == Some("down")).then_some(())
    })
    .await;
    settled(&http, &c, change(&http, &c, "remove?node=node-4").await).await;
    // node-3 is killed and replaced by node-6.
    c.node(2).kill9();
    eventually("node-1 holds node-3 down", Duration::from_secs(20), || async {
        (member_state(&http, &c.nodes[0], "node-3").await.as_deref() == Some("down")).then_some(())
    })
    .await;
    c.add_node(3, &["--aae-interval-ms", "5000"]).await;
    let v = change(&http, &c, "replace?old=node-3&new=node-6").await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let reads = reader.await.expect("reader");
    settled(&http, &c, v).await;

    let ring = http.get(&c.nodes[0].url("/v1/ring")).await.json();
    let members: Vec<&str> =
        ring["members"].as_array().expect("members").iter().filter_map(|m| m["node_id"].as_str()).collect();
    assert_eq!(members, ["node-1", "node-2", "node-6"]);
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 200 && reads > 200, "load ran: {} writes, {reads} reads", acked.len());
    assert_eq!(*missing.lock().expect("lock"), Vec::<String>::new(), "acknowledged writes read back missing");
    for key in &acked {
        let r = http.get(&format!("http://{}/v1/kv/m/{key}?r=2", c.nodes[5].api)).await;
        assert_eq!(r.status, 200, "{key} was acknowledged: {}", r.text());
    }
}
