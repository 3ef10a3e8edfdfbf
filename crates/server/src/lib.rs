//! The storage node (`atoll-kv`): gRPC services (`tikvpb.Tikv`, node-to-node Raft transport),
//! `raftkv` (storage's kv seam on top of raftstore), the PD worker, the status server, config,
//! and start-up/shutdown.
//!
//! This is the only crate that knows both `storage` and `raftstore`, and the one place that maps
//! internal errors to protobuf ([`errors`]).

pub mod config;
mod disk;
pub mod errors;
mod gc_worker;
mod load_split;
pub mod metrics;
pub mod node;
mod pd_worker;
pub mod raftkv;
pub mod service;
pub mod status_server;
mod transport;
mod tso;

pub use config::Config;
pub use node::{run, NodeError};

/// The TiKV version this node reports (clients gate features on it).
pub const VERSION: &str = "8.5.0";
/// Build identifier reported to PD.
pub const GIT_HASH: &str = env!("CARGO_PKG_VERSION");
