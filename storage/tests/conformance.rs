//! Storage conformance: what every store must do, checked on a real fjall directory.

use std::sync::Arc;

use quorumkv_storage::{Actor, Content, Durability, Error, ObjectKey, Removal, Store, VersionVector};

const BUCKET: &[u8] = b"users";

fn key(k: &str) -> ObjectKey<'_> {
    ObjectKey { partition: 7, bucket: BUCKET, key: k.as_bytes() }
}

fn put(
    store: &Store,
    k: &str,
    ctx: &VersionVector,
    content: Content,
    durability: Durability,
) -> VersionVector {
    let (obj, _) = store.update(key(k), durability, |obj| obj.update(ctx, Actor(1), content)).expect("write");
    obj.context().clone()
}

fn text(s: &str) -> Content {
    Content::value("text/plain", s.as_bytes().to_vec())
}

#[test]
fn put_get_delete_and_tombstone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    assert_eq!(store.get(key("a")).expect("get"), None);

    let ctx = put(&store, "a", &VersionVector::new(), text("one"), Durability::Journal);
    let obj = store.get(key("a")).expect("get").expect("present");
    assert_eq!(obj.live(), vec![&text("one")]);

    put(&store, "a", &ctx, Content::tombstone_now(), Durability::Journal);
    let obj = store.get(key("a")).expect("get").expect("tombstone kept");
    assert!(obj.is_deleted());
    assert!(obj.live().is_empty());
    assert!(!obj.context().is_empty(), "a tombstone keeps its context");

    // Other keys and partitions are untouched.
    assert_eq!(store.get(ObjectKey { partition: 8, ..key("a") }).expect("get"), None);
    assert_eq!(store.get(ObjectKey { bucket: b"other", ..key("a") }).expect("get"), None);
}

#[test]
fn a_key_the_layout_cannot_hold_is_refused_and_aliases_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    // 256 bytes of bucket: its length would not fit the length byte. Truncated to 0 it
    // would alias bucket "" + key "bbbb…"; the write must fail instead.
    let long = vec![b'b'; 256];
    let bad = ObjectKey { partition: 7, bucket: &long, key: b"k" };
    let incoming = {
        let mut o = quorumkv_storage::Object::new();
        o.update(&VersionVector::new(), Actor(1), text("x")).expect("update");
        o
    };
    assert!(matches!(store.merge(bad, &incoming, Durability::Journal), Err(Error::InvalidKey(_))));
    assert!(matches!(store.put_hint("node-2", bad, &incoming), Err(Error::InvalidKey(_))));
    let empty = ObjectKey { partition: 7, bucket: b"", key: b"k" };
    assert!(matches!(store.merge(empty, &incoming, Durability::Journal), Err(Error::InvalidKey(_))));
    assert!(matches!(store.put_hint(&"n".repeat(256), key("a"), &incoming), Err(Error::InvalidKey(_))));
    assert_eq!(store.approximate_objects(), 0, "nothing was stored");
    // 255 bytes is the longest bucket, and it works.
    let longest = vec![b'b'; 255];
    let ok = ObjectKey { partition: 7, bucket: &longest, key: b"k" };
    store.merge(ok, &incoming, Durability::Journal).expect("a 255-byte bucket is fine");
    assert_eq!(store.get(ok).expect("get"), Some(incoming));
}

#[test]
fn restart_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        for i in 0..100 {
            put(&store, &format!("k{i}"), &VersionVector::new(), text(&format!("v{i}")), Durability::Journal);
        }
        store.meta_put("incarnation", b"42").expect("meta");
    }
    let store = Store::open(dir.path()).expect("reopen");
    for i in 0..100 {
        let obj = store.get(key(&format!("k{i}"))).expect("get").expect("present after restart");
        assert_eq!(obj.live(), vec![&text(&format!("v{i}"))]);
    }
    assert_eq!(store.meta_get("incarnation").expect("meta").as_deref(), Some(&b"42"[..]));
}

