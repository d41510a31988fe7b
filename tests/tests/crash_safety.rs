//! Every write that got a 204 survives a kill -9 of the node.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quorumkv_tests::{Cluster, Http};

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let mut c = Cluster::single(&[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let url_base = c.nodes[0].kv("crash", "", "");
        let stop = stop.clone();
        writers.spawn(async move {
            let http = Http::new();
            let mut acked = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("w{w}-{i}");
                match http.send(hyper::Method::PUT, &format!("{url_base}{key}"), &[], key.clone()).await {
                    Ok(r) if r.status == 204 => acked.push(key),
                    Ok(r) => panic!("unexpected {}: {}", r.status, r.text()),
                    Err(_) => break, // the node died under us
                }
            }
            acked
        });
    }
    // Let the writers run for a bounded number of writes, then kill -9 mid-stream.
    let http = Http::new();
    quorumkv_tests::eventually("some writes acknowledged", Duration::from_secs(30), || {
        let http = http.clone();
        let url = c.nodes[0].url("/metrics");
        async move {
            let m = http.get(&url).await.text();
            let line =
                m.lines().find(|l| l.starts_with(r#"quorumkv_requests_total{op="put",status="204"}"#))?;
            let n: u64 = line.rsplit(' ').next()?.parse().ok()?;
            (n >= 2000).then_some(())
        }
    })
    .await;
    c.node(0).kill9();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    while let Some(r) = writers.join_next().await {
        acked.extend(r.expect("writer"));
    }
    assert!(acked.len() >= 2000, "{} writes acknowledged", acked.len());

    c.node(0).start().await;
    for key in &acked {
        let r = http.get(&c.nodes[0].kv("crash", key, "")).await;
        assert_eq!(r.status, 200, "acknowledged write {key} lost after kill -9");
        assert_eq!(r.text(), *key);
    }
}
