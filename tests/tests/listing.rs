//! Key listing over real nodes (in one process, links cut by the test): byte order
//! across partitions, pages, prefixes, deletes, and what a listing promises when
//! replicas missed writes or are away.

use std::time::Duration;

use bytes::Bytes;
use quorumkv_node::Error;
use quorumkv_node::coordinator::WriteOptions;
use quorumkv_node::listing::{self, ListFrom, ListRequest, ListedPart, Page};
use quorumkv_node::peer::wire::{self, Request, Response};
use quorumkv_node::peer::{PeerAuth, Transport};
use quorumkv_storage::{Content, VersionVector};
use quorumkv_tests::in_process::InProcess;

fn request(limit: usize, r: usize) -> ListRequest {
    ListRequest {
        bucket: Bytes::from_static(b"b"),
        prefix: Bytes::new(),
        after: None,
        limit,
        r,
        timeout: Duration::from_secs(5),
    }
}

/// Every page of a listing through node `i`, concatenated; and how many pages it took.
async fn list_all(c: &InProcess, i: usize, mut req: ListRequest) -> Result<(Vec<Bytes>, usize), Error> {
    let mut keys = Vec::new();
    let mut pages = 0;
    loop {
        let Page { keys: page, next } = listing::page(c.node(i), &req).await?;
        pages += 1;
        assert!(page.len() <= req.limit);
        keys.extend(page);
        match next {
            Some(cursor) => req.after = Some(cursor),
            None => return Ok((keys, pages)),
        }
    }
}

/// w=2, strict: what every write of these tests waits for.
fn w2() -> WriteOptions {
    WriteOptions { w: 2, dw: 0, sloppy: false, timeout: Duration::from_secs(2) }
}

/// Deletes `key` (bucket `b`) through node `i`, superseding what a quorum read finds.
async fn delete(c: &InProcess, i: usize, key: &str) {
    let obj = c.get(0, key, 2).await.expect("read").expect("present");
    let delete =
        c.node(i).coordinator.put(c.key("b", key), obj.context().clone(), Content::tombstone_now(), w2());
    delete.await.expect("delete");
}

fn names(keys: &[Bytes]) -> Vec<String> {
    keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect()
}

#[tokio::test]
async fn a_bucket_is_listed_in_byte_order_page_by_page_without_its_deleted_keys() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    let mut expected: Vec<String> = (0..200).map(|k| format!("k{k:03}")).collect();
    for k in &expected {
        c.put(k.len() % 3, k, "v", 2, false, &VersionVector::new()).await.expect("write");
    }
    // Another bucket, and a bucket whose name extends this one's, never show.
    for bucket in ["a", "bb"] {
        let content = Content::value("text/plain", Bytes::from_static(b"x"));
        c.node(0)
            .coordinator
            .put(c.key(bucket, "k050"), VersionVector::new(), content, w2())
            .await
            .expect("write");
    }
    // Deleted keys are not listed.
    for k in ["k007", "k100", "k199"] {
        delete(&c, 1, k).await;
        expected.retain(|e| e != k);
    }
    for (through, limit) in [(0, 1000), (1, 7), (2, 1)] {
        let (keys, pages) = list_all(&c, through, request(limit, 2)).await.expect("list");
        assert_eq!(names(&keys), expected, "through node {through}, {limit} a page");
        // A full last page may be followed by an empty one that says it is the last.
        let full = expected.len().div_ceil(limit);
        assert!((full..=full + 1).contains(&pages), "{pages} pages of {limit}");
    }
    let mut req = request(1000, 2);
    req.prefix = Bytes::from_static(b"k19");
    req.after = Some(Bytes::from_static(b"k192"));
    let page = listing::page(c.node(0), &req).await.expect("list");
    assert_eq!(names(&page.keys), ["k193", "k194", "k195", "k196", "k197", "k198"]);
    assert_eq!(page.next, None, "the last page says so");
    c.stop_all().await;
}

