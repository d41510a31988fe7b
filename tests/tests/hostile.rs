//! Hostile clients against real node processes: every attack of issue 11 that goes
//! through the client API, refused with a clear error and losing nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use quorumkv_tests::{Cluster, Http, Reply};

fn error_code(r: &Reply) -> String {
    assert_eq!(r.header("content-type"), Some("application/json"), "errors are JSON: {r:?}");
    r.json()["error"].as_str().expect("error code").to_string()
}

/// A context token in the token layout, for `count` actors at `counter`, with a tag made
/// up (an attacker does not have the cluster secret) or, for format 1, a CRC as the old
/// tokens had.
fn forged_token(format: u8, count: u64, counter: u64) -> String {
    let varint = |buf: &mut Vec<u8>, mut v: u64| {
        while v >= 0x80 {
            buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    };
    let mut buf = vec![format];
    varint(&mut buf, count);
    for actor in 0..count {
        buf.extend_from_slice(&actor.to_le_bytes());
        varint(&mut buf, counter);
    }
    if format == 1 {
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
    } else {
        buf.extend_from_slice(&[0x5a; 16]);
    }
    URL_SAFE_NO_PAD.encode(buf)
}

#[tokio::test]
async fn forged_altered_and_foreign_context_tokens_are_refused_and_lose_nothing() {
    let c = Cluster::start(3, 3, &[]).await;
    let http = Http::new();
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let a = n1.kv("t", "a", "w=all");
    let b = n1.kv("t", "b", "w=all");
    assert_eq!(http.put(&a, &[], "value-a").await.status, 204);
    assert_eq!(http.put(&b, &[], "value-b").await.status, 204);
    let token_a = http.get(&n1.kv("t", "a", "")).await.context().expect("a context").to_string();

    let mut attempts = vec![
        ("the largest counter", forged_token(2, 1, u64::MAX)),
        ("the old checksummed format", forged_token(1, 1, u64::MAX)),
        ("4,096 invented actors", forged_token(2, 4096, 1)),
        ("another key's token", token_a.clone()),
    ];
    let mut altered = URL_SAFE_NO_PAD.decode(&token_a).expect("base64url");
    altered[2] ^= 1;
    attempts.push(("an altered token", URL_SAFE_NO_PAD.encode(altered)));
    for (what, token) in &attempts {
        for url in [&b, &n2.kv("t", "b", "w=all")] {
            let r = http.put(url, &[("x-causal-context", token)], "forged").await;
            assert_eq!(r.status, 400, "{what}: {r:?}");
            assert_eq!(error_code(&r), "invalid_context", "{what}");
            let r = http.delete(url, &[("x-causal-context", token)]).await;
            assert_eq!(r.status, 400, "{what} on a delete: {r:?}");
        }
    }
    // b is untouched on every replica, and the token a node issued works on every node.
    for n in &c.nodes {
        let r = http.get(&n.kv("t", "b", "local=true")).await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "value-b".to_string()), "{}", n.name);
    }
    let r = http.put(&n2.kv("t", "a", "w=all"), &[("x-causal-context", &token_a)], "a2").await;
    assert_eq!(r.status, 204, "a token from node-1 is good on node-2: {r:?}");
    let r = http.get(&c.nodes[2].kv("t", "a", "r=all")).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "a2".to_string()), "the write superseded a, no sibling");
    // Writes to b through every node still land.
    for n in &c.nodes {
        let token = http.get(&n.kv("t", "b", "")).await.context().expect("context").to_string();
        let r = http
            .put(&n.kv("t", "b", "w=all"), &[("x-causal-context", &token)], format!("by {}", n.name))
            .await;
        assert_eq!(r.status, 204, "{r:?}");
        let r = http.get(&c.nodes[0].kv("t", "b", "r=all")).await;
        assert_eq!(r.text(), format!("by {}", n.name));
    }
}
