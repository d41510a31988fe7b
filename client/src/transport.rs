//! One HTTP exchange with one node, and turning its answer into values or errors.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;

use crate::error::{Error, ReplicaFailure};
use crate::multipart;
use crate::value::{Context, DEFAULT_CONTENT_TYPE, Object, Value};

pub(crate) const CONTEXT_HEADER: &str = "x-causal-context";

/// A pooled HTTP/1.1 client: keep-alive connections per node, TCP_NODELAY.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    /// `Authorization: Bearer …`, sent with every request when set.
    auth: Option<HeaderValue>,
}

/// A node's whole answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub node: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Transport {
    /// `pool_idle` must stay below the node's keep-alive (30 s), or a request can go out
    /// on a connection the node is closing.
    ///
    /// # Errors
    /// A token that cannot be a header value.
    pub fn new(
        pool_idle: Duration,
        connect_timeout: Duration,
        token: Option<&str>,
    ) -> Result<Transport, Error> {
        let auth = token
            .map(|t| {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| Error::invalid("invalid_token", "a token is visible ASCII"))?;
                v.set_sensitive(true);
                Ok::<_, Error>(v)
            })
            .transpose()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(pool_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Transport { http, auth })
    }

    /// Sends one request to `node` (`host:port`) and reads the whole answer. Gives up with
    /// [`Error::Timeout`] after `wait`; a connection failure is [`Error::Transport`].
    pub async fn send(
        &self,
        node: &str,
        method: Method,
        path_and_query: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
        wait: Duration,
    ) -> Result<Reply, Error> {
        let mut req = Request::builder().method(method).uri(crate::addr::uri(node, path_and_query)?);
        if let Some(h) = req.headers_mut() {
            h.extend(headers);
            if let Some(auth) = &self.auth {
                h.insert(hyper::header::AUTHORIZATION, auth.clone());
            }
        }
        let req = req.body(Full::new(body)).map_err(|e| Error::invalid("invalid_request", e.to_string()))?;
        let exchange = async {
            let transport_err = |e: &dyn std::fmt::Display| Error::Transport {
                node: node.to_string(),
                message: e.to_string(),
            };
            let resp = self.http.request(req).await.map_err(|e| transport_err(&chain(&e)))?;
            let (parts, body) = resp.into_parts();
            // Always read the body to the end, so the connection goes back to the pool.
            let body = body.collect().await.map_err(|e| transport_err(&e))?.to_bytes();
            Ok(Reply { node: node.to_string(), status: parts.status, headers: parts.headers, body })
        };
        match tokio::time::timeout(wait, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { timeout: wait }),
        }
    }
}

