//! Cluster behaviour inside one process: real nodes (real storage, coordinator, workers,
//! peer handler) over an in-memory network whose links a test cuts, one way or both.
//! Quorums, sloppy quorum and hint delivery, read repair, anti-entropy, partitions, and
//! peer input validation. Process-level tests keep what needs processes.

use std::time::Duration;

use bytes::Bytes;
use quorumkv_node::Error;
use quorumkv_node::peer::wire::{
    self, AgedItem, ReplicaAnswer, ReplicaCall, Request, Response, SharedObject,
};
use quorumkv_node::peer::{PeerAuth, Transport};
use quorumkv_ring::NodeId;
use quorumkv_storage::{Actor, Content, Object, VersionVector};
use quorumkv_tests::eventually;
use quorumkv_tests::in_process::{InProcess, name, values};

fn now_ms() -> u64 {
    quorumkv_storage::unix_ms()
}

fn none() -> VersionVector {
    VersionVector::new()
}

fn no_hints(c: &mut quorumkv_node::Config) {
    c.hinted_handoff = false;
}

/// Anti-entropy only when a test triggers it.
fn no_hints_manual_aae(c: &mut quorumkv_node::Config) {
    c.hinted_handoff = false;
    c.aae_interval_ms = 3_600_000;
}

async fn counter(c: &InProcess, i: usize, name: &str) -> f64 {
    let text = c.node(i).metrics_text().await;
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `count` keys of bucket `b` whose first `n` preference-list nodes include node `i`.
fn keys_with_primary(c: &InProcess, i: usize, count: usize) -> Vec<String> {
    let ring = c.node(0).cluster.ring().expect("a layout");
    let me = NodeId(name(i));
    (0..)
        .map(|k| format!("k{k}"))
        .filter(|k| ring.primaries(c.key("b", k).partition()).contains(&me))
        .take(count)
        .collect()
}

fn quorum_failure(e: Error) -> (usize, usize, Vec<String>) {
    match e {
        Error::QuorumFailed { required, succeeded, replicas } => {
            (required, succeeded, replicas.into_iter().map(|(n, _)| n).collect())
        }
        other => panic!("expected a quorum failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_quorum_write_through_one_node_is_read_through_every_other() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    for k in 0..20 {
        let key = format!("k{k}");
        c.put(0, &key, &format!("v{k}"), 2, true, &none()).await.expect("w=2");
        for i in 1..3 {
            let got = c.get(i, &key, 2).await.expect("r=2");
            assert_eq!(values(got.as_ref()), vec![format!("v{k}")], "read through {}", name(i));
        }
    }
    // With N=3 on 3 nodes, every node is a replica of every key.
    for i in 0..3 {
        eventually("all three replicas hold k0", Duration::from_secs(10), || async {
            (values(c.local(i, "k0").await.as_ref()) == ["v0"]).then_some(())
        })
        .await;
    }
    c.stop_all().await;
}

#[tokio::test]
async fn writes_through_a_non_replica_are_forwarded() {
    let mut c = InProcess::start(4, 3, |_| {}).await;
    let ring = c.node(0).cluster.ring().expect("a layout");
    let outsider = NodeId(name(3));
    let keys: Vec<String> = (0..)
        .map(|k| format!("f{k}"))
        .filter(|k| !ring.primaries(c.key("b", k).partition()).contains(&outsider))
        .take(10)
        .collect();
    for k in &keys {
        c.put(3, k, "forwarded", 3, false, &none()).await.expect("forwarded write");
        assert_eq!(c.local(3, k).await, None, "the outsider keeps no copy");
        assert_eq!(values(c.get(0, k, 3).await.expect("read").as_ref()), ["forwarded"]);
    }
    assert!(counter(&c, 3, "quorumkv_forwarded_writes_total").await >= 10.0);
    c.stop_all().await;
}

/// A primary whose storage is stuck (here: one storage thread held, as a flush holding
/// fjall's journal lock would) leaves the writes it would coordinate to another primary,
/// so they do not wait for its disk; its own copy lands once the storage moves again.
#[tokio::test]
async fn a_primary_with_stalled_storage_hands_its_writes_to_another() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    let (release, held) = tokio::sync::oneshot::channel();
    let local = c.node(0).replicas.local().clone();
    let hold = tokio::spawn(async move { local.hold_for_test(held).await });
    eventually("node-1's storage reads as stalled", Duration::from_secs(5), || async {
        c.node(0).replicas.local().writes_stalled(Duration::from_millis(5)).then_some(())
    })
    .await;
    for k in 0..5 {
        let key = format!("s{k}");
        // Coordinated here, the stamp would wait behind the held thread until the 2 s
        // deadline and fail.
        c.put(0, &key, "while stalled", 2, false, &none()).await.expect("handed off, w=2 from the others");
        assert_eq!(values(c.get(1, &key, 2).await.expect("read").as_ref()), ["while stalled"]);
    }
    release.send(()).expect("the hold is waiting");
    hold.await.expect("join").expect("hold");
    // (The metrics page reads storage figures, so it waits for the storage too.)
    assert_eq!(counter(&c, 0, "quorumkv_stall_hand_offs_total").await, 5.0);
    eventually("node-1 has its own copy", Duration::from_secs(10), || async {
        (values(c.local(0, "s4").await.as_ref()) == ["while stalled"]).then_some(())
    })
    .await;
    // Moving again, it coordinates its writes itself.
    c.put(0, "after", "v", 2, false, &none()).await.expect("w=2");
    assert_eq!(counter(&c, 0, "quorumkv_stall_hand_offs_total").await, 5.0);
    c.stop_all().await;
}

#[tokio::test]
async fn one_node_cut_off_quorums_hold_all_fails_and_read_repair_restores_it() {
    let mut c = InProcess::start(3, 3, no_hints).await;
    c.network.partition(&["node-3"], &["node-1", "node-2"]);
    c.wait_state(0, 2, false).await;

    c.put(0, "k", "while-away", 2, false, &none()).await.expect("w=2 with one replica away");
    assert_eq!(values(c.get(1, "k", 2).await.expect("r=2").as_ref()), ["while-away"]);
    let (required, succeeded, failed) =
        quorum_failure(c.put(0, "k2", "x", 3, false, &none()).await.expect_err("w=3 cannot be met"));
    assert_eq!((required, succeeded), (3, 2));
    assert!(failed.contains(&"node-3".to_string()), "the failed replica is named: {failed:?}");

    c.network.heal();
    c.wait_state(0, 2, true).await;
    assert_eq!(c.local(2, "k").await, None, "node-3 missed the write");
    // A read at r=3 (node-3 answers too) repairs it.
    assert_eq!(values(c.get(0, "k", 3).await.expect("r=3").as_ref()), ["while-away"]);
    eventually("read repair reaches node-3", Duration::from_secs(10), || async {
        (values(c.local(2, "k").await.as_ref()) == ["while-away"]).then_some(())
    })
    .await;
    assert!(counter(&c, 0, "quorumkv_read_repairs_total").await >= 1.0);
    c.stop_all().await;
}

#[tokio::test]
async fn two_replicas_cut_off_r2_fails_r1_answers() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    c.put(0, "k", "v", 3, false, &none()).await.expect("w=3");
    c.network.partition(&["node-1"], &["node-2", "node-3"]);
    let (required, succeeded, _) = quorum_failure(c.get(0, "k", 2).await.expect_err("r=2 cannot be met"));
    assert_eq!((required, succeeded), (2, 1));
    assert_eq!(values(c.get(0, "k", 1).await.expect("r=1").as_ref()), ["v"]);
    c.stop_all().await;
}

#[tokio::test]
async fn concurrent_writes_through_different_nodes_become_siblings_and_resolve_everywhere() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    let empty = none();
    let (a, b) =
        tokio::join!(c.put(0, "k", "from-a", 2, true, &empty), c.put(1, "k", "from-b", 2, true, &empty));
    a.expect("a");
    b.expect("b");
    let both = c.get(2, "k", 3).await.expect("r=3").expect("present");
    assert_eq!(values(Some(&both)), ["from-a", "from-b"], "concurrent writes are siblings");
    c.put(2, "k", "resolved", 3, false, both.context()).await.expect("resolve");
    for i in 0..3 {
        eventually("every replica holds only the resolution", Duration::from_secs(10), || async {
            (values(c.local(i, "k").await.as_ref()) == ["resolved"]).then_some(())
        })
        .await;
    }
    c.stop_all().await;
}

