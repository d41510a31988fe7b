//! Latency of ring-aware routing against sending every request to one node.
//!
//!     cargo run --release -p quorumkv-client --example routing_latency -- NODE [NODE...]
//!
//! Runs `OPS` (default 2000) sequential puts (blind, distinct keys, 100-byte values) and
//! then gets of those keys, once with routing (each request to a replica of its key) and
//! once with every request sent to the first NODE, and prints latency percentiles. With N
//! smaller than the cluster, the first node is not a replica of every key: it forwards
//! those writes, and coordinates those reads from replicas that are all remote.

use std::time::{Duration, Instant};

use quorumkv_client::Client;

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<22} p50 {:>7.0} µs   p90 {:>7.0} µs   p99 {:>7.0} µs   mean {:>7.0} µs",
        at(0.50).as_secs_f64() * 1e6,
        at(0.90).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
    );
}

async fn run(client: &Client, label: &str, prefix: &str, ops: usize) -> Result<(), quorumkv_client::Error> {
    let value = vec![b'x'; 100];
    for i in 0..200 {
        client.put("bench-warmup", format!("{prefix}-{i}"), value.clone()).await?;
    }
    let mut puts = Vec::with_capacity(ops);
    for i in 0..ops {
        let started = Instant::now();
        client.put("bench", format!("{prefix}-{i}"), value.clone()).await?;
        puts.push(started.elapsed());
    }
    let mut gets = Vec::with_capacity(ops);
    for i in 0..ops {
        let started = Instant::now();
        client.get("bench", format!("{prefix}-{i}")).await?;
        gets.push(started.elapsed());
    }
    percentiles(&format!("{label} put"), puts);
    percentiles(&format!("{label} get"), gets);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nodes: Vec<String> = std::env::args().skip(1).collect();
    if nodes.is_empty() {
        return Err("usage: routing_latency NODE [NODE...]".into());
    }
    let ops: usize = std::env::var("OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let routed = Client::new(nodes.iter().cloned())?;
    let ring = routed.ring().await?;
    let first = Client::builder().node(nodes[0].clone()).routing(false).build()?;
    let first_id = first.status().await?.node_id;
    let owned = (0..ops)
        .filter(|i| ring.replicas_of("bench", format!("one-{i}").as_bytes()).contains(&first_id))
        .count();
    println!(
        "{} members, N={}, {ops} ops of each kind; {first_id} is a replica of {owned} of the one-node keys",
        ring.members.len(),
        ring.replicas
    );
    // Alternate the order so that neither mode always runs on a colder cluster.
    run(&routed, "routed", "routed", ops).await?;
    run(&first, "one node", "one", ops).await?;
    run(&routed, "routed (again)", "routed2", ops).await?;
    Ok(())
}
