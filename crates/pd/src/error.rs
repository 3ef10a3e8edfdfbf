//! PD's error type.
//!
//! Errors split into two families: request errors (a bad or untimely request; the gRPC layer
//! turns them into a response header error of the matching `pdpb.ErrorType`) and internal
//! errors (storage, encoding, configuration; reported as `UNKNOWN` or as a gRPC status).

use atoll_proto::pdpb::ErrorType;

/// Everything that can go wrong inside PD.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster has not been bootstrapped yet.
    #[error("cluster is not bootstrapped")]
    NotBootstrapped,
    /// Bootstrap was asked for twice.
    #[error("cluster is already bootstrapped")]
    AlreadyBootstrapped,
    /// The store was removed (tombstone) and may not come back.
    #[error("store {0} is tombstone")]
    StoreTombstone(u64),
    /// No store has this id.
    #[error("invalid store ID {0}, not found")]
    StoreNotFound(u64),
    /// No region matches the request.
    #[error("region not found: {0}")]
    RegionNotFound(String),
    /// A region report older than what PD already knows.
    #[error("region is stale: {0}")]
    StaleRegion(String),
    /// The request is malformed or conflicts with the cluster's state.
    #[error("{0}")]
    InvalidRequest(String),
    /// A named entry (keyspace, ...) does not exist.
    #[error("{0}")]
    EntryNotFound(String),
    /// A TSO request that can not be served (count 0, too many logicals, ...).
    #[error("tso: {0}")]
    Tso(String),
    /// The metadata engine failed.
    #[error("storage: {0}")]
    Engine(#[from] engine_traits::Error),
    /// A persisted value could not be decoded.
    #[error("corrupted metadata at {key}: {reason}")]
    Corrupted { key: String, reason: String },
    /// The configuration could not be loaded.
    #[error("config: {0}")]
    Config(String),
    /// Binding or serving the listener failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The `pdpb.ErrorType` this error is reported as in a response header.
    pub fn error_type(&self) -> ErrorType {
        match self {
            Error::NotBootstrapped => ErrorType::NotBootstrapped,
            Error::AlreadyBootstrapped => ErrorType::AlreadyBootstrapped,
            Error::StoreTombstone(_) => ErrorType::StoreTombstone,
            Error::RegionNotFound(_) => ErrorType::RegionNotFound,
            Error::EntryNotFound(_) => ErrorType::EntryNotFound,
            _ => ErrorType::Unknown,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::NotBootstrapped | Error::Engine(_) | Error::Io(_))
    }
}

/// PD's result type.
pub type Result<T> = std::result::Result<T, Error>;
