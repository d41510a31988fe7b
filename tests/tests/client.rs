//! The Rust client (`quorumkv-client`) against real node processes: every call, siblings
//! and their resolution through `update`, deadlines, retries when a node dies, and
//! ring-aware routing checked with the nodes' own metrics.

use std::collections::BTreeSet;
use std::time::Duration;

use quorumkv_client::{Change, Client, Error, Quorum, Value};
use quorumkv_tests::{Cluster, Http, NodeProcess, eventually};

fn client_for(nodes: &[&NodeProcess]) -> Client {
    Client::builder()
        .nodes(nodes.iter().map(|n| n.api.to_string()))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn all_nodes(c: &Cluster) -> Client {
    client_for(&c.nodes.iter().collect::<Vec<_>>())
}

/// The sum of a Prometheus counter over the series whose labels contain all of `labels`.
async fn counter(http: &Http, node: &NodeProcess, name: &str, labels: &[&str]) -> u64 {
    let text = http.get(&node.url("/metrics")).await.text();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A set of strings stored as a JSON array, the sibling-friendly value of these tests.
fn set_of(v: &Value) -> BTreeSet<String> {
    v.parse_json().expect("a JSON array of strings")
}

fn union(siblings: Vec<Value>) -> Value {
    let all: BTreeSet<String> = siblings.iter().flat_map(set_of).collect();
    Value::json(&all).expect("json")
}

#[tokio::test]
async fn every_call_against_one_node() {
    let c = Cluster::single(&["--max-value-bytes", "1000"]).await;
    let client = all_nodes(&c);

    // Not found: typed, no context.
    let e = client.get("users", "alice").await.unwrap_err();
    assert!(matches!(e, Error::NotFound { context: None }), "{e:?}");

    // put → context; get → the value with its content type and the same context.
    let ctx1 = client.put("users", "alice", "v1").await.expect("put");
    let obj = client.get("users", "alice").await.expect("get");
    assert_eq!(obj.value(), Some(&Value::text("v1")));
    assert_eq!(obj.context, ctx1);

    // A second blind put is a sibling, each with its own content type.
    client
        .put("users", "alice", Value::with_content_type("application/json", r#"{"v":2}"#))
        .await
        .expect("blind put");
    let obj = client.get("users", "alice").await.expect("get siblings");
    assert!(obj.has_siblings());
    let mut got: Vec<(String, String)> = obj
        .siblings
        .iter()
        .map(|v| (v.content_type.clone(), v.as_str().expect("utf8").to_string()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("application/json".into(), r#"{"v":2}"#.into()),
            ("text/plain; charset=utf-8".into(), "v1".into())
        ]
    );

    // A put with the context supersedes both; return_body answers like a get.
    let merged = client
        .put("users", "alice", "merged")
        .context(&obj.context)
        .return_body()
        .await
        .expect("put with context");
    assert_eq!(merged.value(), Some(&Value::text("merged")));
    let obj = client.get("users", "alice").await.expect("get");
    assert_eq!(obj.value(), Some(&Value::text("merged")));

    // Delete with the context; the 404 then carries the tombstone's context, and a put
    // with it revives the key cleanly.
    client.delete("users", "alice").context(&obj.context).await.expect("delete");
    let tomb = match client.get("users", "alice").await {
        Err(Error::NotFound { context: Some(ctx) }) => ctx,
        other => panic!("expected a tombstone, got {other:?}"),
    };
    client.put("users", "alice", "reborn").context(&tomb).await.expect("revive");
    let obj = client.get("users", "alice").await.expect("get");
    assert_eq!(obj.siblings, vec![Value::text("reborn")]);

    // Deleting a key that never existed succeeds.
    client.delete("users", "nobody").await.expect("idempotent delete");

    // Per-request options reach the node: valid ones work, out-of-range ones are typed
    // 400s (N is 1 here).
    client
        .put("users", "bob", "durable")
        .w(Quorum::One)
        .dw(1)
        .sloppy(false)
        .timeout(Duration::from_secs(2))
        .await
        .expect("put with options");
    let obj = client.get("users", "bob").r(Quorum::All).await.expect("r=all");
    assert_eq!(obj.value(), Some(&Value::text("durable")));
    for e in [
        client.get("users", "bob").r(Quorum::Count(2)).await.unwrap_err(),
        client.put("users", "bob", "x").w(Quorum::Count(2)).await.unwrap_err(),
        client.put("users", "bob", "x").dw(2).await.unwrap_err(),
    ] {
        assert!(matches!(&e, Error::InvalidInput { code, .. } if code == "invalid_parameter"), "{e:?}");
    }
    let e = client.put("users", "big", vec![b'x'; 1001]).await.unwrap_err();
    assert!(matches!(&e, Error::InvalidInput { code, .. } if code == "value_too_large"), "{e:?}");
    let e = client.get("users", "x").await.unwrap_err();
    assert!(e.is_not_found());

    // Keys are any bytes; binary values keep their bytes exactly.
    let key: Vec<u8> = (0..=255).collect();
    let bytes: Vec<u8> = (0..=255).rev().collect();
    client.put("bin", &key, bytes.clone()).await.expect("binary put");
    let obj = client.get("bin", &key).await.expect("binary get");
    let v = obj.value().expect("one value");
    assert_eq!(v.bytes, bytes);
    assert_eq!(v.content_type, "application/octet-stream");
    // ... and the raw HTTP API agrees on the encoding.
    let http = Http::new();
    let r = http.get(&c.nodes[0].kv("users", "a%2Fb%20c", "")).await;
    assert_eq!(r.status, 404);
    client.put("users", "a/b c", "slashed").await.expect("put");
    assert_eq!(http.get(&c.nodes[0].kv("users", "a%2Fb%20c", "")).await.text(), "slashed");

    // update: read-modify-write with the context; Change::Delete deletes what it read.
    client
        .update("counters", "n", |cur| Value::from(format!("{}", cur.is_some() as u8)))
        .await
        .expect("update");
    let ctx = client
        .update("counters", "n", |cur| {
            let n: u64 = cur.and_then(|v| v.as_str()?.parse().ok()).expect("a number");
            Value::from((n + 41).to_string())
        })
        .await
        .expect("update");
    let obj = client.get("counters", "n").await.expect("get");
    assert_eq!(obj.value().and_then(Value::as_str), Some("41"));
    assert_eq!(obj.context, ctx);
    client.update("counters", "n", |_| Change::Delete).await.expect("update to delete");
    assert!(client.get("counters", "n").await.unwrap_err().is_not_found());

    // Operations.
    client.health().await.expect("health");
    let status = client.status().await.expect("status");
    assert_eq!(status.node_id, "node-1");
    assert_eq!(status.api_addr, c.nodes[0].api.to_string());
    assert_eq!(status.raw["node_id"], "node-1");
    assert!(status.members.iter().any(|m| m.node_id == "node-1"));
    let same = client.node_status(&c.nodes[0].api.to_string()).await.expect("node status");
    assert_eq!(same.node_id, "node-1");
    let ring = client.ring().await.expect("ring");
    assert_eq!(ring.replicas, 1);
    assert_eq!(ring.members[0].node_id, "node-1");
    assert_eq!(ring.replicas_of("users", b"alice"), ["node-1".to_string()]);
}

#[tokio::test]
async fn update_resolves_siblings_and_loses_no_concurrent_write() {
    let c = Cluster::single(&[]).await;
    let client = all_nodes(&c);

    // Three blind writes: three siblings.
    for who in ["ann", "ben", "cy"] {
        client.put("sets", "team", Value::json(&[who]).expect("json")).await.expect("put");
    }
    assert_eq!(client.get("sets", "team").await.expect("get").siblings.len(), 3);
    // Without a resolver, update refuses rather than pick one.
    let e = client.update("sets", "team", |v| v.expect("value")).await.unwrap_err();
    assert!(matches!(e, Error::Unresolved { siblings: 3 }), "{e:?}");

    // With one, the siblings merge into one value, and the change applies on top.
    client
        .update("sets", "team", |v| {
            let mut set = set_of(&v.expect("merged value"));
            set.insert("dee".into());
            Value::json(&set).expect("json")
        })
        .resolve(union)
        .await
        .expect("update");
    let obj = client.get("sets", "team").await.expect("get");
    assert_eq!(set_of(obj.value().expect("resolved")), ["ann", "ben", "cy", "dee"].map(String::from).into());

    // Many concurrent updates: whatever races, every member survives, either merged by a
    // later update's resolver or as a sibling until the next one.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .update("sets", "team", move |v| {
                        let mut set = v.map(|v| set_of(&v)).unwrap_or_default();
                        set.insert(format!("w{i}"));
                        Value::json(&set).expect("json")
                    })
                    .resolve(union)
                    .await
                    .expect("concurrent update")
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    client.update("sets", "team", |v| v.expect("value")).resolve(union).await.expect("final merge");
    let obj = client.get("sets", "team").await.expect("get");
    let set = set_of(obj.value().expect("one value after the final merge"));
    for i in 0..16 {
        assert!(set.contains(&format!("w{i}")), "w{i} was lost: {set:?}");
    }
    assert_eq!(set.len(), 20);
}

#[tokio::test]
async fn a_paused_node_gives_a_timeout_error_and_recovers() {
    let c = Cluster::single(&[]).await;
    let client = all_nodes(&c);
    client.put("b", "k", "v").await.expect("put");

    c.nodes[0].pause();
    let short = Duration::from_millis(300);
    let e = client.get("b", "k").timeout(short).await.unwrap_err();
    assert!(matches!(e, Error::Timeout { timeout } if timeout == short), "{e:?}");
    let e = client.put("b", "k", "w").timeout(short).await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    let e = client.update("b", "k", |v| v.expect("value")).timeout(short).await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");

    c.nodes[0].resume();
    let obj = client.get("b", "k").await.expect("get after resume");
    assert!(obj.siblings.contains(&Value::text("v")));
}

#[tokio::test]
async fn an_unreachable_address_is_skipped_for_the_next() {
    let c = Cluster::single(&[]).await;
    let dead = format!("127.0.0.1:{}", quorumkv_tests::process::free_port());
    for routing in [false, true] {
        let client = Client::builder()
            .nodes([dead.clone(), c.nodes[0].api.to_string()])
            .routing(routing)
            .build()
            .expect("client");
        client.put("b", "k", "v").await.expect("put through the second address");
        client.get("b", "k").await.expect("get through the second address");
        client.status().await.expect("status through the second address");
    }
    let client = Client::new([dead]).expect("client");
    assert!(matches!(client.get("b", "k").await.unwrap_err(), Error::Transport { .. }));
}

// ---- a real cluster ----

/// Each node's count of client-API requests of `op` that succeeded.
async fn served(http: &Http, c: &Cluster, op: &str, status: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for n in &c.nodes {
        out.push(
            counter(
                http,
                n,
                "quorumkv_requests_total",
                &[&format!("op=\"{op}\""), &format!("status=\"{status}\"")],
            )
            .await,
        );
    }
    out
}

#[tokio::test]
async fn routing_sends_each_request_to_a_replica_of_its_key() {
    // N = 1 on three nodes: each key has exactly one replica, so where a request lands
    // shows whether the client routed it.
    let c = Cluster::start(3, 1, &[]).await;
    let http = Http::new();
    let client = client_for(&[&c.nodes[0]]);
    let ring = client.ring().await.expect("ring");
    assert_eq!((ring.replicas, ring.members.len()), (1, 3));

    let keys: Vec<String> = (0..60).map(|i| format!("key-{i}")).collect();
    let mut owned = [0u64; 3];
    for k in &keys {
        let owner = &ring.replicas_of("routed", k.as_bytes())[0];
        let i = c.nodes.iter().position(|n| &n.name == owner).expect("owner is a node");
        owned[i] += 1;
    }
    assert!(owned.iter().filter(|&&n| n > 0).count() >= 2, "keys spread over nodes: {owned:?}");

    let before_put = served(&http, &c, "put", "204").await;
    let before_get = served(&http, &c, "get", "200").await;
    for k in &keys {
        client.put("routed", k, k.as_str()).await.expect("put");
        assert_eq!(client.get("routed", k).await.expect("get").value(), Some(&Value::text(k.as_str())));
    }
    let after_put = served(&http, &c, "put", "204").await;
    let after_get = served(&http, &c, "get", "200").await;
    for i in 0..3 {
        assert_eq!(after_put[i] - before_put[i], owned[i], "puts served by {}", c.nodes[i].name);
        assert_eq!(after_get[i] - before_get[i], owned[i], "gets served by {}", c.nodes[i].name);
    }
    let mut forwarded = 0;
    for n in &c.nodes {
        forwarded += counter(&http, n, "quorumkv_forwarded_writes_total", &[]).await;
    }
    assert_eq!(forwarded, 0, "no write needed forwarding");

    // The control: without routing, every request lands on the first node, which must
    // forward the writes it does not hold. (Shows the metric can tell the difference.)
    let unrouted = Client::builder().node(c.nodes[0].api.to_string()).routing(false).build().expect("client");
    for k in &keys {
        unrouted.put("unrouted", k, "v").await.expect("put");
    }
    let forwarded = counter(&http, &c.nodes[0], "quorumkv_forwarded_writes_total", &[]).await;
    assert!(forwarded > 0, "the first node forwarded the writes it does not own");
}

#[tokio::test]
async fn requests_keep_succeeding_when_a_node_is_killed_mid_run() {
    let mut c = Cluster::start(3, 3, &[]).await;
    let http = Http::new();
    let client = all_nodes(&c);

    // Four writers and readers run while node-1 is killed under them.
    let run = |client: Client, worker: usize| async move {
        for i in 0..60 {
            let key = format!("w{worker}-{i}");
            client.put("mid", &key, key.as_str()).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
            let obj = client.get("mid", &key).await.unwrap_or_else(|e| panic!("get {key}: {e}"));
            assert_eq!(obj.value(), Some(&Value::text(key.as_str())));
        }
    };
    let workers: Vec<_> = (0..4).map(|w| tokio::spawn(run(client.clone(), w))).collect();
    eventually("node-1 has served some of the run", Duration::from_secs(20), || async {
        (counter(&http, &c.nodes[0], "quorumkv_requests_total", &["op=\"put\""]).await >= 10).then_some(())
    })
    .await;
    c.node(0).kill9();
    for w in workers {
        w.await.expect("every request of the run succeeded");
    }

    // The client keeps working with the node gone, and reads every key back.
    let client2 = all_nodes(&c);
    for w in 0..4 {
        for i in (0..60).step_by(7) {
            let key = format!("w{w}-{i}");
            assert_eq!(
                client2.get("mid", &key).await.expect("get").value(),
                Some(&Value::text(key.as_str()))
            );
        }
    }
    // Its ring catches up with the failure.
    eventually("the ring shows node-1 not up", Duration::from_secs(30), || async {
        let ring = client2.ring().await.ok()?;
        ring.members
            .iter()
            .any(|m| m.node_id == "node-1" && m.state != quorumkv_client::ring::MemberState::Up)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_cluster_keeps_concurrent_writes_through_different_nodes_as_siblings() {
    let c = Cluster::start(3, 3, &[]).await;
    let through =
        |i: usize| Client::builder().node(c.nodes[i].api.to_string()).routing(false).build().expect("client");
    let (a, b) = (through(0), through(1));
    a.put("multi", "doc", Value::json(&["from-a"]).expect("json")).w(Quorum::All).await.expect("put a");
    b.put("multi", "doc", Value::json(&["from-b"]).expect("json")).w(Quorum::All).await.expect("put b");

    let client = all_nodes(&c);
    let obj = client.get("multi", "doc").r(Quorum::All).await.expect("get");
    assert_eq!(obj.siblings.len(), 2, "{obj:?}");
    client
        .update("multi", "doc", |v| v.expect("merged"))
        .resolve(union)
        .w(Quorum::All)
        .await
        .expect("resolve");
    for i in 0..3 {
        let obj = through(i).get("multi", "doc").r(Quorum::All).await.expect("get");
        assert_eq!(
            set_of(obj.value().expect("resolved everywhere")),
            ["from-a", "from-b"].map(String::from).into()
        );
    }

    // The ring the client routes by is the cluster's.
    let ring = client.ring().await.expect("ring");
    assert_eq!((ring.replicas, ring.members.len(), ring.partitions.len()), (3, 3, 64));
    for m in &ring.members {
        let node = c.nodes.iter().find(|n| n.name == m.node_id).expect("member is a node");
        assert_eq!(m.api_addr.as_deref(), Some(node.api.to_string().as_str()));
    }
    assert_eq!(ring.replicas_of("multi", b"doc").len(), 3);
}

#[tokio::test]
async fn a_quorum_failure_is_typed_with_its_details() {
    let mut c = Cluster::start(3, 3, &[]).await;
    c.node(1).kill9();
    c.node(2).kill9();
    let client = client_for(&[&c.nodes[0]]);
    let e = client.put("b", "k", "v").w(Quorum::All).timeout(Duration::from_secs(2)).await.unwrap_err();
    match e {
        Error::QuorumFailed { required, succeeded, replicas, .. } => {
            assert_eq!((required, succeeded), (3, 1));
            assert!(replicas.iter().any(|r| r.node == "node-2"), "{replicas:?}");
        }
        other => panic!("expected a quorum failure, got {other:?}"),
    }
    // One replica is enough for w=1.
    client.put("b", "k", "v").w(Quorum::One).await.expect("w=1 with one node up");
}

#[tokio::test]
async fn list_streams_a_buckets_keys_across_pages_and_resumes_from_a_cursor() {
    use futures_util::StreamExt;
    let mut c = Cluster::start(3, 3, &[]).await;
    let client = all_nodes(&c);
    let mut keys: Vec<Vec<u8>> = (0..30u8).map(|k| format!("k{k:02}").into_bytes()).collect();
    keys.push(vec![0xff, 0, b'%']);
    for k in &keys {
        client.put("listed", k, "v").await.expect("put");
    }
    client.put("other", "k00", "v").await.expect("put");
    let streamed: Vec<Vec<u8>> =
        client.list("listed").page_size(4).into_stream().map(|k| k.expect("a key")).collect().await;
    assert_eq!(streamed, keys, "every key once, in byte order, binary ones decoded");

    let mut first = client.list("listed").prefix("k1").page_size(3);
    let page = first.next_page().await.expect("page").expect("not the end");
    assert_eq!(page, keys[10..13]);
    let rest = client.list("listed").prefix("k1").resume(first.cursor().expect("cursor"));
    let rest: Vec<Vec<u8>> = rest.into_stream().map(|k| k.expect("a key")).collect().await;
    assert_eq!(rest, keys[13..20]);
    assert!(matches!(client.list("no/such").next_page().await, Err(Error::InvalidInput { .. })));

    // The client's own r applies to listings too; a listing's r overrides it.
    c.node(2).kill9();
    let strict = Client::builder()
        .nodes([c.nodes[0].api.to_string()])
        .r(Quorum::All)
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    assert!(matches!(strict.list("listed").next_page().await, Err(Error::Unavailable { .. })));
    let page = strict.list("listed").r(Quorum::Count(2)).page_size(100).next_page().await;
    assert_eq!(page.expect("r=2 with one node down").expect("a page"), keys);
}
