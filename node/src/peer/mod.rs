//! The bottom layer of internode traffic: the wire format, the transport seam and the
//! client that calls other nodes. It knows nothing of what the messages mean; the
//! other side of a call is served by [`crate::rpc`].
//!
//! # Layout
//! - [`wire`]: the versioned postcard messages.
//! - [`transport`]: the [`Transport`] seam; hyper over TCP, and an in-process network
//!   with fault injection for tests.
//! - [`client`]: capped, deadline-bound, coalescing calls to other nodes.
//! - [`auth`]: every message signed with the cluster secret, answers bound to requests.

pub mod auth;
pub mod client;
pub mod transport;
pub mod wire;

pub use auth::PeerAuth;
pub use client::{PeerClient, PeerError};
pub use transport::{HttpTransport, MemoryNetwork, Transport};
