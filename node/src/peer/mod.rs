//! Peer RPC: the private internode protocol, its client and its server side.
//!
//! # Layout
//! - [`wire`]: the versioned postcard messages.
//! - [`client`]: pooled, capped, deadline-bound calls to other nodes.
//! - [`server`]: the handler behind the peer listener.

pub mod client;
pub mod server;
pub mod wire;

pub use client::{PeerClient, PeerError};
