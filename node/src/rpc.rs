//! The peer listener's handler: the other entry point into a node, beside [`crate::api`].
//!
//! It decodes a message, checks what a peer sent as strictly as the client API checks a
//! client (names through [`Key`]'s decoding, and every key's partition against its name),
//! serves it from this node and encodes the answer. Garbage gets a typed error answer;
//! it never panics the node.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request as HttpRequest, Response as HttpResponse, StatusCode};

use crate::coordinator::WriteOptions;
use crate::error::{Error, WireError};
use crate::key::Key;
use crate::peer::wire::{self, ReplicaAnswer, ReplicaCall, Request, Response};
use crate::state::NodeState;
use crate::throttle::Throttle;

/// Largest peer message accepted: a value of the largest size with many siblings.
const MAX_REQUEST_BYTES: usize = 256 * 1024 * 1024;

/// Serves one HTTP request on the peer listener.
pub async fn handle(
    state: Arc<NodeState>,
    req: HttpRequest<Incoming>,
) -> Result<HttpResponse<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/rpc" {
        let e = Response::Failed(WireError::Other("peer endpoint is POST /rpc".into()));
        return Ok(answer(StatusCode::NOT_FOUND, Bytes::from(wire::encode(&e))));
    }
    let deadline = Duration::from_millis(state.config.request_read_timeout_ms);
    let body = match tokio::time::timeout(
        deadline,
        Limited::new(req.into_body(), MAX_REQUEST_BYTES).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            let e = Response::Failed(WireError::Other(format!("unreadable body: {e}")));
            return Ok(answer(StatusCode::BAD_REQUEST, Bytes::from(wire::encode(&e))));
        }
        Err(_) => {
            state.metrics.refused("peer", "slow_body");
            let e = Response::Failed(WireError::Other("the message did not arrive in time".into()));
            return Ok(answer(StatusCode::REQUEST_TIMEOUT, Bytes::from(wire::encode(&e))));
        }
    };
    Ok(match serve_message(&state, body).await {
        Ok(bytes) => answer(StatusCode::OK, bytes),
        Err(bytes) => answer(StatusCode::BAD_REQUEST, bytes),
    })
}

fn answer(status: StatusCode, body: Bytes) -> HttpResponse<Full<Bytes>> {
    let mut resp = HttpResponse::new(Full::new(body));
    *resp.status_mut() = status;
    resp
}

/// Answers one sealed message with a sealed answer: what every transport delivers.
pub async fn serve_bytes(state: &NodeState, body: Bytes) -> Bytes {
    serve_message(state, body).await.unwrap_or_else(|refusal| refusal)
}

static REFUSED: Throttle = Throttle::new(Duration::from_secs(10));
static UNDECODABLE: Throttle = Throttle::new(Duration::from_secs(10));

/// The sealed answer, or the refusal of a message that is not signed with the cluster
/// secret (unsealed: the sender cannot be trusted with anything) or does not decode.
async fn serve_message(state: &NodeState, body: Bytes) -> Result<Bytes, Bytes> {
    let (message, opened) = match state.peer_auth.open_request(&body) {
        Ok(opened) => opened,
        Err(e) => {
            state.metrics.refused("peer", "authentication");
            if let Some(held) = REFUSED.ready() {
                tracing::warn!(error = %e, refused_since_last_line = held, "refused an unauthenticated peer message");
            }
            let refusal = Response::Failed(WireError::BadRequest {
                code: "unauthenticated".into(),
                message: format!("refused: {e}"),
            });
            return Err(Bytes::from(wire::encode(&refusal)));
        }
    };
    match wire::decode::<Request>(&message) {
        Ok(request) => Ok(state.peer_auth.seal_answer(opened, &wire::encode(&serve(state, request).await))),
        Err(e) => {
            if let Some(held) = UNDECODABLE.ready() {
                tracing::warn!(error = %e, since_last_line = held, "undecodable peer message");
            }
            let refusal =
                Response::Failed(WireError::BadRequest { code: "invalid_message".into(), message: e });
            Err(state.peer_auth.seal_answer(opened, &wire::encode(&refusal)))
        }
    }
}

/// Refuses a key whose partition is not its own (or not `partition`, when given).
fn check(state: &NodeState, key: &Key, partition: Option<u32>) -> Result<(), Error> {
    let q = state.cluster.params().partitions;
    Key::placed(q, key.partition(), key.bucket().clone(), key.key().clone())?;
    match partition {
        Some(p) if p != key.partition() => {
            Err(Error::bad("invalid_key", "a key outside the message's partition"))
        }
        _ => Ok(()),
    }
}

fn check_partition(state: &NodeState, partition: u32) -> Result<(), Error> {
    if partition >= state.cluster.params().partitions {
        return Err(Error::bad("invalid_partition", format!("partition {partition} out of range")));
    }
    Ok(())
}

