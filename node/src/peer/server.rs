//! The peer listener's handler: decodes a request, serves it from this node, encodes the
//! answer. Garbage gets a typed error answer; it never panics the node.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request as HttpRequest, Response as HttpResponse, StatusCode};
use quorumkv_storage::Durability;

use super::wire::{self, ReplicaAnswer, ReplicaCall, Request, Response};
use crate::coordinator::{CoordinatorError, WriteOptions};
use crate::local::Key;
use crate::node::NodeState;

/// Largest peer message accepted: a value of the largest size with many siblings.
const MAX_REQUEST_BYTES: usize = 256 * 1024 * 1024;

pub async fn handle(
    state: Arc<NodeState>,
    req: HttpRequest<Incoming>,
) -> Result<HttpResponse<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/rpc" {
        return Ok(answer(StatusCode::NOT_FOUND, &Response::Error("peer endpoint is POST /rpc".into())));
    }
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(answer(StatusCode::BAD_REQUEST, &Response::Error(format!("unreadable body: {e}"))));
        }
    };
    let request: Request = match wire::decode(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "undecodable peer message");
            return Ok(answer(StatusCode::BAD_REQUEST, &Response::Error(e)));
        }
    };
    Ok(answer(StatusCode::OK, &serve(&state, request).await))
}

fn answer(status: StatusCode, response: &Response) -> HttpResponse<Full<Bytes>> {
    let mut resp = HttpResponse::new(Full::new(Bytes::from(wire::encode(response))));
    *resp.status_mut() = status;
    resp
}

async fn serve(state: &NodeState, request: Request) -> Response {
    match request {
        Request::Replica(call) => Response::Replica(serve_replica(state, call).await),
        Request::Batch(calls) => Response::Batch(
            futures_util::future::join_all(calls.into_iter().map(|c| serve_replica(state, c))).await,
        ),
        other => serve_one(state, other).await,
    }
}

async fn serve_replica(state: &NodeState, call: ReplicaCall) -> ReplicaAnswer {
    match call {
        ReplicaCall::Get { partition, bucket, key } => {
            let key = Key { partition, bucket: Bytes::from(bucket), key: Bytes::from(key) };
            match state.coordinator.read_own_replica(key).await {
                Ok(obj) => ReplicaAnswer::Object(obj),
                Err(e) => ReplicaAnswer::Error(e.to_string()),
            }
        }
        ReplicaCall::Merge { partition, bucket, key, object, durable, hint_for } => {
            let key = Key { partition, bucket: Bytes::from(bucket), key: Bytes::from(key) };
            let durability = if durable { Durability::Synced } else { Durability::Journal };
            let stored = match hint_for {
                Some(target) => state.local.put_hint(target, key, object, durability).await,
                None => state.local.merge(key, object, durability).await.map(|_| ()),
            };
            match stored {
                Ok(()) => ReplicaAnswer::Merged { durable },
                Err(e) => ReplicaAnswer::Error(e.to_string()),
            }
        }
    }
}

async fn serve_one(state: &NodeState, request: Request) -> Response {
    let cluster = state.coordinator.cluster();
    match request {
        Request::Hello { from, params, mut members } => {
            members.push(from.clone());
            match cluster.observe(params, &members) {
                Ok(()) => cluster.hello_reply(),
                Err(e) => {
                    tracing::error!(peer = %from.node_id, error = %e, "refusing member");
                    Response::Error(e)
                }
            }
        }
        Request::Ping => Response::Pong,
        Request::Replica(_) | Request::Batch(_) => {
            Response::Error("replica calls are served by `serve`".into())
        }
        request @ (Request::TreeSummary { .. }
        | Request::TreeLeaves { .. }
        | Request::SyncLeaves { .. }
        | Request::ReapCheck { .. }
        | Request::Reap { .. }) => state.anti_entropy.serve(request).await,
        Request::MergeBatch { items } => {
            let count = items.len();
            match state.local.merge_batch(items).await {
                Ok(()) => Response::MergedBatch { count },
                Err(e) => Response::Error(e.to_string()),
            }
        }
        Request::Coordinate { bucket, key, context, content, w, dw, sloppy, timeout_ms } => {
            if bucket.is_empty() || bucket.len() > 255 || key.is_empty() {
                return Response::Error("invalid bucket or key".into());
            }
            let key = state.coordinator.key(Bytes::from(bucket), Bytes::from(key));
            let n = state.coordinator.replicas();
            let opts = WriteOptions {
                w: w.clamp(1, n),
                dw: dw.min(w),
                sloppy,
                timeout: Duration::from_millis(timeout_ms.clamp(1, 60_000)),
            };
            match state.coordinator.coordinate(key, context, content, opts).await {
                Ok(obj) => Response::Written(obj),
                Err(CoordinatorError::QuorumFailed { required, succeeded, replicas }) => {
                    Response::QuorumFailed { required, succeeded, replicas }
                }
                Err(CoordinatorError::TooManySiblings { count, limit }) => {
                    Response::TooManySiblings { count, limit }
                }
                Err(e) => Response::Error(e.to_string()),
            }
        }
    }
}
