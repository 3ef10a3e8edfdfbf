use atoll_proto::errorpb;

/// Why a storage request failed. Region errors go back to the client in the response's
/// `region_error` (it refreshes its cache and retries); others go in the `error` string.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("region error: {}", .0.message)]
    Region(Box<errorpb::Error>),
    /// A key-level transaction error (goes back as `kvrpcpb::KeyError`).
    #[error("{0}")]
    Txn(Box<crate::mvcc::TxnError>),
    #[error("key is too large: {size} bytes (limit {limit})")]
    KeyTooLarge { size: usize, limit: usize },
    #[error("value is too large: {size} bytes (limit {limit})")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("invalid request: {0}")]
    InvalidInput(String),
    #[error("invalid key mode for api version V2: key {0:?} is not in the raw key space")]
    InvalidKeyMode(Vec<u8>),
    #[error("corrupted data: {0}")]
    Corrupted(String),
    #[error("engine: {0}")]
    Engine(String),
    #[error("server is shutting down")]
    ShuttingDown,
}

impl Error {
    /// Whether this is a `KeyIsLocked` key error.
    pub fn is_key_locked(&self) -> bool {
        matches!(self, Error::Txn(e) if matches!(**e, crate::mvcc::TxnError::KeyIsLocked(_)))
    }
}

impl Error {
    /// Errors a prewrite retried after its transaction committed would meet on a key
    /// (its own commit record looks like a conflict; its lock is gone).
    pub fn is_retry_after_commit(&self) -> bool {
        use crate::mvcc::TxnError as T;
        matches!(self, Error::Txn(e) if matches!(
            **e,
            T::KeyIsLocked(_) | T::WriteConflict { .. } | T::PessimisticLockNotFound { .. }
        ))
    }
}

impl From<engine_traits::Error> for Error {
    fn from(e: engine_traits::Error) -> Self {
        Error::Engine(e.to_string())
    }
}

impl From<txn_types::CodecError> for Error {
    fn from(e: txn_types::CodecError) -> Self {
        Error::Corrupted(e.to_string())
    }
}

impl From<errorpb::Error> for Error {
    fn from(e: errorpb::Error) -> Self {
        Error::Region(Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