#[tokio::test]
async fn sloppy_quorum_keeps_w3_writes_going_and_hints_reach_the_primary_when_it_returns() {
    let mut c = InProcess::start(4, 3, |_| {}).await;
    let keys = keys_with_primary(&c, 3, 40);
    c.network.pause("node-4");
    for i in 0..3 {
        c.wait_state(i, 3, false).await;
    }
    for (n, k) in keys.iter().enumerate().skip(10) {
        c.put(n % 3, k, &format!("v-{k}"), 3, true, &none()).await.expect("a fallback stands in");
    }
    let mut sloppy = 0.0;
    for i in 0..3 {
        sloppy += counter(&c, i, "quorumkv_sloppy_writes_total").await;
    }
    assert!(sloppy > 0.0);
    for k in keys.iter().take(10) {
        let (required, _, _) = quorum_failure(
            c.put(0, k, "strict", 3, false, &none()).await.expect_err("sloppy=false cannot count a fallback"),
        );
        assert_eq!(required, 3);
    }
    // Reads at r=3 see every value: a fallback answers with the hint it keeps.
    for k in keys.iter().skip(10) {
        assert_eq!(values(c.get(1, k, 3).await.expect("r=3").as_ref()), [format!("v-{k}")]);
    }
    eventually("the fallbacks and coordinators count their hints", Duration::from_secs(10), || async {
        ((0..3).map(|i| c.hints_pending(i)).sum::<u64>() >= 30).then_some(())
    })
    .await;

    c.network.resume("node-4");
    for i in 0..3 {
        c.wait_state(i, 3, true).await;
    }
    eventually("every hint is delivered", Duration::from_secs(30), || async {
        ((0..3).map(|i| c.hints_pending(i)).sum::<u64>() == 0).then_some(())
    })
    .await;
    for k in keys.iter().skip(10) {
        assert_eq!(values(c.local(3, k).await.as_ref()), [format!("v-{k}")], "node-4 got {k} from a hint");
    }
    c.stop_all().await;
}

#[tokio::test]
async fn a_minority_refuses_strict_writes_and_converges_after_the_heal() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    c.network.partition(&["node-3"], &["node-1", "node-2"]);
    c.wait_state(2, 0, false).await;
    c.wait_state(2, 1, false).await;
    let (required, succeeded, _) = quorum_failure(
        c.put(2, "m", "minority", 2, false, &none()).await.expect_err("the minority cannot meet w=2"),
    );
    assert_eq!((required, succeeded), (2, 1));
    for k in 0..20 {
        c.put(k % 2, &format!("j{k}"), "majority", 2, false, &none()).await.expect("the majority goes on");
    }
    c.network.heal();
    c.wait_all_up().await;
    eventually("node-3 catches up from hints", Duration::from_secs(30), || async {
        for k in 0..20 {
            if values(c.local(2, &format!("j{k}")).await.as_ref()) != ["majority"] {
                return None;
            }
        }
        Some(())
    })
    .await;
    c.stop_all().await;
}

#[tokio::test]
async fn a_one_way_cut_loses_answers_but_not_effects_and_heals_through_hints() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    // node-1 can send nothing to node-3: node-3's calls reach node-1, its answers do not.
    c.network.cut_one_way("node-1", "node-3");
    c.wait_state(0, 2, false).await;
    c.wait_state(2, 0, false).await;
    // A replica call from node-3 to node-1 times out, yet it was applied.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let call = quorumkv_node::replica::merge_call(
        c.key("b", "one-way"),
        SharedObject::new(object("v")),
        false,
        now_ms(),
    );
    let outcome = c.node(2).replicas.call(NodeId(name(0)), call, deadline).await;
    assert!(matches!(outcome, Err(Error::Timeout)), "the answer is lost: {outcome:?}");
    assert_eq!(
        values(c.local(0, "one-way").await.as_ref()),
        ["v"],
        "the merge landed on node-1 all the same"
    );
    // Each side holds the other down and writes around it; the copies become hints.
    c.put(0, "from-1", "a", 2, true, &none()).await.expect("node-1 reaches a quorum through node-2");
    c.put(2, "from-3", "b", 2, true, &none()).await.expect("node-3 reaches a quorum through node-2");
    assert_eq!(c.local(2, "from-1").await, None);
    assert_eq!(c.local(0, "from-3").await, None);
    c.network.heal();
    c.wait_all_up().await;
    eventually("the hints cross once the link heals", Duration::from_secs(20), || async {
        let a = values(c.local(2, "from-1").await.as_ref()) == ["a"];
        let b = values(c.local(0, "from-3").await.as_ref()) == ["b"];
        (a && b).then_some(())
    })
    .await;
    c.stop_all().await;
}

#[tokio::test]
async fn a_stopped_node_releases_everything_and_restarts_on_its_data() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    c.put(0, "k", "kept", 3, false, &none()).await.expect("w=3");
    // A clean stop joins the storage threads and ends every task, so the directory's
    // lock is free: a second open of a store still held would fail.
    c.stop(2).await;
    c.restart(2).await;
    c.wait_all_up().await;
    assert_eq!(values(c.local(2, "k").await.as_ref()), ["kept"]);
    c.stop_all().await;
}

/// Waits until node `holder` keeps a hint for node `target` about `key`; returns it.
async fn kept_hint(c: &InProcess, holder: usize, target: usize, key: &str) -> quorumkv_storage::Hint {
    let what = format!("{} keeps a hint for {}", name(holder), name(target));
    eventually(&what, Duration::from_secs(20), || async {
        let hints = c.node(holder).replicas.local().scan_hints(NodeId(name(target)), None, 10).await.ok()?;
        hints.into_iter().find(|h| h.key == key.as_bytes())
    })
    .await
}

#[tokio::test]
async fn a_copy_that_fails_late_is_kept_as_a_hint_aged_from_its_write() {
    // The copy to node-3 fails seconds after the write (its link is slow). The hint the
    // coordinator keeps counts its age from the write: counted from the failure, it
    // would outlive a delete made meanwhile and bring the value back after the reap.
    let mut c = InProcess::start(3, 3, |cfg| cfg.peer_timeout_ms = 3_000).await;
    c.network.delay("node-1", "node-3", Duration::from_secs(5));
    let before = now_ms();
    c.put(0, "late", "v", 2, true, &none()).await.expect("w=2 does not wait for node-3");
    let hint = kept_hint(&c, 0, 2, "late").await;
    let failed_after = now_ms() - before;
    assert!(failed_after >= 2_000, "the copy failed late ({failed_after} ms after the write)");
    assert!(
        hint.kept_since_ms() <= before + 1_000,
        "the hint is aged from the write ({before}), not from the failure: kept since {}",
        hint.kept_since_ms()
    );
    c.stop_all().await;
}

#[tokio::test]
async fn a_copy_that_reaches_a_fallback_late_is_kept_as_a_hint_aged_from_its_write() {
    // node-3 is down, so node-4 stands in for it; the copy takes 1 s to reach node-4.
    // node-4's hint counts its age from when the write was made, not from its arrival.
    let mut c = InProcess::start(4, 3, |cfg| cfg.peer_timeout_ms = 3_000).await;
    let key = key_not_replicated_by(&c, 3, "fb");
    c.network.pause(&name(2));
    c.wait_state(0, 2, false).await;
    c.network.delay("node-1", "node-4", Duration::from_millis(1_000));
    let before = now_ms();
    c.put(0, &key, "v", 3, true, &none()).await.expect("node-4 stands in for node-3");
    let arrived_after = now_ms() - before;
    let hint = kept_hint(&c, 3, 2, &key).await;
    assert!(arrived_after >= 900, "the copy arrived late ({arrived_after} ms after the write)");
    assert!(
        hint.kept_since_ms() <= before + 400,
        "the hint is aged from the write ({before}), not from its arrival: kept since {}",
        hint.kept_since_ms()
    );
    c.stop_all().await;
}

#[tokio::test]
async fn a_fallback_that_holds_nothing_does_not_count_toward_a_read_quorum() {
    // Issue 21, seen from outside: a strict write acknowledged by A and B (C paused); then
    // A gone, C back, B paused. A read at r=2 through C was answered by C (which missed
    // the write) and a fallback that holds nothing: a confident 404. The fallback's
    // empty answer must not count: the read fails (503) rather than miss the write.
    let mut c = InProcess::start(5, 3, |_| {}).await;
    let key = key_replicated_by_the_first_three(&c, "fb");
    c.network.pause(&name(2));
    c.wait_state(0, 2, false).await;
    c.put(0, &key, "acknowledged", 2, false, &none()).await.expect("a strict write at w=2");
    c.stop(0).await;
    c.network.resume(&name(2));
    c.network.pause(&name(1));
    c.wait_state(2, 0, false).await;
    c.wait_state(2, 1, false).await;
    c.wait_state(2, 3, true).await;
    c.wait_state(2, 4, true).await;
    match c.get(2, &key, 2).await {
        Err(Error::QuorumFailed { required: 2, succeeded: 1, .. }) => {}
        other => panic!("an acknowledged write must read as the value or a 503, never {other:?}"),
    }
    // With B back, the read finds the write again.
    c.network.resume(&name(1));
    c.wait_state(2, 1, true).await;
    assert_eq!(values(c.get(2, &key, 2).await.expect("read").as_ref()), ["acknowledged"]);
    c.stop_all().await;
}

#[tokio::test]
async fn stored_sync_state_that_cannot_be_read_stops_the_node_with_what_to_do() {
    // Issue 21: a corrupt stored set of syncing partitions decoded as empty (the node then
    // answered for partitions it never synced), a corrupt previous layout as none.
    for (name_, garbage) in [("syncing", &b"\xff\xff\xff"[..]), ("layout-previous", &b"\x07garbage"[..])] {
        let mut c = InProcess::start(3, 3, |_| {}).await;
        c.node(2).replicas.local().meta_put(name_, garbage.to_vec()).await.expect("damage it");
        c.stop(2).await;
        let e = c.try_restart(2).await.expect_err("a node with unreadable sync state must not serve");
        assert!(e.contains("cannot be read") && e.contains("data directory"), "{name_}: {e}");
        c.stop_all().await;
    }
}

