//! Key listing: the live keys of a bucket, in byte order, a page at a time.
//!
//! Keys are placed by hash, so a bucket's keys are spread over every partition; each
//! partition's replicas store them in byte order (`partition ‖ bucket ‖ key`, see
//! `quorumkv_storage::Store::list_keys`). A page is a merge of per-partition streams:
//!
//! - **Per partition**, the coordinator asks `r` of the replicas a read would ask (the
//!   next ones when some fail; each partition starts at another healthy replica, so the
//!   work spreads) for a chunk of keys after a point, and merges what `r` of them
//!   answered. Each key
//!   comes with the causal shape of its version (dots and tombstones, no values), so a
//!   key one replica still holds and another saw deleted merges to deleted, exactly as
//!   a read would. A replica that had more keys than the chunk bounds what is known: the
//!   partition is merged up to the smallest last key among such replicas (its
//!   *watermark*), and the rest is asked for again later.
//! - **Across partitions**, the smallest buffered key is emitted once no partition could
//!   still produce a smaller one: every partition either has buffered keys, is done, or
//!   has a watermark at or past it. Partitions that bound the merge are refilled in one
//!   round, one message per node for all its partitions.
//!
//! A page therefore reads about twice its size from `r` replicas, never the whole
//! partition, and the cursor is just the last key considered.
//!
//! Every node serves its part at a bounded rate ([`Rate`], `list_keys_per_second`), on
//! the storage scan thread, so a listing takes longer rather than taking reads' and
//! writes' storage threads.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use quorumkv_ring::NodeId;
use quorumkv_storage::Object;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{Error, WireError};
use crate::key::{self, MAX_KEY_BYTES};
use crate::peer::wire::{Request, Response};
use crate::state::NodeState;

/// Keys a page holds by default.
pub const DEFAULT_PAGE: usize = 1000;
/// Keys a page holds at most.
pub const MAX_PAGE: usize = 10_000;
/// Keys one replica returns for one partition in one message, at most.
pub const MAX_CHUNK: usize = 1024;
/// Keys a page considers (live and deleted) before it ends early with a cursor, as a
/// multiple of its size: a bucket of mostly deleted keys still answers in bounded time.
const CONSIDER_PER_KEY: usize = 10;

/// Where one partition's part of a listing resumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListFrom {
    pub partition: u32,
    /// The last key already known; `None`: from the start (of the prefix).
    pub after: Option<Bytes>,
}

/// One key of a partition's chunk, with the causal shape of its version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListedKey {
    pub key: Bytes,
    pub shape: Object,
}

/// One partition's answer to a listing request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ListedPart {
    /// Keys in byte order; `more`: further keys follow the last one.
    Keys {
        keys: Vec<ListedKey>,
        more: bool,
    },
    Failed(WireError),
}

/// What a client asked for.
#[derive(Clone, Debug)]
pub struct ListRequest {
    pub bucket: Bytes,
    pub prefix: Bytes,
    pub after: Option<Bytes>,
    pub limit: usize,
    pub r: usize,
    pub timeout: Duration,
}

/// One page: live keys in byte order, and where the next page starts (`None`: this is
/// the last).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<Bytes>,
    pub next: Option<Bytes>,
}

/// A bound on the keys per second this node's replica reads for listings, shared by all
/// listings it serves: each chunk waits for the time the previous ones bought.
#[derive(Debug)]
pub struct Rate {
    per_second: u32,
    next: Mutex<Instant>,
}

impl Rate {
    pub fn new(per_second: u32) -> Rate {
        Rate { per_second: per_second.max(1), next: Mutex::new(Instant::now()) }
    }

    /// Waits until the keys read so far are paid for.
    async fn wait(&self) {
        tokio::time::sleep_until(self.ready_at()).await;
    }