async fn serve(state: &NodeState, request: Request) -> Response {
    match request {
        Request::Replica(call) => Response::Replica(serve_replica(state, call).await),
        Request::Batch(calls) => Response::Batch(
            futures_util::future::join_all(calls.into_iter().map(|c| serve_replica(state, c))).await,
        ),
        other => serve_one(state, other).await.unwrap_or_else(|e| Response::Failed((&e).into())),
    }
}

async fn serve_replica(state: &NodeState, call: ReplicaCall) -> ReplicaAnswer {
    if let Err(e) = check(state, call.key(), None) {
        return ReplicaAnswer::Failed((&e).into());
    }
    state.replicas.serve(call).await
}

async fn serve_one(state: &NodeState, request: Request) -> Result<Response, Error> {
    let cluster = &state.cluster;
    match request {
        Request::Hello(greeting) => {
            let (peer, version) = (greeting.from.node_id.clone(), greeting.version);
            cluster.receive_hello(greeting).await.inspect_err(|e| {
                tracing::warn!(peer = %peer, error = %e, "refusing a peer's layout");
            })?;
            Ok(cluster.hello_reply(version))
        }
        Request::Ping => Ok(Response::Pong),
        Request::Replica(_) | Request::Batch(_) => {
            Err(Error::Internal("replica calls are served by `serve`".into()))
        }
        Request::TreeSummary { partition, .. }
        | Request::TreeLeaves { partition, .. }
        | Request::SyncLeaves { partition, .. }
        | Request::ReapCheck { partition, .. }
        | Request::Reap { partition, .. }
            if check_partition(state, partition).is_err() =>
        {
            Err(Error::bad("invalid_partition", format!("partition {partition} out of range")))
        }
        request @ (Request::TreeSummary { .. }
        | Request::TreeLeaves { .. }
        | Request::SyncLeaves { .. }
        | Request::ReapCheck { .. }
        | Request::Reap { .. }) => {
            if let Request::SyncLeaves { partition, entries, .. }
            | Request::ReapCheck { partition, entries }
            | Request::Reap { partition, entries } = &request
            {
                for e in entries {
                    check(state, &e.key, Some(*partition))?;
                }
            }
            state.anti_entropy.serve(request).await
        }
        Request::MergeBatch { items } => {
            for item in &items {
                check(state, &item.key, None)?;
            }
            let count = items.len();
            // Versions of keys this node does not replicate under its layout (hints
            // meant for an older layout, say) are kept for their owners instead.
            let ring = cluster.ring()?;
            let (mine, theirs): (Vec<_>, Vec<_>) =
                items.into_iter().partition(|i| cluster.owns(i.key.partition()));
            let local = state.replicas.local();
            for item in theirs {
                state.metrics.not_owner_answers.inc();
                let owners = ring.primaries(item.key.partition()).to_vec();
                // A delivered hint keeps its age; data of unknown age counts as old.
                let since = item.kept_since_ms.unwrap_or(quorumkv_storage::AGE_UNKNOWN_MS);
                let journal = quorumkv_storage::Durability::Journal;
                local.put_hints(owners, item.key, item.object, since, journal).await?;
            }
            local.merge_batch(mine).await?;
            Ok(Response::MergedBatch { count })
        }
        Request::ListKeys { bucket, prefix, parts, limit } => {
            let limit = limit as usize;
            crate::listing::check(&bucket, &prefix, None, limit, crate::listing::MAX_CHUNK)?;
            for part in &parts {
                check_partition(state, part.partition)?;
                crate::listing::check(
                    &bucket,
                    &prefix,
                    part.after.as_deref(),
                    limit,
                    crate::listing::MAX_CHUNK,
                )?;
            }
            if parts.len() > state.cluster.params().partitions as usize {
                return Err(Error::bad("invalid_parameter", "more parts than partitions"));
            }
            Ok(Response::Listed(crate::listing::serve(state, bucket, prefix, parts, limit).await))
        }
        Request::Coordinate { key, context, content, w, dw, sloppy, timeout_ms } => {
            check(state, &key, None)?;
            // Only a replica holds the key's versions, so only a replica may number the
            // next one (a node that is no longer one may hold none of them, or stale
            // ones). The forwarder tries another replica.
            let ring = state.cluster.ring()?;
            if !ring.primaries(key.partition()).iter().any(|n| state.cluster.is_me(n)) {
                return Err(Error::Unavailable(format!(
                    "not a replica of partition {} under layout version {}: the write was not applied here",
                    key.partition(),
                    ring.version()
                )));
            }
            let n = state.coordinator.replicas();
            let w = crate::quorum::Quorum::Count(w)
                .resolve(n)
                .map_err(|e| Error::bad("invalid_parameter", format!("w: {e}")))?;
            if dw > w {
                return Err(Error::bad("invalid_parameter", format!("dw={dw} is more than w={w}")));
            }
            let opts =
                WriteOptions { w, dw, sloppy, timeout: Duration::from_millis(timeout_ms.clamp(1, 60_000)) };
            let obj = state.coordinator.coordinate(key, context, content, opts).await?;
            Ok(Response::Written(obj))
        }
    }
}
