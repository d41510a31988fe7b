//! Versions are never numbered twice, whatever the store lost: each way a node can lose
//! versions it numbered, on a real fjall directory. In every test another replica `B`
//! (a plain object here) holds a version the store numbered and then lost; a new write
//! through the store must then reach `B` as a sibling of it, never be taken for it.

use std::path::Path;

use quorumkv_storage::{
    Content, Dot, Durability, Object, ObjectKey, Removal, StartKind, Store, VersionVector,
};

const NODE: &str = "node-a";

fn key() -> ObjectKey<'static> {
    ObjectKey { partition: 7, bucket: b"b", key: b"k" }
}

fn text(s: &str) -> Content {
    Content::value("text/plain", s.as_bytes().to_vec())
}

fn open(dir: &Path) -> Store {
    let store = Store::open(dir).expect("open");
    store.start_versions(NODE).expect("start numbering");
    store
}

/// Coordinates a write through `store`; returns the object and its dot.
fn write(store: &Store, ctx: &VersionVector, value: &str) -> (Object, Dot) {
    store.coordinate(key(), ctx, text(value), Durability::Journal).expect("write")
}

fn live(obj: &Object) -> Vec<String> {
    let mut out: Vec<String> = obj
        .live()
        .into_iter()
        .map(|c| match c {
            Content::Value { bytes, .. } => String::from_utf8_lossy(bytes).into_owned(),
            Content::Tombstone { .. } => unreachable!("live() hides tombstones"),
        })
        .collect();
    out.sort();
    out
}

/// Replica `B` holds `kept`; the new write `fresh` (numbered `fresh_dot`) arrives: `B`
/// keeps every version it had and gains the new one.
fn assert_both_survive(kept: &Object, fresh: &Object, kept_dot: Dot, fresh_dot: Dot) {
    assert_ne!(kept_dot, fresh_dot, "a dot was numbered twice");
    let mut b = kept.clone();
    b.merge(fresh);
    for s in kept.siblings() {
        assert!(b.siblings().contains(s), "B lost {s:?} when the new write arrived");
    }
    let new = fresh.siblings().iter().find(|s| s.dot == fresh_dot).expect("the new version");
    assert!(b.siblings().contains(new), "B dropped the new write {new:?}");
}

/// Copies a store's directory as it is on disk now: taken right after an fsync, the copy
/// is what a power cut at that moment would leave (everything after the fsync gone).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn item_hash(store: &Store) -> u64 {
    let leaves: Vec<u16> = (0..store.tree_width() * store.tree_width()).map(|l| l as u16).collect();
    store.leaf_entries(7, &leaves).expect("scan").into_iter().find(|e| e.key == b"k").expect("entry").hash
}

#[test]
fn a_token_from_before_a_reap_does_not_cover_a_write_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open(dir.path());
    let (obj, _) = write(&a, &VersionVector::new(), "a");
    let t1 = obj.context().clone();
    let (deleted, _) = a
        .coordinate(key(), &t1, Content::Tombstone { deleted_at_ms: 1 }, Durability::Journal)
        .expect("delete");
    assert!(deleted.is_deleted());
    assert!(a.remove_if(key(), item_hash(&a), Removal::Reap).expect("reap"));
    assert_eq!(a.get(key()).expect("read"), None, "reaped");

    let (after_reap, b_dot) = write(&a, &VersionVector::new(), "b");
    assert!(!t1.covers(b_dot), "the write after the reap is numbered above everything the old token saw");
    let (with_old_token, _) = write(&a, &t1, "c");
    assert_eq!(live(&with_old_token), vec!["b", "c"], "the old token superseded a write it never saw");
    // And the floor outlives a clean restart.
    let floor = a.versions().expect("numbering").floor;
    assert!(floor >= t1.iter().map(|d| d.counter).max().unwrap_or(0));
    a.close_cleanly().expect("close");
    drop(a);
    let a = open(dir.path());
    assert_eq!(a.versions().expect("numbering").floor, floor);
    assert_eq!(live(&after_reap), vec!["b"]);
}

#[test]
fn a_rotted_record_repaired_from_a_stale_replica_never_reuses_a_dot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open(dir.path());
    let (v1, _) = write(&a, &VersionVector::new(), "v1");
    let stale = v1.clone(); // what replica C holds
    let (v2, v2_dot) = write(&a, v1.context(), "v2"); // B holds this
    a.raw_put(key(), b"\x00\x01rotten").expect("corrupt");
    assert!(a.get(key()).is_err(), "a rotted record is never served");
    // Repair brings C's older version back first; then a blind write comes.
    a.merge(key(), &stale, Durability::Journal).expect("repair");
    let (y, y_dot) = write(&a, &VersionVector::new(), "y");
    assert_ne!(y_dot.actor, v2_dot.actor, "the write after the loss is numbered by a new actor");
    assert_both_survive(&v2, &y, v2_dot, y_dot);
}