#[tokio::test]
async fn a_strict_read_counts_primaries_only_and_a_sloppy_one_a_fallback_that_holds_the_write() {
    // node-2 and node-3 are down; a sloppy write at w=2 lands on node-1 and a fallback.
    let mut c = InProcess::start(5, 3, |_| {}).await;
    let key = key_replicated_by_the_first_three(&c, "st");
    for i in [1, 2] {
        c.network.pause(&name(i));
        c.wait_state(0, i, false).await;
    }
    c.put(0, &key, "v", 2, true, &none()).await.expect("node-1 and a fallback take it");
    let read = |sloppy: bool| {
        let opts = quorumkv_node::coordinator::ReadOptions { r: 2, timeout: Duration::from_secs(1), sloppy };
        c.node(0).coordinator.get(c.key("b", &key), opts)
    };
    assert_eq!(
        values(read(true).await.expect("a sloppy read").as_ref()),
        ["v"],
        "the fallback's copy counts"
    );
    match read(false).await {
        Err(Error::QuorumFailed { required: 2, succeeded: 1, .. }) => {}
        other => panic!("a strict read counts the primaries only, got {other:?}"),
    }
    c.stop_all().await;
}

#[tokio::test]
async fn a_slow_replica_fails_a_strict_write_by_its_deadline_and_loses_nothing() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    // node-3's messages take longer than the request's deadline to arrive.
    c.network.delay("node-1", "node-3", Duration::from_secs(5));
    let (required, succeeded, failed) = quorum_failure(
        c.put(0, "slow", "v", 3, false, &none()).await.expect_err("node-3 cannot answer in time"),
    );
    assert_eq!((required, succeeded), (3, 2));
    assert!(failed.contains(&name(2)), "{failed:?}");
    c.put(0, "fast", "v", 2, false, &none()).await.expect("w=2 does not wait for node-3");
    c.network.heal();
    eventually("node-3 holds both writes in the end", Duration::from_secs(20), || async {
        let both = values(c.local(2, "slow").await.as_ref()) == ["v"]
            && values(c.local(2, "fast").await.as_ref()) == ["v"];
        both.then_some(())
    })
    .await;
    c.stop_all().await;
}

#[tokio::test]
async fn on_lossy_links_every_acknowledged_write_is_read_back() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    c.network.drop_fraction(0.2);
    let mut acknowledged = Vec::new();
    for k in 0..60 {
        let key = format!("lossy{k}");
        if c.put(k % 3, &key, &format!("v{k}"), 2, true, &none()).await.is_ok() {
            acknowledged.push((key, format!("v{k}")));
        }
    }
    assert!(acknowledged.len() >= 30, "most writes still reach a quorum: {}", acknowledged.len());
    c.network.heal();
    c.wait_all_up().await;
    for (key, value) in &acknowledged {
        assert_eq!(values(c.get(1, key, 3).await.expect("r=3").as_ref()), vec![value.clone()], "{key}");
    }
    c.stop_all().await;
}

/// The roots of every partition of node `i`.
async fn roots(c: &InProcess, i: usize) -> Vec<(u32, u64)> {
    c.node(i).replicas.local().roots((0..64).collect()).await.expect("roots")
}

#[tokio::test]
async fn anti_entropy_converges_divergent_replicas_to_equal_roots_and_sibling_sets() {
    let mut c = InProcess::start(3, 3, no_hints_manual_aae).await;
    for round in 0..3 {
        let away = name(round);
        let others: Vec<String> = (0..3).filter(|&i| i != round).map(name).collect();
        c.network.partition(&[away.as_str()], &[others[0].as_str(), others[1].as_str()]);
        let up: Vec<usize> = (0..3).filter(|&i| i != round).collect();
        for i in 0..60 {
            let key = format!("k{}", i % 40);
            c.put(up[i % 2], &key, &format!("r{round}-{i}"), 1, false, &none()).await.expect("w=1");
        }
        c.network.heal();
        c.wait_all_up().await;
    }
    assert_ne!(roots(&c, 0).await, roots(&c, 2).await, "the replicas diverged");
    for i in 0..3 {
        c.node(i).anti_entropy.trigger(None);
    }
    eventually("every replica has equal Merkle roots", Duration::from_secs(60), || async {
        let (a, b, d) = (roots(&c, 0).await, roots(&c, 1).await, roots(&c, 2).await);
        (a == b && b == d).then_some(())
    })
    .await;
    for k in 0..40 {
        let key = format!("k{k}");
        let first = c.local(0, &key).await;
        for i in 1..3 {
            let other = c.local(i, &key).await;
            assert_eq!(other, first, "{key}: the same object on {}", name(i));
        }
        assert!(!values(first.as_ref()).is_empty());
    }
    c.stop_all().await;
}

/// Heals the network and waits until node-1 has dropped at least `expired` hints as
/// expired and holds none; none may have been delivered.
async fn heal_and_expect_expired(c: &InProcess, expired: u32) {
    c.network.heal();
    c.wait_all_up().await;
    eventually("node-1 dropped its expired hints", Duration::from_secs(20), || async {
        let dropped = counter(c, 0, "quorumkv_hints_expired").await;
        (dropped >= f64::from(expired) && c.hints_pending(0) == 0).then_some(())
    })
    .await;
    assert_eq!(counter(c, 0, "quorumkv_hints_delivered_total").await, 0.0, "an expired hint was delivered");
}

#[tokio::test]
async fn a_hint_older_than_the_grace_period_is_dropped_and_anti_entropy_repairs_instead() {
    let grace_ms = 60_000;
    let mut c = InProcess::start(3, 3, |cfg| {
        cfg.tombstone_grace_ms = grace_ms;
        cfg.aae_interval_ms = 3_600_000;
        // Only the explicitly aged hints below: no fresh ones from the writes.
        cfg.hinted_handoff = false;
    })
    .await;
    c.network.partition(&["node-3"], &["node-1", "node-2"]);
    c.wait_state(0, 2, false).await;
    // What node-1 would hold after a write node-3 missed, kept as a hint longer ago than
    // the grace period (an explicit timestamp instead of waiting for it to age).
    let old = quorumkv_storage::unix_ms() - 2 * grace_ms;
    for k in 0..50 {
        let key = format!("x{k}");
        let obj = c.put(0, &key, &format!("v{k}"), 2, false, &none()).await.expect("w=2");
        let local = c.node(0).replicas.local();
        local.put_hint_at(NodeId(name(2)), c.key("b", &key), obj, old).await.expect("old hint");
    }
    heal_and_expect_expired(&c, 50).await;
    c.node(0).anti_entropy.trigger(None);
    eventually("node-3 has every key from anti-entropy", Duration::from_secs(60), || async {
        for k in 0..50 {
            if values(c.local(2, &format!("x{k}")).await.as_ref()) != [format!("v{k}")] {
                return None;
            }
        }
        Some(())
    })
    .await;
    c.stop_all().await;
}

/// Hints expire (and tombstones may be reaped) after `grace_ms`; anti-entropy runs only
/// when triggered.
fn grace_without_aae(grace_ms: u64) -> impl Fn(&mut quorumkv_node::Config) {
    move |cfg| {
        cfg.tombstone_grace_ms = grace_ms;
        cfg.aae_interval_ms = 3_600_000;
    }
}

/// Cuts node-1 off from the others (so its hints wait) and waits until it sees them down.
async fn isolate_node_1(c: &InProcess) {
    c.network.partition(&["node-1"], &["node-2", "node-3"]);
    c.wait_state(0, 1, false).await;
    c.wait_state(0, 2, false).await;
}

/// Waits until the wall clock is past `ms` (a hint's expiry, which counts in real time).
async fn wait_until_past(ms: u64) {
    eventually("the hint TTL passes", Duration::from_secs(30), || async {
        (quorumkv_storage::unix_ms() > ms).then_some(())
    })
    .await;
}

/// When node `i`'s hint for node `target` about `key` was first kept (its oldest layer).
async fn hint_age(c: &InProcess, i: usize, target: usize, key: &str) -> Option<u64> {
    let hints = c.node(i).replicas.local().scan_hints(NodeId(name(target)), None, 1000).await.ok()?;
    let wanted = c.key("b", key);
    hints.iter().find(|h| h.key == wanted.key().as_ref()).map(|h| h.kept_since_ms())
}

#[tokio::test]
async fn a_re_homed_hint_keeps_its_age_and_expires_instead_of_being_delivered() {
    let grace_ms = 6_000;
    let mut c = InProcess::start(3, 3, grace_without_aae(grace_ms)).await;
    isolate_node_1(&c).await;
    // A hint for a member that has left, kept 4 s ago: it has 2 s left to live.
    let kept = quorumkv_storage::unix_ms() - 4_000;
    let local = c.node(0).replicas.local();
    local.put_hint_at(NodeId::from("node-gone"), c.key("b", "r"), object("old"), kept).await.expect("hint");
    // The worker hands it to the current owners (node-1 merges it; node-2 and node-3
    // get hints) with the age it had, not a new one.
    for target in [1, 2] {
        let age =
            eventually("the hint is re-homed", Duration::from_secs(10), || hint_age(&c, 0, target, "r"));
        assert_eq!(age.await, kept, "the re-homed hint for {} keeps its age", name(target));
    }
    wait_until_past(kept + grace_ms).await;
    heal_and_expect_expired(&c, 2).await;
    for i in [1, 2] {
        assert_eq!(c.local(i, "r").await, None, "{} got a version older than the grace period", name(i));
    }
    c.stop_all().await;
}