#[test]
fn a_flipped_byte_on_disk_is_caught_as_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        put(&store, "victim", &VersionVector::new(), text("precious"), Durability::Synced);
        put(&store, "bystander", &VersionVector::new(), text("fine"), Durability::Synced);
        let mut raw = store.raw_get(key("victim")).expect("raw").expect("present");
        let last = raw.len() - 1;
        raw[last] ^= 0x20;
        store.raw_put(key("victim"), &raw).expect("raw put");
    }
    let store = Store::open(dir.path()).expect("reopen");
    match store.get(key("victim")) {
        Err(Error::Corrupt { partition: 7, key, .. }) => assert_eq!(key, b"victim"),
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(store.stats().corrupt_records.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(store.get(key("bystander")).expect("other keys unaffected").is_some());

    // A write (repair) over a corrupt record replaces it.
    put(&store, "victim", &VersionVector::new(), text("repaired"), Durability::Journal);
    let obj = store.get(key("victim")).expect("readable again").expect("present");
    assert_eq!(obj.live(), vec![&text("repaired")]);
}

#[test]
fn group_commit_is_durable_and_shares_syncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writers = 8;
    let per_writer = 50;
    {
        let store = Arc::new(Store::open(dir.path()).expect("open"));
        let threads: Vec<_> = (0..writers)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..per_writer {
                        let k = format!("t{t}-{i}");
                        put(&store, &k, &VersionVector::new(), text(&k), Durability::Synced);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer");
        }
        let syncs = store.stats().syncs.load(std::sync::atomic::Ordering::Relaxed);
        assert!(syncs <= (writers * per_writer) as u64, "{syncs}");
    }
    let store = Store::open(dir.path()).expect("reopen");
    for t in 0..writers {
        for i in 0..per_writer {
            let k = format!("t{t}-{i}");
            assert!(store.get(key(&k)).expect("get").is_some(), "{k} lost");
        }
    }
}

#[test]
fn the_periodic_sync_fsyncs_only_after_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let syncs = || store.stats().syncs.load(std::sync::atomic::Ordering::Relaxed);
    // Whatever opening wrote is synced by the first call; after that, nothing new.
    store.sync_if_written().expect("sync");
    let before = syncs();
    assert!(!store.sync_if_written().expect("sync"), "nothing was written");
    assert_eq!(syncs(), before);
    put(&store, "a", &VersionVector::new(), text("a"), Durability::Journal);
    assert!(store.sync_if_written().expect("sync"), "a write must be synced");
    assert_eq!(syncs(), before + 1);
    assert!(!store.sync_if_written().expect("sync"), "already synced");
    store.put_hint("node-2", key("h"), &store.get(key("a")).expect("get").expect("a")).expect("hint");
    assert!(store.sync_if_written().expect("sync"), "hints are writes too");
}