    /// When the keys read so far are paid for.
    fn ready_at(&self) -> Instant {
        *self.next.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Books `keys` keys just read.
    fn charge(&self, keys: usize) {
        let cost = Duration::from_secs_f64(keys as f64 / f64::from(self.per_second));
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        *next = (*next).max(Instant::now()) + cost;
    }
}

/// Checks a listing message's names and sizes, from a client or a peer alike.
pub fn check(
    bucket: &[u8],
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
    max: usize,
) -> Result<(), Error> {
    key::check_bucket(bucket)?;
    if prefix.len() > MAX_KEY_BYTES {
        return Err(Error::bad("invalid_parameter", format!("a prefix is at most {MAX_KEY_BYTES} bytes")));
    }
    if after.is_some_and(|a| a.is_empty() || a.len() > MAX_KEY_BYTES) {
        return Err(Error::bad("invalid_parameter", format!("`after` is a key: 1 to {MAX_KEY_BYTES} bytes")));
    }
    if !(1..=max).contains(&limit) {
        return Err(Error::bad("invalid_parameter", format!("`limit={limit}` is out of range: 1 to {max}")));
    }
    Ok(())
}

/// The replica side: this node's keys of `bucket` in each of `parts`, a chunk of at most
/// `limit` each. A partition this node does not replicate, or has not synced yet,
/// answers `Failed` (the coordinator counts it as a replica that did not answer).
pub async fn serve(
    state: &NodeState,
    bucket: Bytes,
    prefix: Bytes,
    parts: Vec<ListFrom>,
    limit: usize,
) -> Vec<ListedPart> {
    let refusal = |p: u32| {
        if p >= state.cluster.params().partitions {
            Some(Error::bad("invalid_partition", format!("partition {p} out of range")))
        } else if !state.cluster.owns(p) {
            Some(Error::Unavailable(format!("this node does not replicate partition {p}")))
        } else if state.cluster.is_syncing(p) {
            Some(Error::Unavailable(format!("partition {p} is still being synced here")))
        } else {
            None
        }
    };
    // Refusals answer at once; the rest are scanned together, their answers filling the
    // slots kept for them.
    let mut out = Vec::with_capacity(parts.len());
    let (mut slots, mut scans) = (Vec::new(), Vec::new());
    for part in parts {
        match refusal(part.partition) {
            Some(e) => out.push(ListedPart::Failed((&e).into())),
            None => {
                slots.push(out.len());
                scans.push((part.partition, part.after));
                out.push(ListedPart::Keys { keys: Vec::new(), more: false });
            }
        }
    }
    // One storage call for every partition asked: the scan thread is handed the work
    // once, and the rate is paid once per message.
    state.listing_rate.wait().await;
    let mut read = 0;
    match state.replicas.local().list_keys(bucket, prefix, scans, limit).await {
        Ok(chunks) => {
            for (slot, chunk) in slots.into_iter().zip(chunks) {
                out[slot] = match chunk {
                    Ok((entries, more)) => {
                        read += entries.len();
                        let keys = entries
                            .into_iter()
                            .map(|(key, shape)| ListedKey { key: key.into(), shape })
                            .collect();
                        ListedPart::Keys { keys, more }
                    }
                    Err(e) => ListedPart::Failed((&Error::from(e)).into()),
                };
            }
        }
        Err(e) => {
            let failed = ListedPart::Failed((&Error::from(e)).into());
            for slot in slots {
                out[slot] = failed.clone();
            }
        }
    }
    state.listing_rate.charge(read.max(1));
    out
}

/// One replica's chunk of one partition: keys, and whether more follow.
type Chunk = (Vec<ListedKey>, bool);
/// Each replica's chunk of one partition, or why it gave none.
type Answers = Vec<(NodeId, Result<Chunk, Error>)>;

/// One partition's stream, as the coordinator merges it.
struct Stream {
    partition: u32,
    targets: Vec<NodeId>,
    /// Merged keys not yet emitted, each with whether it is live.
    buffered: VecDeque<(Bytes, bool)>,
    /// Every key up to here has been merged (`None`: nothing asked yet).
    known_to: Option<Bytes>,
    done: bool,
}

impl Stream {
    /// Whether this stream must be refilled before `candidate` can be emitted: it might
    /// still produce a smaller key.
    fn blocks(&self, candidate: Option<&Bytes>) -> bool {
        if self.done || !self.buffered.is_empty() {
            return false;
        }
        match (&self.known_to, candidate) {
            (None, _) => true,
            (Some(_), None) => true,
            (Some(known), Some(c)) => known < c,
        }
    }

