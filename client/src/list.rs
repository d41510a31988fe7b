//! Key listing: [`Client::list`] pages through a bucket's live keys in byte order
//! (`GET /v1/kv/{bucket}`).
//!
//! Take pages with [`List::next_page`], keys one at a time with [`List::next_key`], or
//! the keys as a stream with [`List::into_stream`]. Each page is one request; the cursor
//! between them is kept here ([`List::cursor`]), so a listing can be resumed later with
//! [`List::resume`].

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use hyper::Method;

use crate::addr;
use crate::{Client, Error, Quorum};

/// A listing of one bucket, page by page. Made by [`Client::list`].
///
/// ```no_run
/// # async fn demo(client: quorumkv_client::Client) -> Result<(), quorumkv_client::Error> {
/// let mut users = client.list("users").prefix("a").page_size(500);
/// while let Some(page) = users.next_page().await? {
///     for key in page {
///         println!("{}", String::from_utf8_lossy(&key));
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct List {
    client: Client,
    bucket: String,
    prefix: Vec<u8>,
    cursor: Option<String>,
    page_size: Option<usize>,
    r: Option<Quorum>,
    timeout: Option<Duration>,
    done: bool,
    buffered: VecDeque<Vec<u8>>,
}

#[derive(serde::Deserialize)]
struct Page {
    keys: Vec<String>,
    next: Option<String>,
}

impl List {
    pub(crate) fn new(client: Client, bucket: &str) -> List {
        List {
            client,
            bucket: bucket.to_owned(),
            prefix: Vec::new(),
            cursor: None,
            page_size: None,
            r: None,
            timeout: None,
            done: false,
            buffered: VecDeque::new(),
        }
    }

    /// Only keys that start with these bytes.
    pub fn prefix(mut self, prefix: impl AsRef<[u8]>) -> List {
        self.prefix = prefix.as_ref().to_vec();
        self
    }

    /// Start after this key.
    pub fn after(mut self, key: impl AsRef<[u8]>) -> List {
        self.cursor = Some(addr::key_query(key.as_ref()));
        self
    }

    /// Start where an earlier listing's [`List::cursor`] left off.
    pub fn resume(mut self, cursor: impl Into<String>) -> List {
        self.cursor = Some(cursor.into());
        self
    }

    /// Keys per request: 1 to 10,000 [default: the node's, 1,000].
    pub fn page_size(mut self, keys: usize) -> List {
        self.page_size = Some(keys);
        self
    }

    /// Replicas of every partition that must answer [default: the client's `r`, else the
    /// node's]. A key whose write `w` replicas acknowledged is listed when `r + w > N`.
    pub fn r(mut self, r: Quorum) -> List {
        self.r = Some(r);
        self
    }

    /// Deadline of each page's request [default: the client's].
    pub fn timeout(mut self, timeout: Duration) -> List {
        self.timeout = Some(timeout);
        self
    }

    /// Where the next page starts (opaque; `None` before the first page and after the
    /// last).
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The next page of keys; `None` once the last page was taken. A page may be empty
    /// while later ones are not (a stretch of deleted keys).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad bucket or page size; [`Error::Unavailable`] when
    /// too few replicas of some partition answered; [`Error::Timeout`]. The listing can
    /// be retried from the same cursor.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Vec<u8>>>, Error> {
        if self.done {
            return Ok(None);
        }
        addr::check_bucket(&self.bucket)?;
        let mut path = format!("/v1/kv/{}?", self.bucket);
        if !self.prefix.is_empty() {
            path.push_str(&format!("prefix={}&", addr::key_query(&self.prefix)));
        }
        if let Some(c) = &self.cursor {
            path.push_str(&format!("after={c}&"));
        }
        if let Some(n) = self.page_size {
            path.push_str(&format!("limit={n}&"));
        }
        if let Some(r) = self.r.or(self.client.defaults().r) {
            path.push_str(&format!("r={r}&"));
        }
        let timeout = self.client.timeout(self.timeout);
        path.push_str(&format!("timeout_ms={}", timeout.as_millis().clamp(1, 60_000)));
        let path = &path;
        let client = &self.client;
        let reply = client
            .attempts(client.known_nodes(), timeout, |node, left| async move {
                client.inner.transport.send(&node, Method::GET, path, Vec::new(), Bytes::new(), left).await
            })
            .await?;
        let page: Page = reply.json()?;
        let keys = page
            .keys
            .iter()
            .map(|k| {
                listed_key(k).ok_or_else(|| Error::Protocol {
                    node: reply.node.clone(),
                    message: format!("a listed key with a bad percent-encoding: {k}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.done = page.next.is_none();
        self.cursor = page.next;
        Ok(Some(keys))
    }

    /// The next key; `None` after the last.
    ///
    /// # Errors
    /// As [`List::next_page`].
    pub async fn next_key(&mut self) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if let Some(key) = self.buffered.pop_front() {
                return Ok(Some(key));
            }
            match self.next_page().await? {
                Some(page) => self.buffered.extend(page),
                None => return Ok(None),
            }
        }
    }

    /// Every key, as a stream that fetches a page whenever it runs dry. It ends after
    /// the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Vec<u8>, Error>> {
        futures_util::stream::unfold(Some(self), |list| async move {
            let mut list = list?;
            match list.next_key().await {
                Ok(Some(key)) => Some((Ok(key), Some(list))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

/// A key as a listing shows it: its text, or percent-encoded when it contains a `%`.
fn listed_key(shown: &str) -> Option<Vec<u8>> {
    if !shown.contains('%') {
        return Some(shown.as_bytes().to_vec());
    }
    let bytes = shown.as_bytes();
    let valid = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    valid.then(|| percent_encoding::percent_decode_str(shown).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keys_decode_only_when_encoded() {
        assert_eq!(listed_key("users/alice é").unwrap(), "users/alice é".as_bytes());
        assert_eq!(listed_key("%FF%00a").unwrap(), b"\xff\x00a");
        assert_eq!(listed_key("100%25").unwrap(), b"100%");
        assert!(listed_key("%zz").is_none());
    }
}
