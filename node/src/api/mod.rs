//! The client API of API.md: object endpoints, health, status, ring and metrics.
//!
//! Parsing and validation happen here; statuses are decided only by
//! [`Error::status`](crate::error::Error::status); the work is the coordinator's.

mod console;
mod layout;
mod list;
pub mod params;
mod response;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::SemaphorePermit;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use quorumkv_storage::{Content, VersionVector};
use serde_json::json;

use params::ObjectParams;
use response::Tokens;

use crate::coordinator::{ReadOptions, WriteOptions};
use crate::error::Error;
use crate::key::Key;
use crate::state::NodeState;

pub const CONTEXT_HEADER: &str = "x-causal-context";
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

pub type Body = Full<Bytes>;

/// Answers one client request. Never fails: every error becomes a JSON response.
pub async fn handle(
    state: Arc<NodeState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let started = Instant::now();
    // The body is read before the request takes a slot among `max_requests_in_flight`:
    // clients that send slowly hold their connection (bounded by the read deadline and
    // the connection cap), never the node's capacity to serve others.
    let (op, result) = match admit(&state, req).await {
        Err((op, e)) => (op, Err(e)),
        Ok((req, permit)) => {
            let answer = route(&state, req).await;
            drop(permit);
            answer
        }
    };
    let response = match result {
        Ok(resp) => resp,
        Err(e) => {
            if let Error::Internal(why) = &e {
                tracing::error!(op, error = %why, "request failed inside the node");
            }
            response::error(&e)
        }
    };
    state.metrics.observe_request(op, response.status().as_u16(), started.elapsed().as_secs_f64());
    Ok(response)
}

/// Lets a request in: its bearer token checked, its body read, a slot among
/// `max_requests_in_flight` taken (held until the permit is dropped). `/v1/health` needs
/// neither token nor slot, so a load balancer always gets an answer; the console's page
/// needs no token (its data calls do). A refusal comes with the operation to count it
/// under.
async fn admit(
    state: &NodeState,
    req: Request<Incoming>,
) -> Result<(Request<Bytes>, Option<SemaphorePermit<'_>>), (&'static str, Error)> {
    let health = req.uri().path() == "/v1/health";
    // The page holds no data, and a browser navigating to it cannot send a token.
    let console_page = req.method() == Method::GET && console::is_page(req.uri().path());
    if !health && !console_page {
        authorize(state, &req).map_err(|e| ("refused", e))?;
    }
    let req = collect(state, req).await.map_err(|e| ("body", e))?;
    if health {
        return Ok((req, None));
    }
    match state.in_flight.try_acquire() {
        Ok(permit) => Ok((req, Some(permit))),
        Err(_) => {
            state.metrics.refused("api", "overloaded");
            Err(("refused", Error::Overloaded { limit: state.config.max_requests_in_flight }))
        }
    }
}

