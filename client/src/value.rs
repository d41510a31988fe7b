//! What the API stores and hands back: values with their content types, objects made of
//! siblings, and the causal context.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::error::Error;

/// The content type the API gives a value written without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// The content type of values made from Rust strings.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// An opaque token that summarises the versions a reader has seen (`X-Causal-Context`).
///
/// Send it back with the next [`put`](crate::Client::put) or
/// [`delete`](crate::Client::delete) of the same key: the write then supersedes exactly the
/// versions the token covers, and anything written concurrently survives as a sibling.
/// Tokens are URL-safe text; keep them as they are (they carry a checksum).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Context(String);

impl Context {
    /// Wraps a token received earlier (for example one a user pasted). Only checks that it
    /// is URL-safe text; the node checks the rest and answers [`Error::InvalidInput`].
    ///
    /// ```
    /// use quorumkv_client::Context;
    ///
    /// assert!(Context::from_token("AQEsb2RlLTEBAQ").is_ok());
    /// assert!(Context::from_token("not a token!").is_err());
    /// ```
    pub fn from_token(token: impl Into<String>) -> Result<Context, Error> {
        let token = token.into();
        let url_safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=');
        if token.is_empty() || !token.bytes().all(url_safe) {
            return Err(Error::invalid(
                "invalid_context",
                "a causal context is the URL-safe token a response carried in X-Causal-Context",
            ));
        }
        Ok(Context(token))
    }

    /// The token, as it goes in the `X-Causal-Context` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Context({})", self.0)
    }
}

impl FromStr for Context {
    type Err = Error;

    fn from_str(s: &str) -> Result<Context, Error> {
        Context::from_token(s)
    }
}

/// A value and its content type: what a PUT stores and what each sibling of a GET holds.
///
/// Rust strings become `text/plain; charset=utf-8`; bytes become
/// `application/octet-stream`; [`Value::with_content_type`] sets any other type.
///
/// ```
/// use quorumkv_client::Value;
///
/// let v = Value::from("hello");
/// assert_eq!(v.as_str(), Some("hello"));
/// assert_eq!(v.content_type, "text/plain; charset=utf-8");
///
/// let raw = Value::from(vec![0u8, 159, 146, 150]);
/// assert_eq!(raw.as_str(), None);
///
/// let doc = Value::json(&serde_json::json!({"n": 1})).unwrap();
/// assert_eq!(doc.content_type, "application/json");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Value {
    /// The MIME type stored with the value (visible ASCII).
    pub content_type: String,
    /// The value itself.
    pub bytes: Bytes,
}

impl Value {
    /// Bytes with the API's default content type, `application/octet-stream`.
    pub fn new(bytes: impl Into<Bytes>) -> Value {
        Value::with_content_type(DEFAULT_CONTENT_TYPE, bytes)
    }

    /// Bytes with a content type of your choice.
    pub fn with_content_type(content_type: impl Into<String>, bytes: impl Into<Bytes>) -> Value {
        Value { content_type: content_type.into(), bytes: bytes.into() }
    }

    /// UTF-8 text, `text/plain; charset=utf-8`.
    pub fn text(text: impl Into<String>) -> Value {
        Value::with_content_type(TEXT_CONTENT_TYPE, text.into())
    }

    /// A serialisable value as `application/json`.
    ///
    /// # Errors
    /// When `serde_json` cannot serialise it (for example a map with non-string keys).
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value, serde_json::Error> {
        Ok(Value::with_content_type("application/json", serde_json::to_vec(value)?))
    }

    /// The bytes as text, if they are UTF-8 (whatever the content type says).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }

    /// The bytes parsed as JSON.
    ///
    /// # Errors
    /// When they are not JSON of the shape `T`.
    pub fn parse_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.bytes)
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the value has no bytes (an empty value is still a value, not a delete).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        let shown = &self.bytes[..self.bytes.len().min(SHOWN)];
        let more = if self.bytes.len() > SHOWN { "…" } else { "" };
        let text = match std::str::from_utf8(shown) {
            Ok(text) => Some(text),
            // Cut inside a character at the end: show what is whole.
            Err(e) if e.error_len().is_none() => std::str::from_utf8(&shown[..e.valid_up_to()]).ok(),
            Err(_) => None,
        };
        match text {
            Some(text) => write!(f, "Value({}, {:?}{more})", self.content_type, text),
            None => write!(f, "Value({}, {} bytes)", self.content_type, self.bytes.len()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::text(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::text(s)
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::new(b)
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Value {
        Value::new(Bytes::copy_from_slice(b))
    }
}

impl<const N: usize> From<&[u8; N]> for Value {
    fn from(b: &[u8; N]) -> Value {
        Value::new(Bytes::copy_from_slice(b))
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Value {
        Value::new(b)
    }
}

/// A key as a read found it: one or more live versions and the context covering them.
///
/// Exactly one sibling is the usual case. Two or more are concurrent writes that no write
/// has resolved yet: resolve them by writing one value back with [`Object::context`]
/// (or let [`Client::update`](crate::Client::update) do it with your resolver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The live versions, at least one. Their order carries no meaning.
    pub siblings: Vec<Value>,
    /// Covers every version the read saw, including hidden tombstones.
    pub context: Context,
}

impl Object {
    /// The value, when there is exactly one (no siblings).
    pub fn value(&self) -> Option<&Value> {
        match self.siblings.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// The value, when there is exactly one; otherwise the object back.
    ///
    /// # Errors
    /// Returns `self` unchanged when the key has siblings.
    pub fn into_value(mut self) -> Result<Value, Object> {
        if self.siblings.len() == 1
            && let Some(v) = self.siblings.pop()
        {
            return Ok(v);
        }
        Err(self)
    }

    /// Whether concurrent writes left more than one version.
    pub fn has_siblings(&self) -> bool {
        self.siblings.len() > 1
    }
}

/// What an [`update`](crate::Client::update) writes back: a new value, or a delete.
/// A closure can return a [`Value`] directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Store this value, superseding everything that was read.
    Put(Value),
    /// Delete the key, superseding everything that was read.
    Delete,
}

impl From<Value> for Change {
    fn from(v: Value) -> Change {
        Change::Put(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_has_a_value_only_without_siblings() {
        let ctx = Context::from_token("AQE").unwrap();
        let one = Object { siblings: vec![Value::from("a")], context: ctx.clone() };
        assert_eq!(one.value(), Some(&Value::from("a")));
        assert!(!one.has_siblings());
        assert_eq!(one.into_value().unwrap(), Value::from("a"));
        let two = Object { siblings: vec![Value::from("a"), Value::from("b")], context: ctx };
        assert_eq!(two.value(), None);
        assert!(two.has_siblings());
        assert!(two.into_value().is_err());
    }

    #[test]
    fn debug_output_is_short() {
        let v = Value::from("x".repeat(1000));
        assert!(format!("{v:?}").len() < 120);
        let b = Value::from(vec![0xffu8; 1000]);
        assert_eq!(format!("{b:?}"), "Value(application/octet-stream, 1000 bytes)");
    }
}