#[tokio::test]
async fn a_write_merged_into_a_hint_just_before_it_expires_is_still_delivered() {
    let grace_ms = 6_000;
    let mut c = InProcess::start(3, 3, grace_without_aae(grace_ms)).await;
    c.network.partition(&["node-3"], &["node-1", "node-2"]);
    c.wait_state(0, 2, false).await;
    // node-1 holds a hint for node-3 that expires in 2 s; a write node-3 misses now
    // merges into it, and that hint is the write's only copy meant for node-3.
    let kept = quorumkv_storage::unix_ms() - 4_000;
    let local = c.node(0).replicas.local();
    local.put_hint_at(NodeId(name(2)), c.key("b", "w"), object("old"), kept).await.expect("hint");
    c.put(0, "w", "new", 2, false, &none()).await.expect("w=2");
    eventually("the write is kept as a hint too", Duration::from_secs(10), || async {
        let hint = local.get_hints(c.key("b", "w"), vec![NodeId(name(2))]).await.ok()??;
        (values(Some(&hint)).len() == 2).then_some(())
    })
    .await;
    wait_until_past(kept + grace_ms).await;
    c.network.heal();
    c.wait_all_up().await;
    eventually("node-3 gets the write, not the expired version", Duration::from_secs(20), || async {
        (values(c.local(2, "w").await.as_ref()) == ["new"] && c.hints_pending(0) == 0).then_some(())
    })
    .await;
    assert!(counter(&c, 0, "quorumkv_hints_expired").await >= 1.0);
    c.stop_all().await;
}

#[tokio::test]
async fn a_delivered_hint_reaching_a_non_owner_keeps_its_age() {
    let grace_ms = 60_000;
    let mut c = InProcess::start(4, 3, |cfg| cfg.tombstone_grace_ms = grace_ms).await;
    c.network.partition(&["node-1"], &["node-2", "node-3", "node-4"]);
    for i in 1..4 {
        c.wait_state(0, i, false).await;
    }
    let (young, old) = (key_not_replicated_by(&c, 0, "y"), key_not_replicated_by(&c, 0, "o"));
    let now = quorumkv_storage::unix_ms();
    // Hints kept elsewhere 50 s and 70 s ago, delivered to node-1 (by a node whose layout
    // says node-1 owns the keys).
    let item = |key: &str, kept: u64| AgedItem {
        key: c.key("b", key),
        object: object("delivered"),
        kept_since_ms: Some(kept),
    };
    let items = vec![item(&young, now - 50_000), item(&old, now - 70_000)];
    let answer = send_raw(&c, wire::encode(&Request::MergeBatch { items })).await;
    assert!(matches!(answer, Response::MergedBatch { count: 2 }), "{answer:?}");
    let ring = c.node(0).cluster.ring().expect("a layout");
    for owner in ring.primaries(c.key("b", &young).partition()) {
        let i: usize = owner.0.trim_start_matches("node-").parse::<usize>().expect("a node") - 1;
        assert_eq!(hint_age(&c, 0, i, &young).await, Some(now - 50_000), "kept for {owner} with its age");
    }
    for owner in ring.primaries(c.key("b", &old).partition()) {
        let i: usize = owner.0.trim_start_matches("node-").parse::<usize>().expect("a node") - 1;
        assert_eq!(hint_age(&c, 0, i, &old).await, None, "past the TTL: not kept again for {owner}");
    }
    c.stop_all().await;
}

/// Sends `body` to node-1 signed with the cluster's secret, as a member would, and
/// decodes the answer.
async fn send_raw(c: &InProcess, body: Vec<u8>) -> Response {
    let auth = PeerAuth::new(quorumkv_tests::TEST_SECRET.as_bytes());
    let (sealed, to) = auth.seal_request(&body);
    let answer = c.network.endpoint("member").exchange("node-1", sealed).await.expect("an answer");
    let answer = auth.open_answer(to, &answer).expect("a signed answer");
    wire::decode::<Response>(&answer).expect("a decodable answer")
}

/// Sends `body` to node-1 as is (`None`) or signed with another secret.
async fn send_forged(c: &InProcess, body: &[u8], secret: Option<&str>) -> Response {
    let sealed = match secret {
        None => Bytes::copy_from_slice(body),
        Some(secret) => PeerAuth::new(secret.as_bytes()).seal_request(body).0,
    };
    let answer = c.network.endpoint("intruder").exchange("node-1", sealed).await.expect("an answer");
    wire::decode::<Response>(&answer).expect("a decodable refusal")
}

#[tokio::test]
async fn peer_messages_without_the_cluster_secret_are_refused_and_change_nothing() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    c.put(0, "kept", "original", 3, false, &none()).await.expect("a write");
    let key = c.key("b", "kept");
    let phantom = quorumkv_node::layout::MemberInfo {
        node_id: NodeId::from("phantom"),
        incarnation: 1,
        peer_addr: "phantom".into(),
        api_addr: "phantom".into(),
        capacity: 1000,
        zone: None,
    };
    let layout = c.node(0).cluster.layout().expect("a layout");
    let takeover =
        layout.apply(&[quorumkv_node::layout::Change::Join { node: phantom.clone() }]).expect("a layout");
    let attacks = [
        Request::Replica(ReplicaCall::Merge {
            key: key.clone(),
            object: SharedObject::new(object("forged")),
            durable: true,
            hint_for: None,
            made_at_ms: now_ms(),
        }),
        Request::Replica(ReplicaCall::Get { key: key.clone() }),
        Request::TreeLeaves { partition: key.partition(), branches: (0..64).collect() },
        Request::Hello(wire::Greeting {
            from: phantom,
            params: layout.params(),
            version: takeover.version(),
            digest: takeover.digest(),
            layout: Some(takeover),
            synced: 0,
        }),
    ];
    let refusals = || async {
        counter(&c, 0, "quorumkv_refusals_total{listener=\"peer\",reason=\"authentication\"}").await
    };
    let before = refusals().await;
    for attack in &attacks {
        let body = wire::encode(attack);
        for secret in [None, Some("a guessed secret of some length")] {
            match send_forged(&c, &body, secret).await {
                Response::Failed(e) => assert!(format!("{e:?}").contains("unauthenticated"), "{e:?}"),
                other => panic!("an unsigned or wrongly signed message must be refused, got {other:?}"),
            }
        }
    }
    // A message captured on the wire and sent again is refused too.
    let auth = PeerAuth::new(quorumkv_tests::TEST_SECRET.as_bytes());
    let (sealed, _) = auth.seal_request(&wire::encode(&attacks[0]));
    let member = c.network.endpoint("member");
    member.exchange("node-1", sealed.clone()).await.expect("the first delivery is served");
    let replayed = member.exchange("node-1", sealed).await.expect("an answer");
    assert!(matches!(wire::decode::<Response>(&replayed), Ok(Response::Failed(_))), "a replay is refused");
    assert_eq!(refusals().await - before, 9.0, "every refusal is counted");

    // Nothing changed: the value (the replayed merge was a concurrent sibling of it, merged
    // once), the layout, and every member's view of it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        let layout_now = c.node(i).cluster.layout().expect("a layout");
        assert_eq!(layout_now.digest(), layout.digest(), "node-{} kept its layout", i + 1);
        assert!(!layout_now.is_member(&NodeId::from("phantom")));
    }
    let got = c.get(1, "kept", 3).await.expect("r=all");
    assert!(values(got.as_ref()).contains(&"original".to_string()));
    c.stop_all().await;
}

fn object(value: &str) -> Object {
    let mut o = Object::new();
    o.update(&VersionVector::new(), Actor(99), Content::value("text/plain", value.to_string()))
        .expect("update");
    o
}

#[tokio::test]
async fn peer_messages_are_checked_like_client_input() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    // A bucket of 256 bytes: its length does not fit the stored length byte. The message
    // is built with a 255-byte bucket, then its length and bytes are made 256.
    let long = "b".repeat(255);
    let key =
        quorumkv_node::key::Key::new(64, Bytes::from(long.clone()), Bytes::from_static(b"k")).expect("key");
    let call = ReplicaCall::Merge {
        key,
        object: SharedObject::new(object("x")),
        durable: false,
        hint_for: None,
        made_at_ms: now_ms(),
    };
    let bytes = wire::encode(&Request::Replica(call));
    let needle: Vec<u8> = [&[0xff, 0x01][..], long.as_bytes()].concat();
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the bucket in the message");
    let forged = [&bytes[..at], &[0x80, 0x02], long.as_bytes(), b"b", &bytes[at + needle.len()..]].concat();
    match send_raw(&c, forged).await {
        Response::Failed(_) => {}
        other => panic!("a 256-byte bucket must be refused, got {other:?}"),
    }

    // A valid name filed under another partition than its own.
    let good = c.key("b", "k");
    let wrong = (good.partition() + 1) % 64;
    let misplaced = quorumkv_node::key::Key::new(64, good.bucket().clone(), good.key().clone()).expect("key");
    let mut bytes = wire::encode(&Request::Replica(ReplicaCall::Get { key: misplaced }));
    // The partition is the first field of the key, right after two enum tags.
    assert_eq!(bytes[3], good.partition() as u8);
    bytes[3] = wrong as u8;
    match send_raw(&c, bytes).await {
        Response::Replica(ReplicaAnswer::Failed(_)) => {}
        other => panic!("a key in the wrong partition must be refused, got {other:?}"),
    }

    // A forwarded write asking for w=0 or w>N.
    for w in [0, 4] {
        let req = Request::Coordinate {
            key: c.key("b", "k"),
            context: none(),
            content: Content::value("text/plain", "x"),
            w,
            dw: 0,
            sloppy: true,
            timeout_ms: 1000,
        };
        match send_raw(&c, wire::encode(&req)).await {
            Response::Failed(_) => {}
            other => panic!("w={w} must be refused, got {other:?}"),
        }
    }
    let figures = c.node(0).replicas.local().figures().await.expect("figures");
    assert_eq!(figures.approximate_objects, 0, "nothing was stored");
    // And the node serves on.
    c.put(0, "k", "fine", 3, false, &none()).await.expect("a normal write");
    c.stop_all().await;
}

