//! The request builders that [`Client`]'s methods return. Set per-request options on
//! them, then `.await` them.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};

use crate::client::{Client, ObjectCall};
use crate::error::Error;
use crate::options::{Options, Quorum};
use crate::transport::CONTEXT_HEADER;
use crate::value::{Change, Context, Object, Value};

/// The future a request builder turns into when awaited.
pub type ResponseFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Per-request option setters shared by the builders.
macro_rules! option_setters {
    (read) => {
        /// Replicas this read waits for (`r`).
        pub fn r(mut self, r: Quorum) -> Self {
            self.options.r = Some(r);
            self
        }

        /// A strict read (`sloppy=false`): only the key's primary replicas are asked and
        /// count toward `r`; a copy a fallback keeps for a primary that is down never does.
        pub fn strict(mut self) -> Self {
            self.options.sloppy = Some(false);
            self
        }
    };
    (write) => {
        /// Replicas this write waits for (`w`).
        pub fn w(mut self, w: Quorum) -> Self {
            self.options.w = Some(w);
            self
        }

        /// Of the `w` acknowledgements, how many must come after an fsync (`dw`).
        pub fn dw(mut self, dw: usize) -> Self {
            self.options.dw = Some(dw);
            self
        }

        /// Whether fallback nodes may count toward `w` (`sloppy`).
        pub fn sloppy(mut self, sloppy: bool) -> Self {
            self.options.sloppy = Some(sloppy);
            self
        }
    };
    (common) => {
        /// The deadline of this call, retries included.
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.options.timeout = Some(timeout);
            self
        }

        /// Sets every option at once (unset fields fall back to the client's defaults).
        pub fn options(mut self, options: Options) -> Self {
            self.options = options;
            self
        }
    };
}

fn read_query(o: &Options) -> Vec<(&'static str, String)> {
    let mut q: Vec<(&'static str, String)> = o.r.map(|r| ("r", r.to_string())).into_iter().collect();
    if let Some(sloppy) = o.sloppy {
        q.push(("sloppy", sloppy.to_string()));
    }
    q
}

fn write_query(o: &Options) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(w) = o.w {
        q.push(("w", w.to_string()));
    }
    if let Some(dw) = o.dw {
        q.push(("dw", dw.to_string()));
    }
    if let Some(sloppy) = o.sloppy {
        q.push(("sloppy", sloppy.to_string()));
    }
    q
}

fn context_header(context: Option<&Context>) -> Vec<(HeaderName, HeaderValue)> {
    context
        .and_then(|c| HeaderValue::from_str(c.as_str()).ok())
        .map(|v| (HeaderName::from_static(CONTEXT_HEADER), v))
        .into_iter()
        .collect()
}

/// A read, from [`Client::get`]. Await it for the [`Object`].
#[derive(Debug)]
#[must_use = "a request does nothing until it is awaited"]
pub struct Get {
    client: Client,
    bucket: String,
    key: Bytes,
    options: Options,
}

impl Get {
    pub(crate) fn new(client: Client, bucket: &str, key: &[u8]) -> Get {
        Get {
            client,
            bucket: bucket.to_string(),
            key: Bytes::copy_from_slice(key),
            options: Options::default(),
        }
    }

    option_setters!(read);
    option_setters!(common);

    async fn run(self, deadline: Option<Instant>) -> Result<Object, Error> {
        let options = self.options.or(self.client.defaults());
        options.validate()?;
        let timeout = self.client.timeout(options.timeout);
        let reply = self
            .client
            .object_request(ObjectCall {
                method: Method::GET,
                bucket: &self.bucket,
                key: &self.key,
                query: read_query(&options),
                headers: Vec::new(),
                body: Bytes::new(),
                deadline: deadline.unwrap_or_else(|| Instant::now() + timeout),
                timeout,
            })
            .await?;
        reply.object()
    }
}

impl IntoFuture for Get {
    type Output = Result<Object, Error>;
    type IntoFuture = ResponseFuture<'static, Object>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run(None))
    }
}

/// A write, from [`Client::put`]. Await it for the new [`Context`], or call
/// [`return_body`](Put::return_body) for the resulting [`Object`].
#[derive(Debug)]
#[must_use = "a request does nothing until it is awaited"]
pub struct Put {
    client: Client,
    bucket: String,
    key: Bytes,
    value: Value,
    context: Option<Context>,
    options: Options,
}

impl Put {
    pub(crate) fn new(client: Client, bucket: &str, key: &[u8], value: Value) -> Put {
        Put {
            client,
            bucket: bucket.to_string(),
            key: Bytes::copy_from_slice(key),
            value,
            context: None,
            options: Options::default(),
        }
    }

    /// Supersede the versions this context covers (from an earlier read or write of the
    /// same key). `None` keeps the write blind.
    pub fn context<'c>(mut self, context: impl Into<Option<&'c Context>>) -> Put {
        self.context = context.into().cloned();
        self
    }

    option_setters!(write);
    option_setters!(common);

    /// Sends the write and answers the key as it is after it, as a read would show it
    /// (`return_body=true`): the new value, or siblings if concurrent writes survive.
    ///
    /// # Errors
    /// As awaiting the `Put`.
    pub async fn return_body(self) -> Result<Object, Error> {
        self.run(true, None).await?.object()
    }

    async fn run(
        self,
        return_body: bool,
        deadline: Option<Instant>,
    ) -> Result<crate::transport::Reply, Error> {
        let options = self.options.or(self.client.defaults());
        options.validate()?;
        let timeout = self.client.timeout(options.timeout);
        let content_type = HeaderValue::from_str(&self.value.content_type).map_err(|_| {
            Error::invalid(
                "invalid_content_type",
                format!("content type `{}` is not visible ASCII", self.value.content_type),
            )
        })?;
        let mut headers = context_header(self.context.as_ref());
        headers.push((CONTENT_TYPE, content_type));
        let mut query = write_query(&options);
        if return_body {
            query.push(("return_body", "true".into()));
        }
        self.client
            .object_request(ObjectCall {
                method: Method::PUT,
                bucket: &self.bucket,
                key: &self.key,
                query,
                headers,
                body: self.value.bytes.clone(),
                deadline: deadline.unwrap_or_else(|| Instant::now() + timeout),
                timeout,
            })
            .await
    }
}