/// Checks the bearer token when client tokens are configured: any for a read, a
/// read-write one for anything else.
fn authorize(state: &NodeState, req: &Request<Incoming>) -> Result<(), Error> {
    if !state.config.client_tokens.is_empty() {
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(presented) = presented else {
            state.metrics.refused("api", "unauthorized");
            return Err(Error::Unauthorized(
                "this node requires a bearer token: send `Authorization: Bearer TOKEN` (quorumkv --token)"
                    .into(),
            ));
        };
        let role = state.config.client_tokens.iter().find_map(|t| {
            let (role, token) = t.0.split_once(':')?;
            same(token.as_bytes(), presented.as_bytes()).then_some(role)
        });
        let reads = matches!(*req.method(), Method::GET | Method::HEAD);
        match role {
            None => {
                state.metrics.refused("api", "unauthorized");
                return Err(Error::Unauthorized(
                    "the bearer token is not one of this node's client tokens".into(),
                ));
            }
            Some("ro") if !reads => {
                state.metrics.refused("api", "forbidden");
                return Err(Error::Forbidden(
                    "this token is read-only: writes, deletes and admin changes need a read-write token"
                        .into(),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Reads the whole body: up to `max_value_bytes` for a PUT of an object, 64 KiB for
/// anything else, within `request_read_timeout_ms`.
async fn collect(state: &NodeState, req: Request<Incoming>) -> Result<Request<Bytes>, Error> {
    let object_put = *req.method() == Method::PUT && req.uri().path().starts_with("/v1/kv/");
    let limit = if object_put { state.config.max_value_bytes } else { 64 * 1024 };
    let (parts, body) = req.into_parts();
    let declared =
        parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let deadline = Duration::from_millis(state.config.request_read_timeout_ms);
    let body = read_body(body, declared, limit, deadline).await?;
    Ok(Request::from_parts(parts, body))
}

/// Compares two secrets in time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn route(state: &NodeState, req: Request<Bytes>) -> (&'static str, Result<Response<Body>, Error>) {
    let path = req.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/v1/kv/") {
        let Some((bucket, key)) = rest.split_once('/') else {
            // `/v1/kv/{bucket}`: the bucket's keys.
            return match *req.method() {
                Method::GET => ("list", list::handle(state, rest, req.uri().query()).await),
                _ => ("invalid", Err(Error::MethodNotAllowed)),
            };
        };
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        return match *req.method() {
            Method::GET => ("get", get_object(state, req, &bucket, &key).await),
            Method::PUT => ("put", put_object(state, req, &bucket, &key).await),
            Method::DELETE => ("delete", delete_object(state, req, &bucket, &key).await),
            _ => ("invalid", Err(Error::MethodNotAllowed)),
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/admin/layout")
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return ("admin", layout::handle(state, req.method(), rest, req.uri().query()).await);
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/v1/health") => match state.cluster.layout() {
            Some(_) => ("health", Ok(response::json(StatusCode::OK, &json!({"status": "ok"})))),
            // Serving nothing until the node has the cluster's layout.
            None => {
                ("health", Err(Error::Unavailable("no cluster layout yet: waiting to meet the seeds".into())))
            }
        },
        (&Method::GET, "/v1/status") => {
            ("status", Ok(response::json(StatusCode::OK, &state.status_json().await)))
        }
        (&Method::GET, "/v1/ring") => {
            ("ring", state.ring_json().map(|ring| response::json(StatusCode::OK, &ring)))
        }
        (&Method::GET, "/metrics") => ("metrics", Ok(metrics(state).await)),
        (&Method::GET, "/" | "/console") => ("console", Ok(console::page(&req))),
        (_, "/" | "/console") => ("invalid", Err(Error::MethodNotAllowed)),
        (&Method::POST, "/v1/admin/anti-entropy") => {
            ("admin", trigger_anti_entropy(state, req.uri().query()))
        }
        (_, "/v1/health" | "/v1/status" | "/v1/ring" | "/metrics" | "/v1/admin/anti-entropy") => {
            ("invalid", Err(Error::MethodNotAllowed))
        }
        _ => ("invalid", Err(Error::NoRoute)),
    }
}

async fn metrics(state: &NodeState) -> Response<Body> {
    let text = state.metrics_text().await;
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// `POST /v1/admin/anti-entropy[?partition=P]`: queue an exchange now.
fn trigger_anti_entropy(state: &NodeState, query: Option<&str>) -> Result<Response<Body>, Error> {
    let mut partition = None;
    for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        match pair.split_once('=') {
            Some(("partition", v)) => {
                let p: u32 = v.parse().map_err(|_| params::invalid("partition", v, "a partition number"))?;
                if p >= state.config.partitions {
                    return Err(params::invalid(
                        "partition",
                        v,
                        &format!("0 to {}", state.config.partitions - 1),
                    ));
                }
                partition = Some(p);
            }
            _ => {
                return Err(Error::bad(
                    "invalid_parameter",
                    format!("unknown parameter `{pair}`; known: partition"),
                ));
            }
        }
    }
    let queued = state.anti_entropy.trigger(partition);
    Ok(response::json(StatusCode::ACCEPTED, &json!({"queued": queued})))
}

fn wants_json(req: &Request<Bytes>) -> bool {
    req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"))
}

fn read_options(state: &NodeState, p: &ObjectParams) -> Result<ReadOptions, Error> {
    let n = state.coordinator.replicas();
    Ok(ReadOptions {
        r: params::resolve("r", p.r.unwrap_or(state.config.default_r), n)?,
        timeout: p.timeout.unwrap_or(Duration::from_millis(state.config.default_timeout_ms)),
        sloppy: p.sloppy.unwrap_or(true),
    })
}

fn write_options(state: &NodeState, p: &ObjectParams) -> Result<WriteOptions, Error> {
    let n = state.coordinator.replicas();
    let w = params::resolve("w", p.w.unwrap_or(state.config.default_w), n)?;
    let dw = p.dw.unwrap_or(state.config.default_dw.min(w));
    if dw > w {
        return Err(params::invalid("dw", &dw.to_string(), &format!("0 to w ({w})")));
    }
    Ok(WriteOptions {
        w,
        dw,
        sloppy: p.sloppy.unwrap_or(true),
        timeout: p.timeout.unwrap_or(Duration::from_millis(state.config.default_timeout_ms)),
    })
}

async fn get_object(
    state: &NodeState,
    req: Request<Bytes>,
    bucket: &str,
    key: &str,
) -> Result<Response<Body>, Error> {
    let key = Key::new(state.cluster.params().partitions, params::bucket(bucket), params::key(key)?)?;
    let p = ObjectParams::parse(req.uri().query())?;
    let opts = read_options(state, &p)?;
    let object = if p.local {
        state.coordinator.get_local(key.clone()).await?
    } else {
        state.coordinator.get(key.clone(), opts).await?
    };
    response::object(object.as_ref(), wants_json(&req), Tokens { signer: &state.tokens, key: &key })
}

/// What every write request carries, parsed and checked.
struct WriteRequest {
    key: Key,
    params: ObjectParams,
    opts: WriteOptions,
    context: VersionVector,
}

fn write_request(
    state: &NodeState,
    req: &Request<Bytes>,
    bucket: &str,
    key: &str,
) -> Result<WriteRequest, Error> {
    let key = Key::new(state.cluster.params().partitions, params::bucket(bucket), params::key(key)?)?;
    let params = ObjectParams::parse(req.uri().query())?;
    let opts = write_options(state, &params)?;
    let context =
        params::context(req.headers().get(CONTEXT_HEADER).map(|v| v.as_bytes()), &state.tokens, &key)?;
    Ok(WriteRequest { key, params, opts, context })
}

async fn put_object(
    state: &NodeState,
    req: Request<Bytes>,
    bucket: &str,
    key: &str,
) -> Result<Response<Body>, Error> {
    let w = write_request(state, &req, bucket, key)?;
    let content_type = match req.headers().get(CONTENT_TYPE) {
        None => DEFAULT_CONTENT_TYPE.to_owned(),
        Some(v) => v
            .to_str()
            .map_err(|_| Error::bad("invalid_content_type", "Content-Type must be visible ASCII"))?
            .to_owned(),
    };
    let json = wants_json(&req);
    let value = req.into_body();
    let object =
        state.coordinator.put(w.key.clone(), w.context, Content::value(content_type, value), w.opts).await?;
    let tokens = Tokens { signer: &state.tokens, key: &w.key };
    if w.params.return_body {
        response::object(Some(&object), json, tokens)
    } else {
        Ok(response::written(object.context(), tokens))
    }
}

async fn delete_object(
    state: &NodeState,
    req: Request<Bytes>,
    bucket: &str,
    key: &str,
) -> Result<Response<Body>, Error> {
    let w = write_request(state, &req, bucket, key)?;
    let object = state.coordinator.put(w.key.clone(), w.context, Content::tombstone_now(), w.opts).await?;
    Ok(response::written(object.context(), Tokens { signer: &state.tokens, key: &w.key }))
}

/// How much of a body over the limit is read and thrown away before the 413, so the
/// client (still sending) reads the answer instead of a reset connection.
const DRAIN_BYTES: usize = 8 * 1024 * 1024;

/// Reads a request body of at most `limit` bytes within `deadline`; more is a 413 before
/// anything is stored, slower a 408. The bytes go on to storage and to every replica
/// without being copied again.
async fn read_body(
    mut body: Incoming,
    declared: Option<u64>,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, Error> {
    if declared.is_some_and(|len| len > limit as u64) {
        drain(&mut body, deadline).await;
        return Err(Error::TooLarge { limit });
    }
    let read = async {
        let mut taken = Vec::new();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| Error::bad("bad_body", format!("the request body could not be read: {e}")))?;
            if let Ok(data) = frame.into_data() {
                total += data.len();
                if total > limit {
                    return Err(Error::TooLarge { limit });
                }
                taken.push(data);
            }
        }
        Ok(match taken.len() {
            1 => taken.pop().unwrap_or_default(),
            _ => Bytes::from(taken.concat()),
        })
    };
    let after_ms = deadline.as_millis() as u64;
    match tokio::time::timeout(deadline, read).await {
        Ok(Err(Error::TooLarge { limit })) => {
            drain(&mut body, deadline).await;
            Err(Error::TooLarge { limit })
        }
        Ok(result) => result,
        Err(_) => Err(Error::SlowBody { after_ms }),
    }
}

/// Reads and discards up to [`DRAIN_BYTES`] of what is left of `body`, for at most `deadline`.
async fn drain(body: &mut Incoming, deadline: Duration) {
    let discard = async {
        let mut total = 0usize;
        while total < DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => total += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(deadline.min(Duration::from_secs(2)), discard).await;
}