#[test]
fn a_journal_tail_lost_to_a_power_cut_never_lets_a_dot_be_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live_dir = dir.path().join("live");
    let cut_dir = dir.path().join("after-power-cut");
    let a = open(&live_dir);
    let (v1, _) = a.coordinate(key(), &VersionVector::new(), text("v1"), Durability::Synced).expect("v1");
    // A power cut now would keep exactly this.
    copy_dir(&live_dir, &cut_dir);
    // Acknowledged with dw=0: in the journal, not fsynced; replica B has it.
    let (v2, v2_dot) = write(&a, v1.context(), "v2");
    drop(a);

    let a = Store::open(&cut_dir).expect("open what the power cut left");
    assert_eq!(a.start_versions(NODE).expect("start"), StartKind::Unclean);
    assert_eq!(
        live(&a.get(key()).expect("read").expect("v1 survived")),
        vec!["v1"],
        "the fsynced write is there"
    );
    let (y, y_dot) = write(&a, &VersionVector::new(), "y");
    assert_both_survive(&v2, &y, v2_dot, y_dot);
}

#[test]
fn a_clean_stop_keeps_the_actor_and_a_copy_of_a_running_store_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("main");
    let a = open(&main);
    let (_, first) = write(&a, &VersionVector::new(), "x");
    a.sync().expect("sync");
    copy_dir(&main, &dir.path().join("hot-backup"));
    a.close_cleanly().expect("close");
    drop(a);
    let a = Store::open(&main).expect("reopen");
    assert_eq!(a.start_versions(NODE).expect("start"), StartKind::Clean);
    let (_, next) = write(&a, &VersionVector::new(), "y");
    assert_eq!(next.actor, first.actor, "a clean restart keeps the actor: version vectors stay small");
    drop(a);
    let restored = Store::open(&dir.path().join("hot-backup")).expect("open the copy");
    assert_eq!(restored.start_versions(NODE).expect("start"), StartKind::Unclean);
    let (_, after) = write(&restored, &VersionVector::new(), "z");
    assert_ne!(after.actor, first.actor);
}

#[test]
fn a_partition_handed_off_and_regained_is_written_by_a_new_actor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open(dir.path());
    let (v1, _) = write(&a, &VersionVector::new(), "v1");
    let (v2, v2_dot) = write(&a, v1.context(), "v2");
    // The partition moves away: its data goes to the new owners (B has v2) and is
    // deleted here.
    assert!(a.remove_if(key(), item_hash(&a), Removal::HandedOff).expect("hand off"));
    // It comes back (leave, then join again); a sync from a replica that is behind
    // brings v1 before a blind write arrives.
    a.merge(key(), &v1, Durability::Journal).expect("partial sync");
    let (y, y_dot) = write(&a, &VersionVector::new(), "y");
    assert_both_survive(&v2, &y, v2_dot, y_dot);
    // Other partitions keep numbering with the new actor too: one renewal, not one per key.
    let other = ObjectKey { partition: 8, bucket: b"b", key: b"k" };
    let (_, z) = a.coordinate(other, &VersionVector::new(), text("z"), Durability::Journal).expect("z");
    assert_eq!(z.actor, y_dot.actor);
    assert_eq!(a.versions().expect("numbering").renew_pending, 0);
}

#[test]
fn a_peer_ahead_of_us_gives_away_a_restored_directory() {
    // A directory restored from a backup taken while the node was stopped looks like a
    // clean stop. The first version that arrives from a replica and is newer than what
    // this node numbered shows it; the next write in that partition takes a new actor.
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("main");
    let a = open(&main);
    let (v1, _) = write(&a, &VersionVector::new(), "v1");
    a.close_cleanly().expect("close");
    drop(a);
    copy_dir(&main, &dir.path().join("cold-backup"));
    let a = open(&main);
    let (v2, v2_dot) = write(&a, v1.context(), "v2");
    a.close_cleanly().expect("close");
    drop(a);

    let restored = open(&dir.path().join("cold-backup"));
    restored.merge(key(), &v2, Durability::Journal).expect("anti-entropy brings v2");
    let (y, y_dot) = write(&restored, v1.context(), "y");
    assert_ne!(y_dot.actor, v2_dot.actor);
    assert_both_survive(&v2, &y, v2_dot, y_dot);
}

#[test]
fn a_store_that_does_not_number_versions_yet_refuses_to_coordinate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let e =
        store.coordinate(key(), &VersionVector::new(), text("x"), Durability::Journal).expect_err("refused");
    assert!(matches!(e, quorumkv_storage::Error::Unavailable(_)), "{e}");
    assert_eq!(store.get(key()).expect("read"), None, "nothing written");
}
