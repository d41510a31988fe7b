//! Measures what anti-entropy sends to repair a few differences among many keys.
//!
//! Three node data directories are filled offline with the same `--keys` objects, then
//! `--differ` of them are given a different version on node-3 only. The nodes start (trees
//! are rebuilt from storage), node-3 is asked to exchange every partition, and the run
//! reports the bytes its exchanges sent and received, the time until every replica has
//! equal Merkle roots, and what exchanging every key's hash would have cost instead.
//!
//!     cargo build --release --workspace --bins
//!     cargo run --release -p quorumkv-tests --example aae_cost -- --keys 1000000 --differ 100

use std::time::{Duration, Instant};

use quorumkv_storage::{Actor, Content, Durability, Object, ObjectKey, Store, VersionVector};
use quorumkv_tests::{Http, NodeProcess, eventually, metric};

const BUCKET: &[u8] = b"aae";
const PARTITIONS: u32 = 64;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn object(actor: u64, value: &[u8]) -> Object {
    let mut o = Object::new();
    o.update(&VersionVector::new(), Actor(actor), Content::value("application/octet-stream", value.to_vec()))
        .expect("one sibling");
    o
}

fn fill(store: &Store, keys: usize, differ: &[usize], actor_for_differ: Option<u64>) {
    let same = object(1, &[7u8; 100]);
    let other = actor_for_differ.map(|a| object(a, &[9u8; 100]));
    for i in 0..keys {
        let key = format!("k{i}");
        let partition = quorumkv_ring::key_partition(BUCKET, key.as_bytes(), PARTITIONS);
        let k = ObjectKey { partition, bucket: BUCKET, key: key.as_bytes() };
        let obj = match (&other, differ.binary_search(&i).is_ok()) {
            (Some(o), true) => o,
            _ => &same,
        };
        store.merge(k, obj, Durability::Journal).expect("write");
    }
    store.sync().expect("sync");
}

#[tokio::main]
async fn main() {
    let keys = arg("--keys", 1_000_000);
    let differ_count = arg("--differ", 100);
    let differ: Vec<usize> = (0..differ_count).map(|i| i * (keys / differ_count.max(1))).collect();
    let dir = tempfile::Builder::new().prefix("quorumkv-aae-").tempdir().expect("tempdir");
    let quiet = ["--hinted-handoff", "false", "--aae-interval-ms", "3600000", "--replicas", "3"];
    let mut nodes: Vec<NodeProcess> = (1..=3)
        .map(|i| {
            NodeProcess::new(&format!("node-{i}"), dir.path(), quiet.iter().map(|s| s.to_string()).collect())
        })
        .collect();
    let peers: Vec<String> = nodes.iter().map(|n| n.peer.to_string()).collect();
    let loading = Instant::now();
    for (i, node) in nodes.iter_mut().enumerate() {
        std::fs::create_dir_all(&node.data_dir).expect("data dir");
        let store = Store::open(&node.data_dir).expect("open store");
        fill(&store, keys, &differ, (i == 2).then_some(2));
        drop(store);
        let mut args: Vec<String> = quiet.iter().map(|s| s.to_string()).collect();
        for (j, p) in peers.iter().enumerate() {
            if j != i {
                args.extend(["--seed".to_string(), p.clone()]);
            }
        }
        node.set_args(args);
    }
    eprintln!("loaded {keys} keys into 3 replicas in {:.1} s", loading.elapsed().as_secs_f64());
    for node in nodes.iter_mut() {
        node.start().await;
    }
    let http = Http::new();
    for node in &nodes {
        eventually("trees rebuilt", Duration::from_secs(600), || async {
            let s = http.get(&node.url("/v1/status")).await.json();
            let ready = s["workers"]["anti_entropy"]["trees"] == "ready";
            let members = s["members"].as_array().map(|m| m.len()) == Some(3);
            (ready && members).then_some(())
        })
        .await;
    }
    let before_bytes = metric(&http, &nodes[2], "quorumkv_aae_bytes_total").await;
    let before_keys = metric(&http, &nodes[2], "quorumkv_aae_keys_repaired_total").await;
    let started = Instant::now();
    let r = http
        .send(hyper::Method::POST, &nodes[2].url("/v1/admin/anti-entropy"), &[], "")
        .await
        .expect("trigger");
    assert_eq!(r.status, 202);
    eventually("equal roots on every replica", Duration::from_secs(600), || async {
        let mut roots = Vec::new();
        for n in &nodes {
            roots.push(
                http.get(&n.url("/v1/status")).await.json()["workers"]["anti_entropy"]["roots"].clone(),
            );
        }
        (roots[0] == roots[1] && roots[1] == roots[2]).then_some(())
    })
    .await;
    let converged = started.elapsed();
    let bytes = metric(&http, &nodes[2], "quorumkv_aae_bytes_total").await - before_bytes;
    let repaired = metric(&http, &nodes[2], "quorumkv_aae_keys_repaired_total").await - before_keys;
    // The alternative: every key's name and 8-byte hash, sent once per replica pair.
    let key_bytes: usize = (0..keys).map(|i| format!("k{i}").len() + 1 + BUCKET.len() + 1 + 8).sum();
    let naive = 2 * key_bytes;
    println!("keys={keys} differing={differ_count} replicas=3 partitions={PARTITIONS}");
    println!(
        "anti-entropy: {bytes:.0} bytes exchanged by node-3, {repaired:.0} key repairs, converged in {:.2} s",
        converged.as_secs_f64()
    );
    println!("every key's hash instead: {naive} bytes ({:.0}x more)", naive as f64 / bytes.max(1.0));
}