impl IntoFuture for Put {
    type Output = Result<Context, Error>;
    type IntoFuture = ResponseFuture<'static, Context>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.run(false, None).await?.written() })
    }
}

/// A delete, from [`Client::delete`]. Await it for the tombstone's [`Context`].
#[derive(Debug)]
#[must_use = "a request does nothing until it is awaited"]
pub struct Delete {
    client: Client,
    bucket: String,
    key: Bytes,
    context: Option<Context>,
    options: Options,
}

impl Delete {
    pub(crate) fn new(client: Client, bucket: &str, key: &[u8]) -> Delete {
        Delete {
            client,
            bucket: bucket.to_string(),
            key: Bytes::copy_from_slice(key),
            context: None,
            options: Options::default(),
        }
    }

    /// Delete the versions this context covers (from a read of the key).
    pub fn context<'c>(mut self, context: impl Into<Option<&'c Context>>) -> Delete {
        self.context = context.into().cloned();
        self
    }

    option_setters!(write);
    option_setters!(common);

    async fn run(self, deadline: Option<Instant>) -> Result<Context, Error> {
        let options = self.options.or(self.client.defaults());
        options.validate()?;
        let timeout = self.client.timeout(options.timeout);
        self.client
            .object_request(ObjectCall {
                method: Method::DELETE,
                bucket: &self.bucket,
                key: &self.key,
                query: write_query(&options),
                headers: context_header(self.context.as_ref()),
                body: Bytes::new(),
                deadline: deadline.unwrap_or_else(|| Instant::now() + timeout),
                timeout,
            })
            .await?
            .written()
    }
}

impl IntoFuture for Delete {
    type Output = Result<Context, Error>;
    type IntoFuture = ResponseFuture<'static, Context>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run(None))
    }
}

type ChangeFn<'a> = Box<dyn FnOnce(Option<Value>) -> Change + Send + 'a>;
type ResolveFn<'a> = Box<dyn FnOnce(Vec<Value>) -> Value + Send + 'a>;

/// A read-modify-write, from [`Client::update`]. Await it for the new [`Context`].
///
/// The read uses `r`, the write `w`, `dw` and `sloppy`; the timeout covers both.
#[must_use = "a request does nothing until it is awaited"]
pub struct Update<'a> {
    client: Client,
    bucket: String,
    key: Bytes,
    change: ChangeFn<'a>,
    resolve: Option<ResolveFn<'a>>,
    options: Options,
}

impl std::fmt::Debug for Update<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Update")
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field("resolver", &self.resolve.is_some())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<'a> Update<'a> {
    pub(crate) fn new(client: Client, bucket: &str, key: &[u8], change: ChangeFn<'a>) -> Update<'a> {
        Update {
            client,
            bucket: bucket.to_string(),
            key: Bytes::copy_from_slice(key),
            change,
            resolve: None,
            options: Options::default(),
        }
    }

    /// Merges concurrent versions (two or more, in no particular order) into one value
    /// before the change is applied. It is called only when the read finds siblings.
    pub fn resolve<R>(mut self, resolver: R) -> Update<'a>
    where
        R: FnOnce(Vec<Value>) -> Value + Send + 'a,
    {
        self.resolve = Some(Box::new(resolver));
        self
    }

    option_setters!(read);
    option_setters!(write);
    option_setters!(common);

    async fn run(self) -> Result<Context, Error> {
        let options = self.options.or(self.client.defaults());
        options.validate()?;
        let timeout = self.client.timeout(options.timeout);
        let deadline = Instant::now() + timeout;
        let read = Get {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            options: options.clone(),
        };
        let (current, context) = match read.run(Some(deadline)).await {
            Ok(mut obj) => {
                let value = match (obj.siblings.len(), self.resolve) {
                    (1, _) => obj.siblings.pop(),
                    (_, Some(resolve)) => Some(resolve(obj.siblings)),
                    (n, None) => return Err(Error::Unresolved { siblings: n }),
                };
                (value, Some(obj.context))
            }
            Err(Error::NotFound { context }) => (None, context),
            Err(e) => return Err(e),
        };
        match (self.change)(current) {
            Change::Put(value) => {
                let write =
                    Put { client: self.client, bucket: self.bucket, key: self.key, value, context, options };
                write.run(false, Some(deadline)).await?.written()
            }
            Change::Delete => {
                let delete =
                    Delete { client: self.client, bucket: self.bucket, key: self.key, context, options };
                delete.run(Some(deadline)).await
            }
        }
    }
}

impl<'a> IntoFuture for Update<'a> {
    type Output = Result<Context, Error>;
    type IntoFuture = ResponseFuture<'a, Context>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strict_read_asks_for_primaries_only() {
        let strict = Options { sloppy: Some(false), ..Options::default() };
        assert_eq!(read_query(&strict), vec![("sloppy", "false".to_string())]);
        assert_eq!(read_query(&Options::default()), vec![], "the node's default otherwise");
    }
}