#[test]
fn hints_older_than_the_ttl_are_dropped_not_delivered() {
    let (_dir, store) = with_hint_ttl(5);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    put(&store, "v", &VersionVector::new(), text("v"), Durability::Journal);
    let object = store.get(key("v")).expect("get").expect("v");
    // Kept 10 s ago: expired, so not kept. A concurrent version written now is kept as
    // young; it does not make the old one young.
    store.put_hint_since("node-b", key("old"), &object, now - 10_000).expect("hint");
    let mut concurrent = quorumkv_storage::Object::new();
    concurrent.update(&VersionVector::new(), Actor(2), text("concurrent")).expect("update");
    store.put_hint("node-b", key("old"), &concurrent).expect("hint");
    // Kept 1 s ago: alive.
    store.put_hint_since("node-b", key("young"), &object, now - 1_000).expect("hint");
    store.put_hint_since("node-b", key("gone"), &object, now - 10_000).expect("hint");

    assert_eq!(store.get_hint("node-b", key("old")).expect("get"), Some(concurrent.clone()));
    assert_eq!(store.get_hint("node-b", key("gone")).expect("get"), None, "an expired hint is not read");
    assert_eq!(store.get_hint("node-b", key("young")).expect("get"), Some(object.clone()));
    let hints = store.scan_hints("node-b", None, 10).expect("scan");
    assert_eq!(hints.len(), 2, "{hints:?}");
    assert_eq!((hints[0].key.as_slice(), hints[0].object()), (&b"old"[..], concurrent));
    assert_eq!(hints[1].key, b"young");
    assert_eq!(hints[1].kept_since_ms(), now - 1_000);
    assert_eq!(store.stats().hints_expired.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(
        store.hint_counts().expect("counts"),
        vec![("node-b".to_string(), 2)],
        "the expired one is gone"
    );

    // Without a TTL nothing expires.
    store.set_hint_ttl(None);
    store.put_hint_since("node-b", key("ancient"), &object, 1).expect("hint");
    assert_eq!(store.scan_hints("node-b", None, 10).expect("scan").len(), 3);
}

/// A store in a temp dir whose hints expire after `ttl_s` seconds.
fn with_hint_ttl(ttl_s: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.set_hint_ttl(Some(std::time::Duration::from_secs(ttl_s)));
    (dir, store)
}

fn concurrent_write(actor: u64, value: &str) -> quorumkv_storage::Object {
    let mut o = quorumkv_storage::Object::new();
    o.update(&VersionVector::new(), Actor(actor), text(value)).expect("update");
    o
}

#[test]
fn a_write_merged_into_a_hint_just_before_it_expires_outlives_it() {
    let (_dir, store) = with_hint_ttl(60);
    // The first version was kept 50 s ago; scans below run at simulated times after now.
    let now = quorumkv_storage::unix_ms();
    let t0 = now - 50_000;
    let (a, b) = (concurrent_write(1, "a"), concurrent_write(2, "b"));
    store.put_hint_since("node-b", key("k"), &a, t0).expect("hint");
    // A second write now, 10 s before the hint expires: the hint may be its only copy.
    store.put_hint_since("node-b", key("k"), &b, now).expect("hint");
    let mut both = a.clone();
    both.merge(&b);
    let hints = store.scan_hints_at("node-b", None, 10, now + 100).expect("scan");
    assert_eq!((hints[0].object(), hints[0].kept_since_ms()), (both.clone(), t0));

    // A third write lands while that delivery is in flight; the acknowledgement removes
    // only the layers it held.
    let c = concurrent_write(3, "c");
    store.put_hint_since("node-b", key("k"), &c, now).expect("hint");
    assert!(!store.remove_hint_if_unchanged("node-b", key("k"), &both).expect("remove"));
    let mut later = b.clone();
    later.merge(&c);
    assert_eq!(store.get_hint("node-b", key("k")).expect("get"), Some(later.clone()));

    // Past a's expiry the later versions are still delivered, until they are TTL old.
    store.put_hint_since("node-b", key("k2"), &a, t0).expect("hint");
    store.put_hint_since("node-b", key("k2"), &b, now).expect("hint");
    let hints = store.scan_hints_at("node-b", None, 10, t0 + 62_000).expect("scan");
    assert_eq!(hints.len(), 2);
    assert_eq!((hints[0].object(), hints[0].kept_since_ms()), (later, now));
    assert_eq!((hints[1].object(), hints[1].kept_since_ms()), (b.clone(), now));
    assert_eq!(store.stats().hints_expired.load(std::sync::atomic::Ordering::Relaxed), 1, "a's layer");
    assert!(store.scan_hints_at("node-b", None, 10, now + 60_001).expect("scan").is_empty());

    // A write that supersedes the old version replaces it: nothing old is kept longer.
    let mut newer = a.clone();
    newer.update(a.context(), Actor(1), text("a2")).expect("update");
    store.put_hint_since("node-b", key("k3"), &a, t0).expect("hint");
    store.put_hint_since("node-b", key("k3"), &newer, now).expect("hint");
    let hints = store.scan_hints_at("node-b", None, 10, now + 100).expect("scan");
    assert_eq!((hints[0].object(), hints[0].kept_since_ms()), (newer, now));
}

#[test]
fn a_re_hinted_version_keeps_its_age() {
    let (_dir, store) = with_hint_ttl(10);
    let now = quorumkv_storage::unix_ms();
    let a = concurrent_write(1, "a");
    store.put_hint_since("node-b", key("k"), &a, now - 5_000).expect("hint");
    let hints = store.scan_hints("node-b", None, 10).expect("scan");
    assert_eq!(hints[0].kept_since_ms(), now - 5_000, "the age it had, not now");
    // Merged into a younger hint of the same versions, the older time wins.
    store.put_hint("node-b", key("k2"), &a).expect("hint");
    store.put_hint_since("node-b", key("k2"), &a, now - 5_000).expect("hint");
    assert_eq!(store.scan_hints("node-b", None, 10).expect("scan")[1].kept_since_ms(), now - 5_000);
    // Older than the TTL: dropped, not kept as if new.
    store.put_hint_since("node-b", key("k3"), &a, now - 20_000).expect("hint");
    store.put_hint_since("node-b", key("k4"), &a, quorumkv_storage::AGE_UNKNOWN_MS).expect("hint");
    assert_eq!(store.get_hint("node-b", key("k3")).expect("get"), None);
    assert_eq!(store.get_hint("node-b", key("k4")).expect("get"), None);
    assert_eq!(store.stats().hints_expired.load(std::sync::atomic::Ordering::Relaxed), 2);
    // A time ahead of this clock counts as now.
    store.put_hint_since("node-b", key("k5"), &a, now + 3_600_000).expect("hint");
    assert!(
        store.scan_hints("node-b", None, 10).expect("scan")[2].kept_since_ms() <= quorumkv_storage::unix_ms()
    );
}

#[test]
fn merge_from_a_replica_keeps_concurrent_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    put(&store, "k", &VersionVector::new(), text("local"), Durability::Journal);
    let mut remote = quorumkv_storage::Object::new();
    remote.update(&VersionVector::new(), Actor(2), text("remote")).expect("update");
    let merged = store.merge(key("k"), &remote, Durability::Journal).expect("merge");
    assert_eq!(merged.live().len(), 2);
    assert_eq!(store.get(key("k")).expect("get").expect("present"), merged);
}

