//! `atoll-proto` owns Atoll's wire protocol definitions and nothing else.
//!
//! * A hand-written, kvproto-compatible subset of TiKV's protocol packages
//!   (`metapb`, `errorpb`, `kvrpcpb`, `coprocessor`, `pdpb`, `keyspacepb`,
//!   `tikvpb`, plus the one `eraftpb` enum PD needs). Field numbers, names,
//!   types, package, service and method names match kvproto exactly, so real
//!   TiKV clients (e.g. the `tikv-client` crate) can talk to Atoll's servers.
//! * `atollpb`: Atoll's own node-to-node Raft transport.
//!
//! The `.proto` sources live in `proto/`; `build.rs` compiles them with protox
//! and generates prost messages and tonic clients/servers. This crate contains
//! no logic.

/// Raft enums referenced by PD (`ConfChangeType` only).
#[allow(clippy::all, missing_docs)]
pub mod eraftpb {
    tonic::include_proto!("eraftpb");
}

/// Cluster metadata: stores, regions, peers, epochs.
#[allow(clippy::all, missing_docs)]
pub mod metapb {
    tonic::include_proto!("metapb");
}

/// Region errors carried in responses (`region_error`).
#[allow(clippy::all, missing_docs)]
pub mod errorpb {
    tonic::include_proto!("errorpb");
}

/// Raw and transactional KV request/response messages.
#[allow(clippy::all, missing_docs)]
pub mod kvrpcpb {
    tonic::include_proto!("kvrpcpb");
}

/// Coprocessor request/response envelope.
#[allow(clippy::all, missing_docs)]
pub mod coprocessor {
    tonic::include_proto!("coprocessor");
}

/// Placement Driver service (`pdpb.PD`).
#[allow(clippy::all, missing_docs)]
pub mod pdpb {
    tonic::include_proto!("pdpb");
}

/// Keyspace metadata service (`keyspacepb.Keyspace`).
#[allow(clippy::all, missing_docs)]
pub mod keyspacepb {
    tonic::include_proto!("keyspacepb");
}

/// TiKV KV service (`tikvpb.Tikv`).
#[allow(clippy::all, missing_docs)]
pub mod tikvpb {
    tonic::include_proto!("tikvpb");
}

/// Atoll's internal Raft transport (`atollpb.RaftTransport`).
#[allow(clippy::all, missing_docs)]
pub mod atollpb {
    tonic::include_proto!("atollpb");
}

#[cfg(test)]
mod tests;
