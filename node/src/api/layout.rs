//! `/v1/admin/layout`: the operator's view of the cluster layout and the staged changes.
//!
//! `GET /v1/admin/layout` shows the layout in force, what is staged and the plan (every
//! partition that moves, from where to where, with the keys and bytes this node holds of
//! it). `POST …/join?node=ID`, `…/leave?node=ID`, `…/remove?node=ID` and
//! `…/replace?old=ID&new=ID` stage a change (refused at once if it could not be
//! committed); `POST …/commit` makes the staged changes the next version; `POST
//! …/cancel` drops them. Staged changes live on the node they were sent to.

use hyper::{Method, StatusCode};
use quorumkv_ring::{NodeId, Ring};
use serde_json::{Value, json};

use super::{Body, response};
use crate::cluster::StageOp;
use crate::error::Error;
use crate::state::NodeState;

/// Serves `rest`, the path after `/v1/admin/layout`.
pub async fn handle(
    state: &NodeState,
    method: &Method,
    rest: &str,
    query: Option<&str>,
) -> Result<hyper::Response<Body>, Error> {
    let cluster = &state.cluster;
    let arg = |name: &str| -> Result<NodeId, Error> {
        query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| NodeId(percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned()))
            .filter(|id| !id.0.is_empty())
            .ok_or_else(|| Error::bad("invalid_parameter", format!("`{name}=NODE_ID` is required")))
    };
    match (method, rest) {
        (&Method::GET, "" | "/") => {}
        (&Method::POST, "/join") => cluster.stage(StageOp::Join(arg("node")?))?,
        (&Method::POST, "/leave") => cluster.stage(StageOp::Leave(arg("node")?))?,
        (&Method::POST, "/remove") => cluster.stage(StageOp::Remove(arg("node")?))?,
        (&Method::POST, "/replace") => cluster.stage(StageOp::Replace(arg("old")?, arg("new")?))?,
        (&Method::POST, "/cancel") => cluster.cancel(),
        (&Method::POST, "/commit") => {
            let version = cluster.commit().await?;
            return Ok(response::json(StatusCode::OK, &json!({"committed": version})));
        }
        (_, "" | "/" | "/join" | "/leave" | "/remove" | "/replace" | "/cancel" | "/commit") => {
            return Err(Error::MethodNotAllowed);
        }
        _ => return Err(Error::NoRoute),
    }
    Ok(response::json(StatusCode::OK, &view(state).await?))
}

/// Every member's capacity, zone and the partitions it is a primary of.
fn placement(ring: &Ring) -> Vec<Value> {
    ring.specs()
        .into_iter()
        .map(|m| {
            let partitions = ring.partitions_of(&m.id).len();
            json!({"node_id": m.id, "capacity": m.weight, "zone": m.zone, "partitions": partitions})
        })
        .collect()
}

/// The layout in force, the staged changes and the plan.
async fn view(state: &NodeState) -> Result<Value, Error> {
    let cluster = &state.cluster;
    let layout = cluster.layout().ok_or_else(|| Error::Unavailable("no cluster layout yet".into()))?;
    let (staged, plan) = cluster.plan();
    let me = cluster.my_id();
    let plan = match plan {
        None => Value::Null,
        Some((next, moves)) => {
            let mut rows = Vec::with_capacity(moves.len());
            for m in &moves {
                // Sizes as this node holds them; a node that does not hold the partition
                // cannot say.
                let (keys, bytes) = if m.before.contains(&me) {
                    let (k, b) = state.replicas.local().partition_size(m.partition).await?;
                    (json!(k), json!(b))
                } else {
                    (Value::Null, Value::Null)
                };
                rows.push(json!({
                    "partition": m.partition,
                    "from": m.before.iter().filter(|n| !m.after.contains(n)).collect::<Vec<_>>(),
                    "to": m.after.iter().filter(|n| !m.before.contains(n)).collect::<Vec<_>>(),
                    "keys": keys,
                    "bytes": bytes,
                }));
            }
            json!({
                "version": next.version(),
                "members": next.ring().members(),
                "placement": placement(next.ring()),
                "partitions_moving": moves.len(),
                "moves": rows,
            })
        }
    };
    Ok(json!({
        "version": layout.version(),
        "digest": format!("{:016x}", layout.digest()),
        "replicas": layout.ring().params().replicas,
        "members": layout.ring().members(),
        "placement": placement(layout.ring()),
        "staged": staged,
        "plan": plan,
    }))
}