#[test]
fn a_second_open_of_the_same_directory_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _store = Store::open(dir.path()).expect("open");
    assert!(Store::open(dir.path()).is_err());
}

#[test]
fn hints_are_kept_per_target_merged_scanned_and_removed_only_when_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = quorumkv_storage::Object::new();
    first.update(&VersionVector::new(), Actor(1), text("one")).expect("update");
    {
        let store = Store::open(dir.path()).expect("open");
        for i in 0..10 {
            store.put_hint("node-b", key(&format!("k{i}")), &first).expect("hint");
        }
        store.put_hint("node-c", key("k0"), &first).expect("hint");
        store.sync().expect("sync");
    }
    // Hints survive a restart.
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.hint_counts().expect("counts"),
        vec![("node-b".to_string(), 10), ("node-c".to_string(), 1)]
    );

    // Scans page through one target only.
    let page = store.scan_hints("node-b", None, 4).expect("scan");
    assert_eq!(page.len(), 4);
    let rest = store.scan_hints("node-b", Some(&page[3].cursor), 100).expect("scan");
    assert_eq!(rest.len(), 6);
    assert!(page.iter().chain(&rest).all(|h| h.object() == first && h.partition == 7));

    // A concurrent write merges into the hint; the stale delivered copy does not delete it.
    let mut second = quorumkv_storage::Object::new();
    second.update(&VersionVector::new(), Actor(2), text("two")).expect("update");
    store.put_hint("node-b", key("k0"), &second).expect("hint");
    let current = store.get_hint("node-b", key("k0")).expect("get").expect("present");
    assert_eq!(current.live().len(), 2);
    assert!(!store.remove_hint_if_unchanged("node-b", key("k0"), &first).expect("remove"));
    assert!(store.remove_hint_if_unchanged("node-b", key("k0"), &current).expect("remove"));
    assert_eq!(store.get_hint("node-b", key("k0")).expect("get"), None);
    assert_eq!(store.get_hint("node-c", key("k0")).expect("get"), Some(first));
}

