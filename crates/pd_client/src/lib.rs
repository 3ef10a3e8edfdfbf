//! `pd_client`: the client storage nodes use to talk to PD (`pdpb.PD` over gRPC).
//!
//! It owns:
//! - finding the PD leader (`GetMembers` on the configured endpoints and on every member url
//!   learned since) and following it: a transport failure triggers one rediscovery, shared by
//!   every caller that saw it;
//! - the unary RPCs a node needs (bootstrap, ids, stores, regions, splits, GC safe point), each
//!   with a per-attempt deadline and a few retries with backoff on transport errors (never on
//!   errors PD put in the response header);
//! - a batching TSO client: one task owns the `Tso` stream and folds concurrent `get_tso`
//!   calls into one request ([`PdClient::get_tso`]);
//! - the long-lived `RegionHeartbeat` stream and the channel of PD's answers (operators).
//!
//! Among Atoll crates it depends only on `atoll-proto` (plus tokio, tonic, prometheus); it must
//! not depend on node crates (raftstore, storage, server), and it never serves anything.
//!
//! Invariants:
//! - the cluster id is learned at connect time and fixed afterwards: every request carries it
//!   in its header, and a PD answering with another id is an error
//!   ([`Error::ClusterIdMismatch`]), never a silent switch;
//! - timestamps returned by one client (all clones together) are strictly increasing.

mod client;
mod config;
mod connection;
mod endpoint;
mod error;
mod heartbeat;
pub mod metrics;
mod tso;

pub use client::PdClient;
pub use config::Config;
pub use endpoint::normalize_endpoint;
pub use error::{Error, Result};
