//! Building responses: values, siblings (multipart or JSON), errors.

use std::hash::{BuildHasher, Hasher};

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use quorumkv_storage::{Content, Object, TokenKey, VersionVector, encode_context};
use serde_json::json;

use super::{Body, CONTEXT_HEADER};
use crate::error::Error;
use crate::key::Key;

/// Makes the context tokens of one key: signed, and good for that key only.
#[derive(Clone, Copy)]
pub struct Tokens<'a> {
    pub signer: &'a TokenKey,
    pub key: &'a Key,
}

impl Tokens<'_> {
    fn token(&self, context: &VersionVector) -> String {
        encode_context(context, self.signer, self.key.bucket(), self.key.key())
    }
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn error(e: &Error) -> Response<Body> {
    let mut resp = json(e.status(), &e.body());
    if let Some(ctx) = e.context() {
        set_context_str(&mut resp, ctx);
    }
    match e {
        Error::Overloaded { .. } => {
            resp.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Error::Unauthorized(_) => {
            resp.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    resp
}

/// 204 with the new context, the answer to a write.
pub fn written(context: &VersionVector, tokens: Tokens<'_>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    set_context_str(&mut resp, &tokens.token(context));
    resp
}

/// The answer to a GET (or a PUT with `return_body=true`): 200, 300 or 404.
pub fn object(object: Option<&Object>, as_json: bool, tokens: Tokens<'_>) -> Result<Response<Body>, Error> {
    let Some(object) = object else {
        return Err(Error::NotFound { context: None });
    };
    let live = object.live();
    if live.is_empty() {
        return Err(Error::NotFound { context: Some(tokens.token(object.context())) });
    }
    let status = if live.len() == 1 { StatusCode::OK } else { StatusCode::MULTIPLE_CHOICES };
    let mut resp = if as_json {
        let siblings: Vec<_> = live
            .iter()
            .filter_map(|c| match c {
                Content::Value { content_type, bytes } => Some(json!({
                    "content_type": content_type,
                    "value_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
                })),
                Content::Tombstone { .. } => None,
            })
            .collect();
        json(status, &json!({"context": tokens.token(object.context()), "siblings": siblings}))
    } else if let [Content::Value { content_type, bytes }] = live.as_slice() {
        let mut resp = Response::new(Full::new(bytes.clone()));
        resp.headers_mut().insert(CONTENT_TYPE, header_value(content_type));
        resp
    } else {
        multipart(&live)
    };
    *resp.status_mut() = status;
    set_context_str(&mut resp, &tokens.token(object.context()));
    Ok(resp)
}

/// `multipart/mixed`, one part per sibling, each with its own Content-Type.
fn multipart(live: &[&Content]) -> Response<Body> {
    let boundary = boundary_for(live);
    let mut body = BytesMut::new();
    for c in live {
        if let Content::Value { content_type, bytes } = c {
            body.put_slice(b"--");
            body.put_slice(boundary.as_bytes());
            body.put_slice(b"\r\nContent-Type: ");
            body.put_slice(content_type.as_bytes());
            body.put_slice(b"\r\n\r\n");
            body.put_slice(bytes);
            body.put_slice(b"\r\n");
        }
    }
    body.put_slice(b"--");
    body.put_slice(boundary.as_bytes());
    body.put_slice(b"--\r\n");
    let mut resp = Response::new(Full::new(body.freeze()));
    resp.headers_mut().insert(CONTENT_TYPE, header_value(&format!("multipart/mixed; boundary={boundary}")));
    resp
}

/// A boundary that occurs in none of the values.
fn boundary_for(live: &[&Content]) -> String {
    let state = std::collections::hash_map::RandomState::new();
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let mut h = state.build_hasher();
        h.write_u64(attempt);
        let candidate = format!("quorumkv-{:016x}", h.finish());
        let clash = live.iter().any(|c| match c {
            Content::Value { bytes, .. } => bytes.windows(candidate.len()).any(|w| w == candidate.as_bytes()),
            Content::Tombstone { .. } => false,
        });
        if !clash {
            return candidate;
        }
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

fn set_context_str(resp: &mut Response<Body>, context: &str) {
    // base64url is always a valid header value.
    if let Ok(v) = HeaderValue::from_str(context) {
        resp.headers_mut().insert(CONTEXT_HEADER, v);
    }
}