#[test]
fn merkle_trees_follow_writes_match_a_rebuild_and_agree_across_replicas() {
    let (da, db) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (a, b) = (Store::open(da.path()).expect("open"), Store::open(db.path()).expect("open"));
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let mut objects = Vec::new();
    for k in &keys {
        let mut o = quorumkv_storage::Object::new();
        o.update(&VersionVector::new(), Actor(1), text(k)).expect("update");
        objects.push(o);
    }
    // Same objects, opposite orders, one replica with an intermediate version in between.
    for (k, o) in keys.iter().zip(&objects) {
        a.merge(key(k), o, Durability::Journal).expect("merge");
    }
    for (k, o) in keys.iter().zip(&objects).rev() {
        b.update(key(k), Durability::Journal, |obj| {
            obj.update(&VersionVector::new(), Actor(9), text("temp"))
        })
        .expect("temp");
        b.remove_if(
            key(k),
            b.leaf_entries(7, &all_leaves(&b))
                .expect("scan")
                .iter()
                .find(|e| e.key == k.as_bytes())
                .expect("entry")
                .hash,
            Removal::HandedOff,
        )
        .expect("remove");
        b.merge(key(k), o, Durability::Journal).expect("merge");
    }
    assert_eq!(a.tree(7), b.tree(7), "equal data, equal trees");

    // A rebuild from storage gives the same tree as the incremental updates.
    let before = a.tree(7);
    a.rebuild_trees().expect("rebuild");
    assert_eq!(a.tree(7), before);

    // One differing key changes exactly one leaf.
    a.update(key("k5"), Durability::Journal, |obj| obj.update(&VersionVector::new(), Actor(2), text("diff")))
        .expect("update");
    let (ta, tb) = (a.tree(7).expect("tree"), b.tree(7).expect("tree"));
    assert_ne!(ta.root(), tb.root());
    let branches: Vec<usize> = (0..ta.width()).filter(|&i| ta.branches()[i] != tb.branches()[i]).collect();
    assert_eq!(branches.len(), 1);
    let leaves: Vec<usize> =
        (0..ta.width()).filter(|&i| ta.leaves_of(branches[0])[i] != tb.leaves_of(branches[0])[i]).collect();
    assert_eq!(leaves.len(), 1);
    let leaf = (branches[0] * ta.width() + leaves[0]) as u16;
    let entries = a.leaf_entries(7, &[leaf]).expect("entries");
    assert!(entries.iter().any(|e| e.key == b"k5"), "the differing key is in the differing leaf");
    assert!(entries.len() < 10, "a leaf holds a few keys, not the partition: {}", entries.len());
}

#[test]
fn a_corrupt_record_is_left_out_of_a_rebuilt_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    put(&store, "good", &VersionVector::new(), text("fine"), Durability::Journal);
    let clean = store.tree(7).expect("tree");
    put(&store, "victim", &VersionVector::new(), text("precious"), Durability::Journal);
    let mut raw = store.raw_get(key("victim")).expect("raw").expect("present");
    raw[6] ^= 0xff;
    store.raw_put(key("victim"), &raw).expect("raw put");
    store.rebuild_trees().expect("rebuild");
    assert_eq!(store.tree(7), Some(clean), "the corrupt record counts as missing");
}

