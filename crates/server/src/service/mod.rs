//! gRPC services of a node.

pub mod kv;
pub mod raft;
mod txn;
