//! gRPC services of a node.

/// Fills `region_error` and `error` (a string) of a response from a storage error.
macro_rules! fill_err {
    ($resp:ident, $e:expr) => {{
        let (region_error, error) = crate::errors::split_storage_error($e);
        $resp.region_error = region_error;
        $resp.error = error;
    }};
}

pub mod guard;
pub mod kv;
pub mod raft;
pub mod split;
mod txn;