fn all_leaves(s: &Store) -> Vec<u16> {
    (0..(s.tree_width() * s.tree_width()) as u16).collect()
}

/// The store fsyncs the journal through a descriptor of its own (outside fjall's lock),
/// which is only sound if a write has reached the newest journal file when the call
/// returns. This checks that premise on the fjall version we build with.
#[test]
fn a_returned_write_is_already_in_the_newest_journal_that_sync_covers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut object = quorumkv_storage::Object::new();
    object.update(&VersionVector::new(), Actor(1), text("needle-5d1c9a")).expect("update");
    store.merge(key("k"), &object, Durability::Journal).expect("write");
    let newest = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().into_string().ok()?;
            name.strip_suffix(".jnl")?.parse::<u64>().ok()
        })
        .max()
        .expect("a journal");
    let journal = std::fs::read(dir.path().join(format!("{newest}.jnl"))).expect("read journal");
    assert!(journal.windows(13).any(|w| w == b"needle-5d1c9a"), "the write is not in {newest}.jnl yet");
    store.sync().expect("sync");
    assert_eq!(store.stats().syncs.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_listing_reads_one_buckets_range_in_byte_order_with_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let new = VersionVector::new();
    for k in ["b", "a", "ab", "c\u{e9}", "d"] {
        put(&store, k, &new, text(k), Durability::Journal);
    }
    // Neighbours that must never show: another partition, a bucket that extends this
    // one's name, a shorter bucket that is its prefix.
    let other = |partition, bucket: &'static [u8]| ObjectKey { partition, bucket, key: b"zz" };
    for k in [other(8, BUCKET), other(7, b"usersx"), other(7, b"user"), other(6, BUCKET)] {
        store.update(k, Durability::Journal, |o| o.update(&new, Actor(1), text("x"))).expect("write");
    }
    let ctx = put(&store, "d", &new, text("again"), Durability::Journal);
    put(&store, "d", &ctx, Content::tombstone_now(), Durability::Journal);

    let names = |(entries, more): (quorumkv_storage::KeyShapes, bool)| {
        (entries.into_iter().map(|(k, _)| String::from_utf8(k).expect("utf8")).collect::<Vec<_>>(), more)
    };
    let all = store.list_keys(7, BUCKET, b"", None, 100).expect("list");
    assert!(all.0.iter().all(|(_, shape)| shape.value_bytes() == 0), "shapes carry no values");
    assert!(all.0[..4].iter().all(|(_, shape)| shape.is_live()));
    assert!(!all.0[4].1.is_live(), "the deleted key is listed as deleted, for the merge");
    assert_eq!(names(all), (vec!["a".into(), "ab".into(), "b".into(), "c\u{e9}".into(), "d".into()], false));
    assert_eq!(
        names(store.list_keys(7, BUCKET, b"", None, 2).expect("list")),
        (vec!["a".into(), "ab".into()], true)
    );
    assert_eq!(
        names(store.list_keys(7, BUCKET, b"", Some(b"ab"), 2).expect("list")),
        (vec!["b".into(), "c\u{e9}".into()], true)
    );
    assert_eq!(
        names(store.list_keys(7, BUCKET, b"a", None, 10).expect("list")),
        (vec!["a".into(), "ab".into()], false)
    );
    assert_eq!(
        names(store.list_keys(7, BUCKET, b"a", Some(b"a"), 10).expect("list")),
        (vec!["ab".into()], false)
    );
    assert_eq!(
        names(store.list_keys(7, BUCKET, b"c", Some(b"a"), 10).expect("list")).0,
        vec!["c\u{e9}".to_owned()]
    );
    assert_eq!(
        names(store.list_keys(7, BUCKET, b"a", Some(b"b"), 10).expect("list")).0,
        Vec::<String>::new()
    );
    assert_eq!(names(store.list_keys(7, b"nothing", b"", None, 10).expect("list")), (vec![], false));
}