    /// Merges the replicas' answers for one chunk; fails unless `r` of them answered.
    fn absorb(&mut self, answers: Answers, r: usize) -> Result<(), Error> {
        let mut failures = Vec::new();
        let mut chunks = Vec::new();
        for (node, answer) in answers {
            match answer {
                Ok(chunk) => chunks.push(chunk),
                Err(e) => failures.push((node.0, e.to_string())),
            }
        }
        if chunks.len() < r {
            let why = failures.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>().join("; ");
            return Err(Error::Unavailable(format!(
                "listing partition {}: {} of r={r} replicas answered ({why})",
                self.partition,
                chunks.len()
            )));
        }
        // Keys past the smallest last key of a replica that had more are not known yet.
        let watermark = chunks
            .iter()
            .filter(|(keys, more)| *more && !keys.is_empty())
            .filter_map(|(keys, _)| keys.last())
            .map(|k| k.key.clone())
            .min();
        let mut merged: BTreeMap<Bytes, Object> = BTreeMap::new();
        for (keys, _) in chunks {
            for ListedKey { key, shape } in keys {
                if watermark.as_ref().is_some_and(|w| key > *w) {
                    break;
                }
                merged.entry(key).and_modify(|o| o.merge(&shape)).or_insert(shape);
            }
        }
        self.buffered.extend(merged.into_iter().map(|(k, o)| (k, o.is_live())));
        match watermark {
            Some(w) => self.known_to = Some(w),
            None => self.done = true,
        }
        Ok(())
    }
}

/// The coordinator side: one page of `req`'s listing.
///
/// # Errors
/// [`Error::Unavailable`] naming the partition when fewer than `r` of its replicas
/// answered; [`Error::Timeout`] when the page could not be merged before the deadline.
pub async fn page(state: &NodeState, req: &ListRequest) -> Result<Page, Error> {
    let deadline = Instant::now() + req.timeout;
    let partitions = state.cluster.params().partitions;
    let ring = state.cluster.ring()?;
    let previous = state.cluster.previous_ring();
    let mut streams: Vec<Stream> = (0..partitions)
        .map(|p| {
            // A moving partition is read from the previous layout's replicas, as reads are.
            let ring = match &previous {
                Some(old) if state.cluster.is_moving(p) => old,
                _ => &ring,
            };
            // Each partition starts with another of its healthy replicas, so the reads
            // spread over the nodes.
            let mut targets = state.coordinator.read_targets(ring, p);
            let healthy = targets.iter().take_while(|n| state.cluster.is_up(n)).count();
            if healthy > 0 {
                targets[..healthy].rotate_left(p as usize % healthy);
            }
            Stream { partition: p, targets, buffered: VecDeque::new(), known_to: None, done: false }
        })
        .collect();
    // About twice a partition's share of the page: a short page (a scan of a few dozen
    // keys) reads a few keys per partition, not a fixed minimum of each.
    let chunk = (2 * req.limit / streams.len().max(1) + 2).min(MAX_CHUNK);
    let budget = req.limit * CONSIDER_PER_KEY;
    let mut keys = Vec::new();
    let mut last: Option<Bytes> = None;
    let mut considered = 0usize;
    loop {
        let candidate = streams.iter().filter_map(|s| s.buffered.front().map(|(k, _)| k)).min().cloned();
        let blocking: Vec<usize> =
            (0..streams.len()).filter(|&i| streams[i].blocks(candidate.as_ref())).collect();
        if !blocking.is_empty() {
            if considered >= budget && last.is_some() {
                break;
            }
            refill(state, req, &mut streams, &blocking, chunk, deadline).await?;
            continue;
        }
        let Some(c) = candidate else {
            // Every stream is done and drained: this was the last page.
            return Ok(Page { keys, next: None });
        };
        let Some(s) = streams.iter_mut().find(|s| s.buffered.front().is_some_and(|(k, _)| *k == c)) else {
            continue;
        };
        let Some((key, live)) = s.buffered.pop_front() else { continue };
        considered += 1;
        if live {
            keys.push(key.clone());
        }
        last = Some(key);
        if keys.len() >= req.limit || considered >= budget {
            break;
        }
    }
    let more = streams.iter().any(|s| !s.done || !s.buffered.is_empty());
    Ok(Page { keys, next: if more { last } else { None } })
}

/// Asks every target of the `blocking` streams for their next chunk, one message per
/// node, and merges each stream's answers.
async fn refill(
    state: &NodeState,
    req: &ListRequest,
    streams: &mut [Stream],
    blocking: &[usize],
    chunk: usize,
    deadline: Instant,
) -> Result<(), Error> {
    let mut per_stream: HashMap<usize, Answers> = HashMap::new();
    // How many of each stream's targets were asked: `r` of them first, more only for
    // those that failed, so a listing reads each key from `r` replicas, not N.
    let mut asked: HashMap<usize, usize> = HashMap::new();
    loop {
        let mut by_node: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for &i in blocking {
            let answered = per_stream.get(&i).map_or(0, |a| a.iter().filter(|(_, r)| r.is_ok()).count());
            let from = asked.get(&i).copied().unwrap_or(0);
            let more = streams[i].targets.iter().skip(from).take(req.r.saturating_sub(answered));
            for node in more {
                *asked.entry(i).or_default() += 1;
                by_node.entry(node.clone()).or_default().push(i);
            }
        }
        if by_node.is_empty() {
            break;
        }
        let calls = by_node.into_iter().map(|(node, indexes)| {
            let parts: Vec<ListFrom> = indexes
                .iter()
                .map(|&i| ListFrom {
                    partition: streams[i].partition,
                    after: streams[i].known_to.clone().or_else(|| req.after.clone()),
                })
                .collect();
            async move {
                let answer = ask(state, &node, req, parts, chunk, deadline).await;
                (node, indexes, answer)
            }
        });
        for (node, indexes, answer) in futures_util::future::join_all(calls).await {
            match answer {
                Ok(parts) => {
                    for (i, part) in indexes.into_iter().zip(parts) {
                        let result = match part {
                            ListedPart::Keys { keys, more } => Ok((keys, more)),
                            ListedPart::Failed(e) => Err(Error::from(e)),
                        };
                        per_stream.entry(i).or_default().push((node.clone(), result));
                    }
                }
                Err(e) => {
                    for i in indexes {
                        per_stream.entry(i).or_default().push((node.clone(), Err(e.clone())));
                    }
                }
            }
        }
    }
    for &i in blocking {
        streams[i].absorb(per_stream.remove(&i).unwrap_or_default(), req.r)?;
    }
    Ok(())
}

/// One node's chunks for `parts`: served here for this node, over the peer protocol
/// otherwise.
async fn ask(
    state: &NodeState,
    node: &NodeId,
    req: &ListRequest,
    parts: Vec<ListFrom>,
    chunk: usize,
    deadline: Instant,
) -> Result<Vec<ListedPart>, Error> {
    let expected = parts.len();
    let answer = if state.cluster.is_me(node) {
        let served = serve(state, req.bucket.clone(), req.prefix.clone(), parts, chunk);
        tokio::time::timeout_at(deadline, served).await.map_err(|_| Error::Timeout)?
    } else {
        let message = Request::ListKeys {
            bucket: req.bucket.clone(),
            prefix: req.prefix.clone(),
            parts,
            limit: chunk as u32,
        };
        match state.replicas.request(node, &message, deadline).await? {
            (Response::Listed(parts), _) => parts,
            (other, _) => return Err(Error::Internal(format!("{node} answered a listing with {other:?}"))),
        }
    };
    if answer.len() != expected {
        return Err(Error::Internal(format!("{node} answered {} of {expected} partitions", answer.len())));
    }
    Ok(answer)
}

/// How a listed key appears in JSON: its text when it is UTF-8 without a `%`, else
/// percent-encoded (every byte but `A-Z a-z 0-9 - . _ ~`), so a `%` in the string always
/// means "decode me" and no two keys look alike.
pub fn display_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if !text.contains('%') => text.to_owned(),
        _ => encode_key(key),
    }
}

