//! `GET /v1/kv/{bucket}`: one page of a bucket's live keys (see [`crate::listing`]).

use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;

use super::{Body, params, response};
use crate::error::Error;
use crate::listing::{self, ListRequest};
use crate::state::NodeState;

/// The query of a listing, parsed and checked.
fn parse(state: &NodeState, bucket: &str, query: Option<&str>) -> Result<ListRequest, Error> {
    let n = state.coordinator.replicas();
    let mut req = ListRequest {
        bucket: params::bucket(bucket),
        prefix: Bytes::new(),
        after: None,
        limit: listing::DEFAULT_PAGE,
        r: params::resolve("r", state.config.default_r, n)?,
        timeout: Duration::from_millis(state.config.default_timeout_ms),
    };
    for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            // Key bytes, percent-encoded as in a path (`+` is a plus sign).
            "prefix" => req.prefix = params::key(value)?,
            "after" => req.after = Some(params::key(value)?),
            "limit" => {
                let expected = format!("a number from 1 to {}", listing::MAX_PAGE);
                req.limit = value.parse().map_err(|_| params::invalid(name, value, &expected))?;
                if !(1..=listing::MAX_PAGE).contains(&req.limit) {
                    return Err(params::invalid(name, value, &expected));
                }
            }
            "r" | "timeout_ms" => {
                let p = params::ObjectParams::parse(Some(pair))?;
                if let Some(r) = p.r {
                    req.r = params::resolve("r", r, n)?;
                }
                if let Some(t) = p.timeout {
                    req.timeout = t;
                }
            }
            _ => {
                return Err(Error::bad(
                    "invalid_parameter",
                    format!(
                        "unknown query parameter `{name}`; a listing knows: prefix, after, limit, r, timeout_ms"
                    ),
                ));
            }
        }
    }
    listing::check(&req.bucket, &req.prefix, req.after.as_deref(), req.limit, listing::MAX_PAGE)?;
    Ok(req)
}

pub async fn handle(
    state: &NodeState,
    bucket: &str,
    query: Option<&str>,
) -> Result<hyper::Response<Body>, Error> {
    let req = parse(state, bucket, query)?;
    let page = listing::page(state, &req).await?;
    let keys: Vec<String> = page.keys.iter().map(|k| listing::display_key(k)).collect();
    let next = page.next.as_deref().map(listing::encode_key);
    Ok(response::json(StatusCode::OK, &json!({"keys": keys, "next": next})))
}