/// An error and its sources on one line: the legacy client's own message is terse
/// ("client error (Connect)"); the sources say what happened ("Connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = s.source();
    }
    out
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn protocol(&self, message: impl Into<String>) -> Error {
        Error::Protocol { node: self.node.clone(), message: message.into() }
    }

    /// The `X-Causal-Context` of the answer, if any.
    pub fn context(&self) -> Result<Option<Context>, Error> {
        self.header(CONTEXT_HEADER)
            .map(|token| {
                Context::from_token(token)
                    .map_err(|_| self.protocol(format!("X-Causal-Context `{token}` is not a token")))
            })
            .transpose()
    }

    fn required_context(&self) -> Result<Context, Error> {
        self.context()?
            .ok_or_else(|| self.protocol(format!("a {} answer without X-Causal-Context", self.status)))
    }

    /// The object of a 200 or 300 answer (GET, or PUT with `return_body`).
    pub fn object(self) -> Result<Object, Error> {
        let context = self.required_context()?;
        let content_type = self.header(CONTENT_TYPE.as_str()).unwrap_or(DEFAULT_CONTENT_TYPE);
        let siblings = match self.status {
            StatusCode::OK => vec![Value::with_content_type(content_type, self.body.clone())],
            StatusCode::MULTIPLE_CHOICES => {
                let boundary = multipart::boundary(content_type).ok_or_else(|| {
                    self.protocol(format!("300 with content type `{content_type}`, not multipart/mixed"))
                })?;
                let parts = multipart::parse(&self.body, boundary)
                    .ok_or_else(|| self.protocol("a 300 body that is not well-formed multipart/mixed"))?;
                if parts.is_empty() {
                    return Err(self.protocol("a 300 with no siblings"));
                }
                parts
            }
            other => return Err(self.protocol(format!("status {other} where a value was expected"))),
        };
        Ok(Object { siblings, context })
    }

    /// The new context of a 204 (PUT or DELETE).
    pub fn written(self) -> Result<Context, Error> {
        if self.status != StatusCode::NO_CONTENT {
            return Err(self.protocol(format!("status {} where 204 was expected", self.status)));
        }
        self.required_context()
    }

    /// The JSON body of a 200 (or a 202, for requests a node queues).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        if self.status != StatusCode::OK && self.status != StatusCode::ACCEPTED {
            return Err(self.protocol(format!("status {} where 200 was expected", self.status)));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| self.protocol(format!("a JSON body that does not parse: {e}")))
    }

    /// Whether the status is an error (4xx or 5xx).
    pub fn is_error(&self) -> bool {
        self.status.is_client_error() || self.status.is_server_error()
    }

    /// The error an error status means (API.md, "Errors").
    pub fn error(self) -> Error {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Body {
            error: String,
            message: String,
            required: usize,
            succeeded: usize,
            replicas: Vec<ReplicaFailure>,
        }
        let body: Body = serde_json::from_slice(&self.body).unwrap_or_else(|_| Body {
            error: "unknown".into(),
            message: String::from_utf8_lossy(&self.body[..self.body.len().min(512)]).into_owned(),
            ..Body::default()
        });
        match (self.status, body.error.as_str()) {
            (StatusCode::NOT_FOUND, "not_found") => match self.context() {
                Ok(context) => Error::NotFound { context },
                Err(e) => e,
            },
            (StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE, _) => {
                Error::InvalidInput { code: body.error, message: body.message }
            }
            (StatusCode::CONFLICT, _) => Error::TooManySiblings { message: body.message },
            (StatusCode::SERVICE_UNAVAILABLE, "quorum_failed") => Error::QuorumFailed {
                node: self.node,
                required: body.required,
                succeeded: body.succeeded,
                replicas: body.replicas,
            },
            (StatusCode::SERVICE_UNAVAILABLE, _) => {
                Error::Unavailable { node: self.node, message: body.message }
            }
            (status, _) => Error::Server {
                node: self.node,
                status: status.as_u16(),
                code: body.error,
                message: body.message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        Reply {
            node: "n1:7070".into(),
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn errors_follow_the_api_statuses() {
        let e = reply(404, &[(CONTEXT_HEADER, "AQE")], r#"{"error":"not_found","message":"m"}"#).error();
        assert!(matches!(&e, Error::NotFound { context: Some(c) } if c.as_str() == "AQE"));
        let e = reply(404, &[], r#"{"error":"no_such_route","message":"m"}"#).error();
        assert!(matches!(e, Error::Server { status: 404, .. }));
        let e = reply(413, &[], r#"{"error":"value_too_large","message":"m","limit":1}"#).error();
        assert!(matches!(&e, Error::InvalidInput { code, .. } if code == "value_too_large"));
        let e = reply(
            503,
            &[],
            r#"{"error":"quorum_failed","message":"m","required":2,"succeeded":1,
                "replicas":[{"node":"node-2","error":"timeout"}]}"#,
        )
        .error();
        match e {
            Error::QuorumFailed { required, succeeded, replicas, node } => {
                assert_eq!((required, succeeded, node.as_str()), (2, 1, "n1:7070"));
                assert_eq!(replicas[0].node, "node-2");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            reply(503, &[], r#"{"error":"unavailable","message":"bye"}"#).error(),
            Error::Unavailable { .. }
        ));
        assert!(matches!(reply(502, &[], "<html>proxy</html>").error(), Error::Server { status: 502, .. }));
    }

    #[test]
    fn objects_need_a_context() {
        let r = reply(200, &[("content-type", "text/plain")], "v");
        assert!(matches!(r.object(), Err(Error::Protocol { .. })));
        let r = reply(200, &[("content-type", "text/plain"), (CONTEXT_HEADER, "AQE")], "v");
        assert_eq!(r.object().unwrap().value(), Some(&Value::with_content_type("text/plain", "v")));
    }
}
