//! The async Rust client for quorumkv, and the `quorumkv` command-line tool.
//!
//! The client speaks only the HTTP API of `API.md`. It learns the cluster's ring and sends
//! each request straight to a replica of its key, retries on another replica after a
//! connection error or a 503 within the request's deadline, and hands back typed values:
//! one [`Value`] or several concurrent siblings, with the causal [`Context`] to write back.
//!
//! ```no_run
//! use quorumkv_client::{Client, Value};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), quorumkv_client::Error> {
//!     let client = Client::new(["127.0.0.1:7070"])?;
//!     client.put("greetings", "en", "hello").await?;
//!     let obj = client.get("greetings", "en").await?;
//!     println!("{:?}", obj.value().and_then(Value::as_str)); // Some("hello")
//!     // Read-modify-write with the context, merging siblings if writers raced.
//!     client
//!         .update("greetings", "en", |v| Value::text(format!("{}!", v.as_ref().and_then(Value::as_str).unwrap_or(""))))
//!         .resolve(|siblings| siblings.into_iter().max_by_key(Value::len).unwrap_or_else(|| Value::text("")))
//!         .await?;
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//!
//! - [`client`] — [`Client`] and [`ClientBuilder`]: connections, routing, retries, deadlines.
//! - [`request`] — the builders [`Get`], [`Put`], [`Delete`], [`Update`] that the client's
//!   methods return; set per-request options on them, then `.await`.
//! - [`list`] — [`List`], a bucket's keys page by page or as a stream.
//! - [`value`] — [`Value`], [`Object`], [`Context`], [`Change`].
//! - [`options`] — [`Quorum`] and [`Options`] (r, w, dw, sloppy, timeout).
//! - [`ring`] — [`Ring`](ring::Ring) as `GET /v1/ring` shows it.
//! - [`status`] — [`NodeStatus`](status::NodeStatus) as `GET /v1/status` shows it.
//! - [`error`] — [`Error`].
//! - `cli` (feature `cli`, on by default) — the `quorumkv` command-line tool.
//! - private: `transport` (one HTTP exchange, answer → value or error), `addr` (addresses,
//!   names, URL encoding), `multipart` (sibling bodies).

mod addr;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod error;
pub mod list;
mod multipart;
pub mod options;
pub mod request;
pub mod ring;
pub mod status;
mod transport;
pub mod value;

pub use client::{Client, ClientBuilder, DEFAULT_TIMEOUT};
pub use error::{Error, ReplicaFailure};
pub use list::List;
pub use options::{Options, Quorum};
pub use request::{Delete, Get, Put, Update};
pub use value::{Change, Context, Object, Value};