#[tokio::test]
async fn writes_a_replica_missed_are_listed_and_deletes_it_missed_are_not() {
    let mut c = InProcess::start(3, 3, |cfg| {
        cfg.hinted_handoff = false;
        cfg.aae_interval_ms = 3_600_000;
    })
    .await;
    let none = VersionVector::new();
    for k in ["gone", "stays"] {
        c.put(0, k, "v", 3, false, &none).await.expect("w=3");
    }
    c.network.partition(&["node-3"], &["node-1", "node-2"]);
    c.wait_state(0, 2, false).await;
    let new: Vec<String> = (0..50).map(|k| format!("new{k:02}")).collect();
    for k in &new {
        c.put(0, k, "v", 2, false, &none).await.expect("w=2 without node-3");
    }
    delete(&c, 0, "gone").await;
    c.network.heal();
    c.wait_state(2, 0, true).await;
    assert_eq!(c.local(2, "new00").await, None, "node-3 missed the writes");

    // Through node-3, whose own replica lacks the new keys and still holds "gone".
    let mut expected = new.clone();
    expected.push("stays".into());
    let (keys, _) = list_all(&c, 2, request(10, 2)).await.expect("list");
    assert_eq!(names(&keys), expected);

    // With node-3 cut off again, node-1 cannot reach r=3 of any partition: refused,
    // naming a partition; r=2 still lists everything.
    c.network.partition(&["node-3"], &["node-1", "node-2"]);
    c.wait_state(0, 2, false).await;
    let e = listing::page(c.node(0), &request(10, 3)).await.expect_err("r=3 with one replica away");
    assert!(
        matches!(&e, Error::Unavailable(why) if why.contains("partition") && why.contains("of r=3")),
        "{e:?}"
    );
    let (keys, _) = list_all(&c, 0, request(1000, 2)).await.expect("r=2");
    assert_eq!(names(&keys), expected);
    c.stop_all().await;
}

/// Sends a listing request to node-1 signed as a member, and decodes the answer.
async fn ask_node_1(c: &InProcess, request: &Request) -> Response {
    let auth = PeerAuth::new(quorumkv_tests::TEST_SECRET.as_bytes());
    let (sealed, to) = auth.seal_request(&wire::encode(request));
    let answer = c.network.endpoint("member").exchange("node-1", sealed).await.expect("an answer");
    wire::decode(&auth.open_answer(to, &answer).expect("a signed answer")).expect("decodable")
}

#[tokio::test]
async fn a_peers_listing_request_is_checked_like_a_clients() {
    let mut c = InProcess::start(3, 3, |_| {}).await;
    c.put(0, "k", "v", 3, false, &VersionVector::new()).await.expect("write");
    let partition = c.key("b", "k").partition();
    let from = |partition, after: Option<&'static [u8]>| ListFrom {
        partition,
        after: after.map(Bytes::from_static),
    };
    let list = |bucket: &'static [u8], prefix: Vec<u8>, parts: Vec<ListFrom>, limit: u32| Request::ListKeys {
        bucket: Bytes::from_static(bucket),
        prefix: prefix.into(),
        parts,
        limit,
    };
    let refused = [
        list(b"a/b", vec![], vec![from(0, None)], 10),
        list(b"", vec![], vec![from(0, None)], 10),
        list(b"b", vec![b'p'; 1025], vec![from(0, None)], 10),
        list(b"b", vec![], vec![from(0, Some(b""))], 10),
        list(b"b", vec![], vec![from(64, None)], 10),
        list(b"b", vec![], vec![from(0, None)], 0),
        list(b"b", vec![], vec![from(0, None)], 1_000_000),
        list(b"b", vec![], (0..65).map(|_| from(0, None)).collect(), 10),
    ];
    for request in &refused {
        assert!(matches!(ask_node_1(&c, request).await, Response::Failed(_)), "{request:?}");
    }
    let Response::Listed(parts) = ask_node_1(&c, &list(b"b", vec![], vec![from(partition, None)], 10)).await
    else {
        panic!("a valid request is served");
    };
    let [ListedPart::Keys { keys, more: false }] = parts.as_slice() else { panic!("one chunk: {parts:?}") };
    assert_eq!(keys.iter().map(|k| k.key.clone()).collect::<Vec<_>>(), [Bytes::from_static(b"k")]);
    assert!(keys[0].shape.is_live() && keys[0].shape.value_bytes() == 0, "a shape, not the value");
    c.stop_all().await;
}