/// A key percent-encoded as a URL path or query carries it: the form of a listing's
/// `next` cursor.
pub fn encode_key(key: &[u8]) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::percent_encode(key, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumkv_storage::{Actor, Content, VersionVector};

    fn shape(live: bool) -> Object {
        let mut o = Object::new();
        let content = if live { Content::value("t", "v") } else { Content::tombstone_now() };
        o.update(&VersionVector::new(), Actor(1), content).expect("update");
        o.shape()
    }

    fn listed(keys: &[&str], more: bool) -> Result<Chunk, Error> {
        Ok((
            keys.iter()
                .map(|k| ListedKey { key: Bytes::copy_from_slice(k.as_bytes()), shape: shape(true) })
                .collect(),
            more,
        ))
    }

    fn stream() -> Stream {
        Stream { partition: 0, targets: vec![], buffered: VecDeque::new(), known_to: None, done: false }
    }

    fn n(s: &str) -> NodeId {
        NodeId::from(s)
    }

    #[test]
    fn a_chunk_is_merged_up_to_the_smallest_last_key_of_a_replica_with_more() {
        let mut s = stream();
        s.absorb(
            vec![(n("a"), listed(&["a", "c", "e"], true)), (n("b"), listed(&["b", "c", "d", "f"], false))],
            2,
        )
        .expect("two answered");
        let keys: Vec<&[u8]> = s.buffered.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, vec![&b"a"[..], b"b", b"c", b"d", b"e"], "f is past replica a's last key");
        assert_eq!(s.known_to.as_deref(), Some(&b"e"[..]));
        assert!(!s.done);
        assert!(!s.blocks(Some(&Bytes::from_static(b"z"))), "it has keys buffered");
    }

    #[test]
    fn a_key_deleted_on_one_replica_merges_to_deleted_and_too_few_answers_fail() {
        let mut live = Object::new();
        let dot_ctx = {
            live.update(&VersionVector::new(), Actor(1), Content::value("t", "v")).expect("update");
            live.context().clone()
        };
        let mut deleted = live.clone();
        deleted.update(&dot_ctx, Actor(2), Content::tombstone_now()).expect("delete");
        let k = Bytes::from_static(b"k");
        let mut s = stream();
        s.absorb(
            vec![
                (n("a"), Ok((vec![ListedKey { key: k.clone(), shape: live.shape() }], false))),
                (n("b"), Ok((vec![ListedKey { key: k.clone(), shape: deleted.shape() }], false))),
                (n("c"), Err(Error::Timeout)),
            ],
            2,
        )
        .expect("two of three answered");
        assert_eq!(s.buffered.iter().cloned().collect::<Vec<_>>(), vec![(k, false)]);
        assert!(s.done);
        let mut s = stream();
        let e = s.absorb(vec![(n("a"), listed(&["a"], false)), (n("b"), Err(Error::Timeout))], 2);
        assert!(matches!(e, Err(Error::Unavailable(why)) if why.contains("1 of r=2")));
    }

    #[test]
    fn keys_show_as_text_unless_they_need_encoding() {
        assert_eq!(display_key(b"users/alice \xc3\xa9"), "users/alice \u{e9}");
        assert_eq!(display_key(b"\xff\x00a"), "%FF%00a");
        assert_eq!(display_key(b"100%"), "100%25", "a `%` always means encoded");
        assert_eq!(encode_key(b"a b/c~"), "a%20b%2Fc~");
    }

    #[test]
    fn the_rate_books_time_for_the_keys_read() {
        let rate = Rate::new(1000);
        let before = Instant::now();
        rate.charge(500);
        rate.charge(250);
        let ready = rate.ready_at();
        assert!(ready >= before + Duration::from_millis(750), "750 keys at 1000/s take 750 ms");
        assert!(ready <= Instant::now() + Duration::from_millis(750));
    }
}