/// A key (named `prefix` and a number) whose primaries are node-1, node-2 and node-3, in
/// that order.
fn key_replicated_by_the_first_three(c: &InProcess, prefix: &str) -> String {
    let ring = c.node(0).cluster.ring().expect("a layout");
    let first_three = [NodeId(name(0)), NodeId(name(1)), NodeId(name(2))];
    (0..)
        .map(|k| format!("{prefix}{k}"))
        .find(|k| ring.primaries(c.key("b", k).partition()) == first_three)
        .expect("a key whose primaries are node-1, node-2, node-3")
}

/// A key (named `prefix` and a number) that node `i` does not replicate.
fn key_not_replicated_by(c: &InProcess, i: usize, prefix: &str) -> String {
    let ring = c.node(0).cluster.ring().expect("a layout");
    let node = NodeId(name(i));
    (0..)
        .map(|k| format!("{prefix}{k}"))
        .find(|k| !ring.primaries(c.key("b", k).partition()).contains(&node))
        .expect("a key it does not replicate")
}

/// Deletes `key` through node `i` with `w`, superseding `context`.
async fn delete(
    c: &InProcess,
    i: usize,
    key: &str,
    context: &VersionVector,
    w: usize,
) -> Result<Object, Error> {
    let opts =
        quorumkv_node::coordinator::WriteOptions { w, dw: 0, sloppy: false, timeout: Duration::from_secs(2) };
    c.node(i).coordinator.put(c.key("b", key), context.clone(), Content::tombstone_now(), opts).await
}

/// How many keys node `i` holds for partitions it does not replicate (moving them out).
async fn strays(c: &InProcess, i: usize) -> u64 {
    c.node(i).stray.sweep().await.expect("sweep")
}

#[tokio::test]
async fn a_minority_restarted_inside_a_partition_keeps_the_layout_and_loses_no_acknowledged_write() {
    let mut c = InProcess::start(5, 3, |_| {}).await;
    c.network.partition(&["node-4", "node-5"], &["node-1", "node-2", "node-3"]);
    for i in [3, 4] {
        c.stop(i).await;
        c.restart(i).await;
    }
    // Restarted while cut off, each still places keys by the stored five-member layout.
    for i in [3, 4] {
        let ring = c.node(i).cluster.ring().expect("the stored layout");
        assert_eq!((ring.version(), ring.members().len()), (1, 5));
    }
    let mut acknowledged = Vec::new();
    for k in 0..60 {
        let key = format!("m{k}");
        if let Ok(obj) = c.put(3 + k % 2, &key, &format!("v{k}"), 2, true, &none()).await {
            acknowledged.push((key, obj));
        }
    }
    assert!(!acknowledged.is_empty(), "keys the minority replicates still take writes");
    assert!(acknowledged.len() < 60, "keys it does not replicate are refused, not acknowledged");
    c.network.heal();
    c.wait_all_up().await;
    for i in 0..5 {
        c.node(i).anti_entropy.trigger(None);
    }
    for (key, obj) in &acknowledged {
        let got = c.get(0, key, 3).await.expect("r=3");
        assert_eq!(values(got.as_ref()), values(Some(obj)), "{key} was acknowledged");
    }
    for i in 0..5 {
        assert_eq!(strays(&c, i).await, 0, "{} holds data it does not replicate", name(i));
    }
    c.stop_all().await;
}

#[tokio::test]
async fn restarting_every_node_at_once_strands_no_copy_and_deleted_keys_stay_deleted() {
    let fast = |cfg: &mut quorumkv_node::Config| {
        cfg.tombstone_grace_ms = 1;
        cfg.aae_interval_ms = 1000;
    };
    let mut c = InProcess::start(5, 3, fast).await;
    let mut contexts = Vec::new();
    for k in 0..50 {
        let obj = c.put(k % 5, &format!("d{k}"), "doomed", 3, false, &none()).await.expect("w=3");
        contexts.push(obj.context().clone());
    }
    for i in 0..5 {
        c.stop(i).await;
    }
    for i in 0..5 {
        c.restart(i).await;
    }
    c.wait_all_up().await;
    for i in 0..5 {
        assert_eq!(strays(&c, i).await, 0, "{} synced a partition it does not replicate", name(i));
    }
    for (k, ctx) in contexts.iter().enumerate() {
        delete(&c, 0, &format!("d{k}"), ctx, 3).await.expect("delete");
    }
    eventually("every replica reaped every tombstone", Duration::from_secs(60), || async {
        let mut reaped = 0.0;
        for i in 0..5 {
            reaped += counter(&c, i, "quorumkv_tombstones_reaped_total").await;
        }
        (reaped >= 150.0).then_some(())
    })
    .await;
    for k in 0..50 {
        for i in 0..5 {
            assert_eq!(c.get(i, &format!("d{k}"), 3).await.expect("r=3"), None, "d{k} came back");
        }
    }
    c.stop_all().await;
}

#[tokio::test]
async fn a_tombstone_is_not_reaped_while_a_replica_is_cut_off_even_across_restarts() {
    let mut c = InProcess::start(3, 3, |cfg| {
        cfg.hinted_handoff = false;
        cfg.tombstone_grace_ms = 1;
        cfg.aae_interval_ms = 3_600_000;
    })
    .await;
    let mut contexts = Vec::new();
    for k in 0..20 {
        contexts
            .push(c.put(0, &format!("t{k}"), "old", 3, false, &none()).await.expect("w=3").context().clone());
    }
    c.network.partition(&["node-3"], &["node-1", "node-2"]);
    // Restarted inside the majority, node-1 and node-2 still know node-3 replicates
    // every partition.
    for i in [0, 1] {
        c.stop(i).await;
        c.restart(i).await;
    }
    c.wait_state(0, 2, false).await;
    for (k, ctx) in contexts.iter().enumerate() {
        delete(&c, 0, &format!("t{k}"), ctx, 2).await.expect("delete with node-3 away");
    }
    for i in [0, 1] {
        let ae = &c.node(i).anti_entropy;
        ae.trigger(None);
        eventually("the exchanges ran", Duration::from_secs(30), || async {
            let status = quorumkv_node::worker::Worker::status(ae.as_ref());
            (status["queued"] == 0 && status["partitions"].as_object().is_some_and(|p| !p.is_empty()))
                .then_some(())
        })
        .await;
        assert_eq!(counter(&c, i, "quorumkv_tombstones_reaped_total").await, 0.0, "reaped with node-3 away");
    }
    assert!(c.local(0, "t0").await.is_some_and(|o| o.is_deleted()), "the tombstone is kept");
    c.network.heal();
    c.wait_all_up().await;
    c.node(0).anti_entropy.trigger(None);
    eventually("the tombstones reach node-3 and are reaped", Duration::from_secs(30), || async {
        for k in 0..20 {
            if c.local(2, &format!("t{k}")).await.is_some() || c.local(0, &format!("t{k}")).await.is_some() {
                // Each partition's first primary reaps it: keep every node exchanging.
                for i in 0..3 {
                    c.node(i).anti_entropy.trigger(None);
                }
                return None;
            }
        }
        Some(())
    })
    .await;
    for k in 0..20 {
        assert_eq!(c.get(1, &format!("t{k}"), 3).await.expect("r=3"), None, "t{k} came back");
    }
    c.stop_all().await;
}

#[tokio::test]
async fn a_copy_sent_to_a_non_replica_is_kept_for_the_owners_and_said_so() {
    let mut c = InProcess::start(4, 3, |_| {}).await;
    let ring = c.node(0).cluster.ring().expect("a layout");
    let outsider = NodeId(name(3));
    let key = key_not_replicated_by(&c, 3, "n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let call =
        quorumkv_node::replica::merge_call(c.key("b", &key), SharedObject::new(object("v")), false, now_ms());
    let answer = c.node(0).replicas.call(outsider.clone(), call, deadline).await.expect("an answer");
    assert_eq!(answer, ReplicaAnswer::NotOwner { layout_version: 1 });
    assert_eq!(c.local(3, &key).await, None, "kept as a hint, not as data");
    // The hints reach the owners.
    for i in 0..3 {
        if ring.primaries(c.key("b", &key).partition()).contains(&NodeId(name(i))) {
            eventually("the owner gets the copy", Duration::from_secs(20), || async {
                (values(c.local(i, &key).await.as_ref()) == ["v"]).then_some(())
            })
            .await;
        }
    }
    c.stop_all().await;
}

#[tokio::test]
async fn a_forwarded_write_that_reaches_a_non_replica_is_refused_and_numbers_nothing() {
    // A node that does not replicate a key holds none of its versions (or stale ones), so
    // it must not number the next one: it refuses, and stores nothing.
    let mut c = InProcess::start(4, 3, |_| {}).await;
    let outsider = NodeId(name(3));
    let key = key_not_replicated_by(&c, 3, "f");
    let req = Request::Coordinate {
        key: c.key("b", &key),
        context: none(),
        content: Content::value("text/plain", "x"),
        w: 2,
        dw: 0,
        sloppy: true,
        timeout_ms: 2000,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    match c.node(0).replicas.request(&outsider, &req, deadline).await {
        Err(Error::Unavailable(why)) => assert!(why.contains("not a replica"), "{why}"),
        other => panic!("a non-replica must refuse to coordinate, got {other:?}"),
    }
    assert_eq!(c.local(3, &key).await, None, "nothing stored");
    assert_eq!(c.node(3).replicas.local().hint_counts().await.expect("hints"), vec![], "nor kept as a hint");
    // Through the outsider, the write is forwarded to a replica and lands.
    c.put(3, &key, "landed", 2, false, &none()).await.expect("forwarded");
    assert_eq!(values(c.get(0, &key, 2).await.expect("read").as_ref()), ["landed"]);
    c.stop_all().await;
}

#[tokio::test]
async fn stray_data_is_never_served_and_is_dropped_as_a_hint_of_unknown_age() {
    let mut c = InProcess::start(4, 3, |_| {}).await;
    let outsider = NodeId(name(3));
    let key = key_not_replicated_by(&c, 3, "s");
    // A copy left in node-4's data by accident (an older layout, say).
    let local = c.node(3).replicas.local();
    local
        .merge(c.key("b", &key), object("stray"), quorumkv_storage::Durability::Journal)
        .await
        .expect("plant");
    // A read that asks node-4 does not get it from its data.
    let get = ReplicaCall::Get { key: c.key("b", &key) };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let answer = c.node(0).replicas.call(outsider, get, deadline).await.expect("an answer");
    // Holding no hint for it either, node-4 says it is not a replica of the key.
    assert_eq!(answer, ReplicaAnswer::NotOwner { layout_version: 1 }, "stray data is never served");
    assert_eq!(strays(&c, 3).await, 1);
    assert_eq!(c.local(3, &key).await, None);
    assert!(counter(&c, 3, "quorumkv_stray_keys_moved_total").await >= 1.0);
    // Stored data has no known age: as a hint it counts as older than the TTL, so it is
    // dropped, not handed over as if new (it could bring back a delete the owners have
    // reaped). The owners have their own copies from anti-entropy.
    assert_eq!(local.hint_counts().await.expect("counts"), vec![], "no hint kept for the stray");
    assert_eq!(counter(&c, 3, "quorumkv_hints_expired").await, 3.0, "one per owner");
    for i in 0..3 {
        assert_eq!(c.local(i, &key).await, None, "{} never got the stray copy", name(i));
    }
    c.stop_all().await;
}

#[tokio::test]
async fn the_layout_survives_restarts_and_a_late_node_learns_it_without_joining() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    let before = c.node(0).cluster.layout().expect("a layout");
    assert_eq!(before.version(), 1);
    for i in 1..3 {
        assert_eq!(c.node(i).cluster.layout().expect("a layout").digest(), before.digest(), "one version 1");
    }
    c.stop_all().await;
    for i in 0..3 {
        c.restart(i).await;
    }
    assert_eq!(c.node(2).cluster.layout().expect("stored").digest(), before.digest());
    let late = c.add(|_| {}).await;
    eventually("the late node learns the layout", Duration::from_secs(10), || async {
        c.node(late).cluster.layout().filter(|l| l.digest() == before.digest()).map(|_| ())
    })
    .await;
    let status = c.node(late).status_json().await;
    assert_eq!(status["layout"]["member"], false, "learning the layout is not joining it");
    // It coordinates nothing itself: its writes go to the replicas.
    c.put(late, "via-late", "v", 3, false, &none()).await.expect("forwarded");
    assert_eq!(c.local(late, "via-late").await, None);
    assert_eq!(values(c.get(late, "via-late", 3).await.expect("read").as_ref()), ["v"]);
    c.stop_all().await;
}

/// The index of the node named `node-N`.
fn index_of(node: &NodeId) -> usize {
    node.0.trim_start_matches("node-").parse::<usize>().expect("node-N") - 1
}

/// Waits until the running nodes agree on one layout, have synced every partition they
/// gained, delivered every hint, hold no stray data, and every partition's replicas have
/// the same Merkle root; then checks placement and every acknowledged write.
async fn settled(c: &InProcess, running: &[usize], acked: &[(String, String)]) {
    let first = c.node(running[0]).cluster.layout().expect("a layout");
    eventually("every node has the newest layout", Duration::from_secs(20), || async {
        let digests: Vec<u64> =
            running.iter().map(|&i| c.node(i).cluster.layout().map_or(0, |l| l.digest())).collect();
        let newest = running.iter().filter_map(|&i| c.node(i).cluster.layout()).map(|l| l.version()).max()?;
        (digests.windows(2).all(|w| w[0] == w[1]) && c.node(running[0]).cluster.layout()?.version() == newest)
            .then_some(())
    })
    .await;
    let layout = c.node(running[0]).cluster.layout().expect("a layout");
    assert!(layout.version() >= first.version());
    let ring = layout.ring().clone();
    eventually("transfers finished and replicas converged", Duration::from_secs(60), || async {
        for &i in running {
            c.node(i).anti_entropy.trigger(None);
        }
        for &i in running {
            let cluster = &c.node(i).cluster;
            if !cluster.syncing().is_empty() || cluster.previous_version().is_some() {
                return None;
            }
        }
        for &i in running {
            if c.hints_pending(i) > 0 || strays(c, i).await > 0 {
                return None;
            }
        }
        for p in 0..64 {
            let mut roots = Vec::new();
            for n in ring.primaries(p) {
                roots.push(c.node(index_of(n)).replicas.local().roots(vec![p]).await.ok()?);
            }
            if !roots.windows(2).all(|w| w[0] == w[1]) {
                return None;
            }
        }
        Some(())
    })
    .await;
    // N distinct replicas per partition, and primary slots as balanced as the claim says:
    // each member's share of the 192 slots in proportion to its capacity.
    let total: u32 = ring.members().iter().filter_map(|n| ring.weight(n)).sum();
    for n in ring.members() {
        let share = f64::from(64 * 3 * ring.weight(n).expect("a member")) / f64::from(total);
        let (lo, hi) = (share.floor() as usize, share.ceil() as usize);
        let owned = ring.partitions_of(n).len();
        assert!((lo..=hi).contains(&owned), "{n} holds {owned} partitions, expected {lo} to {hi}");
    }
    for p in 0..64 {
        let mut primaries = ring.primaries(p).to_vec();
        primaries.sort();
        primaries.dedup();
        assert_eq!(primaries.len(), 3, "partition {p}");
    }
    for (key, value) in acked {
        let got = c.get(running[0], key, 2).await.expect("r=quorum");
        assert_eq!(values(got.as_ref()), vec![value.clone()], "{key} was acknowledged");
    }
}

#[tokio::test]
async fn the_cluster_grows_shrinks_and_replaces_nodes_under_load_without_losing_a_write() {
    use quorumkv_node::cluster::StageOp;
    let mut c = InProcess::start(3, 3, |cfg| cfg.aae_interval_ms = 5_000).await;
    // Writers through node-1 and node-2 (which stay) for the whole test.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = {
        let (states, acked, stop) = (vec![c.node(0).clone(), c.node(1).clone()], acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let state = &states[(n % 2) as usize];
                let (key, value) = (format!("g{n}"), format!("v{n}"));
                let k = quorumkv_node::key::Key::new(
                    64,
                    Bytes::from(b"b".to_vec()),
                    Bytes::from(key.clone().into_bytes()),
                )
                .expect("key");
                let opts = quorumkv_node::coordinator::WriteOptions {
                    w: 2,
                    dw: 0,
                    sloppy: true,
                    timeout: Duration::from_secs(2),
                };
                let content = Content::value("text/plain", value.clone());
                if state.coordinator.put(k, none(), content, opts).await.is_ok() {
                    acked.lock().expect("lock").push((key, value));
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Readers through node-1 and node-2 too: an acknowledged write read back as missing
    // (a 404 rather than an error) at r=quorum is a lost write.
    let missing = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let readers = {
        let (states, acked, stop, missing) =
            (vec![c.node(0).clone(), c.node(1).clone()], acked.clone(), stop.clone(), missing.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let pick = {
                    let acked = acked.lock().expect("lock");
                    (!acked.is_empty()).then(|| acked[(n * 7919) % acked.len()].0.clone())
                };
                if let Some(key) = pick {
                    let k = quorumkv_node::key::Key::new(
                        64,
                        Bytes::from(b"b".to_vec()),
                        Bytes::from(key.clone().into_bytes()),
                    )
                    .expect("key");
                    let opts = quorumkv_node::coordinator::ReadOptions {
                        r: 2,
                        timeout: Duration::from_secs(2),
                        sloppy: true,
                    };
                    if let Ok(None) = states[n % 2].coordinator.get(k, opts).await {
                        missing.lock().expect("lock").push(key);
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    let snapshot = |acked: &std::sync::Mutex<Vec<(String, String)>>| acked.lock().expect("lock").clone();

    // Grow 3 -> 4 -> 5.
    for _ in 0..2 {
        let new = c.add(|_| {}).await;
        eventually("the new node has greeted a member", Duration::from_secs(10), || async {
            c.node(0).cluster.stage(StageOp::Join(NodeId(name(new)))).ok()
        })
        .await;
        let (_, plan) = c.node(0).cluster.plan();
        let (_, moves) = plan.expect("a plan");
        assert!(!moves.is_empty() && moves.len() < 64, "a join moves some partitions: {}", moves.len());
        c.node(0).cluster.commit().await.expect("commit");
        let running: Vec<usize> = (0..c.len()).collect();
        settled(&c, &running, &snapshot(&acked)).await;
    }
    // Shrink 5 -> 4: node-5 leaves, hands everything off, then may stop.
    c.node(0).cluster.stage(StageOp::Leave(NodeId(name(4)))).expect("stage leave");
    c.node(0).cluster.commit().await.expect("commit");
    eventually("node-5 may stop", Duration::from_secs(30), || async {
        (c.node(4).status_json().await["layout"]["may_stop"] == true).then_some(())
    })
    .await;
    c.stop(4).await;
    settled(&c, &[0, 1, 2, 3], &snapshot(&acked)).await;
    // node-4 dies and is removed.
    c.stop(3).await;
    c.wait_state(0, 3, false).await;
    let refused = c.node(0).cluster.stage(StageOp::Leave(NodeId(name(3))));
    assert!(refused.is_err(), "a dead node cannot leave: it is removed");
    c.node(0).cluster.stage(StageOp::Remove(NodeId(name(3)))).expect("stage remove");
    c.node(0).cluster.commit().await.expect("commit");
    settled(&c, &[0, 1, 2], &snapshot(&acked)).await;
    // node-3 dies; a new node-6 replaces it.
    c.stop(2).await;
    c.wait_state(0, 2, false).await;
    let replacement = c.add(|_| {}).await;
    eventually("the replacement has greeted a member", Duration::from_secs(10), || async {
        c.node(0).cluster.stage(StageOp::Replace(NodeId(name(2)), NodeId(name(replacement)))).ok()
    })
    .await;
    c.node(0).cluster.commit().await.expect("commit");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writers.await.expect("writers");
    let reads = readers.await.expect("readers");
    assert!(reads > 100, "the readers kept going: {reads}");
    assert_eq!(*missing.lock().expect("lock"), Vec::<String>::new(), "acknowledged writes read as missing");
    let acked = snapshot(&acked);
    assert!(acked.len() > 100, "the writers kept going: {}", acked.len());
    settled(&c, &[0, 1, replacement], &acked).await;
    // A change that would leave fewer than N members is refused.
    let e = c.node(0).cluster.stage(StageOp::Leave(NodeId(name(1)))).expect_err("fewer than N");
    assert!(e.to_string().contains("fewer than N"), "{e}");
    c.stop_all().await;
}

#[tokio::test]
async fn a_node_that_left_and_rejoined_never_reuses_a_version_it_handed_off() {
    // node-4 coordinates versions of keys it replicates, leaves (handing them to the new
    // owners and deleting its copies), joins again, and takes blind writes of the same
    // keys at once, before anti-entropy has given its data back. Numbering from its
    // empty store would reuse the dots of the versions it handed off; the other replicas
    // would take the new writes for versions they already hold and drop them.
    use quorumkv_node::cluster::StageOp;
    let mut c = InProcess::start(4, 3, |cfg| cfg.aae_interval_ms = 3_600_000).await;
    let me = NodeId(name(3));
    let ring = c.node(0).cluster.ring().expect("a layout");
    let keys: Vec<String> = (0..)
        .map(|k| format!("r{k}"))
        .filter(|k| ring.primaries(c.key("b", k).partition()).contains(&me))
        .take(40)
        .collect();
    for k in &keys {
        let first = c.put(3, k, "v1", 3, false, &none()).await.expect("v1");
        c.put(3, k, "v2", 3, false, first.context()).await.expect("v2");
    }
    c.node(0).cluster.stage(StageOp::Leave(me.clone())).expect("stage leave");
    c.node(0).cluster.commit().await.expect("commit");
    eventually("node-4 handed everything off", Duration::from_secs(30), || async {
        for i in 0..3 {
            c.node(i).anti_entropy.trigger(None);
        }
        let _ = strays(&c, 3).await;
        for k in &keys {
            if c.local(3, k).await.is_some() {
                return None;
            }
        }
        c.node(3).cluster.previous_version().is_none().then_some(())
    })
    .await;
    c.node(0).cluster.stage(StageOp::Join(me.clone())).expect("stage join");
    c.node(0).cluster.commit().await.expect("commit");
    eventually("node-4 has the layout that gives it partitions again", Duration::from_secs(10), || async {
        c.node(3).cluster.ring().ok()?.partitions_of(&me).is_empty().then_some(()).xor(Some(()))
    })
    .await;
    let ring = c.node(3).cluster.ring().expect("a layout");
    let mine: Vec<&String> =
        keys.iter().filter(|k| ring.primaries(c.key("b", k).partition()).contains(&me)).collect();
    assert!(!mine.is_empty(), "node-4 replicates some of the keys again");
    for k in &mine {
        c.put(3, k, "y", 2, true, &none()).await.expect("a blind write through node-4");
    }
    for k in &mine {
        eventually(&format!("{k} holds v2 and y everywhere"), Duration::from_secs(30), || async {
            for i in 0..4 {
                c.node(i).anti_entropy.trigger(None);
            }
            let mut got = values(c.get(0, k, 3).await.ok()?.as_ref());
            got.sort();
            (got == ["v2", "y"]).then_some(())
        })
        .await;
    }
    assert_eq!(counter(&c, 3, "quorumkv_actor_renewals").await, 1.0, "one new actor, not one per key");
    c.stop_all().await;
}

/// The distinct zones among each partition's replicas.
fn zone_spread(ring: &quorumkv_ring::Ring) -> Vec<usize> {
    (0..64)
        .map(|p| {
            let mut zones: Vec<Option<&str>> = ring.primaries(p).iter().map(|n| ring.zone(n)).collect();
            zones.sort_unstable();
            zones.dedup();
            zones.len()
        })
        .collect()
}

#[tokio::test]
async fn each_nodes_capacity_and_zone_shape_the_layout_and_a_join() {
    use quorumkv_node::cluster::StageOp;
    // Six nodes in two zones; node-1 has twice the capacity of the others.
    let mut c = InProcess::start(6, 3, |c| {
        let i = index_of(&NodeId(c.node_id.clone().expect("an id")));
        c.zone = Some(if i.is_multiple_of(2) { "zone-a" } else { "zone-b" }.into());
        c.capacity = if i == 0 { 2 } else { 1 };
    })
    .await;
    let layout = c.node(3).cluster.layout().expect("a layout");
    let ring = layout.ring();
    assert_eq!(ring.weight(&NodeId(name(0))), Some(2));
    assert_eq!(ring.zone(&NodeId(name(1))), Some("zone-b"));
    assert!(zone_spread(ring).iter().all(|&z| z == 2), "every partition has copies in both zones");
    // 192 slots, weights 2+1+1+1+1+1: node-1 holds 2/7 of them, the others 1/7.
    assert!((54..=55).contains(&ring.partitions_of(&NodeId(name(0))).len()));
    assert!((1..6).all(|i| (27..=28).contains(&ring.partitions_of(&NodeId(name(i))).len())));
    let status = c.node(0).status_json().await;
    let me =
        status["members"].as_array().expect("members").iter().find(|m| m["node_id"] == "node-1").cloned();
    assert_eq!(me.map(|m| (m["capacity"].clone(), m["zone"].clone())), Some((2.into(), "zone-a".into())));

    let mut acked = Vec::new();
    for i in 0..50 {
        let (key, value) = (format!("z{i}"), format!("v{i}"));
        c.put(i % 6, &key, &value, 2, true, &none()).await.expect("w=2");
        acked.push((key, value));
    }
    // A node of capacity 3 joins zone-b: it takes 3/10 of the slots, and the spread holds.
    let new = c
        .add(|c| {
            c.capacity = 3;
            c.zone = Some("zone-b".into());
        })
        .await;
    eventually("the new node has greeted a member", Duration::from_secs(10), || async {
        c.node(0).cluster.stage(StageOp::Join(NodeId(name(new)))).ok()
    })
    .await;
    c.node(0).cluster.commit().await.expect("commit");
    settled(&c, &(0..=new).collect::<Vec<_>>(), &acked).await;
    let ring = c.node(new).cluster.layout().expect("a layout").ring().clone();
    assert!((57..=58).contains(&ring.partitions_of(&NodeId(name(new))).len()));
    assert!(zone_spread(&ring).iter().all(|&z| z == 2));
    c.stop_all().await;
}

#[tokio::test]
async fn a_node_that_missed_a_layout_change_still_serves_and_catches_up() {
    use quorumkv_node::cluster::StageOp;
    let mut c = InProcess::start(3, 3, |_| {}).await;
    let new = c.add(|_| {}).await;
    // node-3 hears nothing from anyone for a while: it misses the gossip of version 2.
    c.network.partition(&["node-3"], &["node-1", "node-2", "node-4"]);
    eventually("node-4 greeted a member", Duration::from_secs(10), || async {
        c.node(0).cluster.stage(StageOp::Join(NodeId(name(new)))).ok()
    })
    .await;
    c.node(0).cluster.commit().await.expect("commit");
    eventually("node-2 has version 2", Duration::from_secs(10), || async {
        (c.node(1).cluster.layout()?.version() == 2).then_some(())
    })
    .await;
    assert_eq!(c.node(2).cluster.layout().expect("a layout").version(), 1, "node-3 missed it");
    c.network.heal();
    // Writes through the node on the old version, and through the others, succeed.
    for k in 0..20 {
        c.put(2, &format!("o{k}"), "old-view", 2, true, &none()).await.expect("through node-3");
        c.put(k % 2, &format!("n{k}"), "new-view", 2, true, &none()).await.expect("through node-1/2");
    }
    eventually("node-3 takes version 2", Duration::from_secs(10), || async {
        (c.node(2).cluster.layout()?.version() == 2).then_some(())
    })
    .await;
    settled(&c, &[0, 1, 2, new], &[]).await;
    for k in 0..20 {
        assert_eq!(values(c.get(new, &format!("o{k}"), 2).await.expect("read").as_ref()), ["old-view"]);
    }
    c.stop_all().await;
}

/// Starts a new node, slows every link to it (so its transfer takes a while), joins it
/// through node-1 and commits; returns its index.
async fn join_over_slow_links(c: &mut InProcess) -> usize {
    use quorumkv_node::cluster::StageOp;
    let new = c.add(|_| {}).await;
    for i in 0..new {
        c.network.delay(&name(i), &name(new), Duration::from_millis(15));
    }
    eventually("the new node greeted a member", Duration::from_secs(10), || async {
        c.node(0).cluster.stage(StageOp::Join(NodeId(name(new)))).ok()
    })
    .await;
    c.node(0).cluster.commit().await.expect("commit");
    new
}

#[tokio::test]
async fn a_transfer_interrupted_by_a_restart_resumes_where_it_was() {
    let mut c = InProcess::start(3, 3, |cfg| cfg.aae_interval_ms = 3_600_000).await;
    let mut acked = Vec::new();
    for k in 0..600 {
        let (key, value) = (format!("r{k}"), format!("v{k}"));
        c.put(k % 3, &key, &value, 3, false, &none()).await.expect("w=3");
        acked.push((key, value));
    }
    let new = join_over_slow_links(&mut c).await;
    let gained = eventually("node-4 starts syncing", Duration::from_secs(10), || async {
        Some(c.node(new).cluster.syncing()).filter(|s| !s.is_empty())
    })
    .await;
    eventually("part of the transfer is done", Duration::from_secs(30), || async {
        let left = c.node(new).cluster.syncing().len();
        (left > 0 && left < gained.len()).then_some(())
    })
    .await;
    c.stop(new).await;
    c.restart(new).await;
    let left = c.node(new).cluster.syncing();
    assert!(
        !left.is_empty() && left.len() < gained.len(),
        "resumed with {} of {} left",
        left.len(),
        gained.len()
    );
    assert!(left.iter().all(|p| gained.contains(p)), "only partitions it gained");
    c.network.heal();
    settled(&c, &[0, 1, 2, new], &acked).await;
    c.stop_all().await;
}

#[tokio::test]
async fn while_a_partition_moves_writes_reach_both_replica_sets_and_reads_the_old_one() {
    let mut c = InProcess::start(3, 3, |cfg| cfg.aae_interval_ms = 3_600_000).await;
    for k in 0..300 {
        c.put(k % 3, &format!("p{k}"), "before", 3, false, &none()).await.expect("w=3");
    }
    let new = join_over_slow_links(&mut c).await;
    eventually("every node sees the move", Duration::from_secs(10), || async {
        (0..=new).all(|i| c.node(i).cluster.previous_version() == Some(1)).then_some(())
    })
    .await;
    let old = c.node(0).cluster.previous_ring().expect("the previous layout is live");
    let current = c.node(0).cluster.ring().expect("a layout");
    let moving: Vec<u32> = (0..64).filter(|p| c.node(0).cluster.is_moving(*p)).collect();
    assert!(!moving.is_empty());
    let mut checked = 0;
    for k in 0..300 {
        let key = format!("p{k}");
        let p = c.key("b", &key).partition();
        if !moving.contains(&p) || !c.node(new).cluster.is_syncing(p) {
            continue;
        }
        // A read of a moving partition is answered by the old replicas.
        assert_eq!(values(c.get(1, &key, 2).await.expect("read during the move").as_ref()), ["before"]);
        // A write is acknowledged by w=2 of the old replicas and w=2 of the new ones.
        let coordinator = index_of(&current.primaries(p)[0]);
        c.put(coordinator, &key, "during", 2, false, &none()).await.expect("w=2 in both sets");
        let mut in_old = 0;
        for n in old.primaries(p) {
            in_old += usize::from(
                values(c.local(index_of(n), &key).await.as_ref()).contains(&"during".to_string()),
            );
        }
        let mut in_new = 0;
        for n in current.primaries(p) {
            in_new += usize::from(
                values(c.local(index_of(n), &key).await.as_ref()).contains(&"during".to_string()),
            );
        }
        assert!(in_old >= 2 && in_new >= 2, "{key}: {in_old} old and {in_new} new replicas hold it");
        checked += 1;
        if checked == 10 {
            break;
        }
    }
    assert!(checked > 0, "some keys were written while their partition moved");
    c.network.heal();
    settled(&c, &[0, 1, 2, new], &[]).await;
    for i in 0..=new {
        assert_eq!(c.node(i).cluster.previous_version(), None, "version 1 is retired on {}", name(i));
    }
    c.stop_all().await;
}

#[tokio::test]
async fn two_layouts_of_one_version_are_a_conflict_that_is_reported_not_mixed() {
    use quorumkv_node::layout::Change;
    use quorumkv_node::layout::MemberInfo;
    let mut c = InProcess::start(3, 3, |_| {}).await;
    let v1 = c.node(0).cluster.layout().expect("a layout");
    let stranger = |id: &str| MemberInfo {
        node_id: NodeId::from(id),
        incarnation: 1,
        peer_addr: id.to_string(),
        api_addr: id.to_string(),
        capacity: 1,
        zone: None,
    };
    // Two operators commit different changes through different nodes at once.
    let a = v1.apply(&[Change::Join { node: stranger("x") }]).expect("a");
    let b = v1.apply(&[Change::Join { node: stranger("y") }]).expect("b");
    assert_eq!(a.version(), b.version());
    c.node(0).cluster.offer(a.clone()).await.expect("node-1 takes a");
    c.node(1).cluster.offer(b.clone()).await.expect("node-2 takes b");
    eventually("the conflict is reported", Duration::from_secs(20), || async {
        let s0 = c.node(0).status_json().await;
        let s1 = c.node(1).status_json().await;
        (s0["layout"]["conflict"].is_string() || s1["layout"]["conflict"].is_string()).then_some(())
    })
    .await;
    // Neither node took the other's layout.
    assert_eq!(c.node(0).cluster.layout().expect("layout").digest(), a.digest());
    assert_eq!(c.node(1).cluster.layout().expect("layout").digest(), b.digest());
    // The operator settles it: a commit with nothing staged on node-2 makes b's layout
    // the next version, which every node takes, node-1 included.
    eventually("node-2 has seen the conflict", Duration::from_secs(20), || async {
        c.node(1).status_json().await["layout"]["conflict"].is_string().then_some(())
    })
    .await;
    let version = c.node(1).cluster.commit().await.expect("the commit resolves the conflict");
    assert_eq!(version, b.version() + 1);
    eventually("every node holds the winning layout, with no conflict", Duration::from_secs(20), || async {
        for i in 0..3 {
            let layout = c.node(i).cluster.layout()?;
            let status = c.node(i).status_json().await;
            if layout.version() != version
                || !layout.is_member(&NodeId::from("y"))
                || !status["layout"]["conflict"].is_null()
            {
                return None;
            }
        }
        Some(())
    })
    .await;
    c.stop_all().await;
}

/// A member that says it holds another layout version is named in node-1's warnings
/// until its next word agrees (here at once: node-1 asks it for the newer layout, and its
/// answer carries the version it really holds).
#[tokio::test]
async fn status_warns_while_members_disagree_on_the_layout_version() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    let warnings = |c: &InProcess| {
        let node = c.node(0).clone();
        async move { node.status_json().await["warnings"].to_string() }
    };
    eventually("node-1 hears every member's version", Duration::from_secs(10), || async {
        let status = c.node(0).status_json().await;
        let versions: Vec<_> =
            status["members"].as_array()?.iter().map(|m| m["layout_version"].as_u64()).collect();
        (versions == [Some(1), Some(1), Some(1)]).then_some(())
    })
    .await;
    let before = warnings(&c).await;
    assert!(!before.contains("disagree"), "{before}");
    // node-2's greeting, claiming a version it does not hold.
    let node2 = &c.node(1).cluster;
    let claim = wire::Greeting {
        from: node2.me().clone(),
        params: node2.params(),
        version: 7,
        digest: 1,
        layout: None,
        synced: 1,
    };
    assert!(matches!(send_raw(&c, wire::encode(&Request::Hello(claim))).await, Response::Hello(_)));
    let said = warnings(&c).await;
    assert!(said.contains("disagree") && said.contains("node-2 has 7"), "{said}");
    eventually("node-2's next word settles it", Duration::from_secs(10), || async {
        (!warnings(&c).await.contains("disagree")).then_some(())
    })
    .await;
    c.stop_all().await;
}
