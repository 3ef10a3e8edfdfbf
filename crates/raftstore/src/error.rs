use atoll_proto::metapb;

/// Why raftstore refused or failed a request. Region errors tell the client to refresh its
/// region cache and retry; the server maps each to TiKV's `errorpb.Error`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("region {0} not found on this store")]
    RegionNotFound(u64),
    #[error("peer of region {region_id} is not leader (leader: {leader:?})")]
    NotLeader {
        region_id: u64,
        leader: Option<metapb::Peer>,
    },
    #[error("epoch of region {region_id} does not match: {message}")]
    EpochNotMatch {
        region_id: u64,
        message: String,
        current_regions: Vec<metapb::Region>,
    },
    #[error("key {key:?} is not in region {region_id}")]
    KeyNotInRegion {
        key: Vec<u8>,
        region_id: u64,
        start_key: Vec<u8>,
        end_key: Vec<u8>,
    },
    #[error("read index of region {region_id} not ready: {reason}")]
    ReadIndexNotReady { region_id: u64, reason: String },
    #[error("stale command")]
    StaleCommand,
    #[error("raft entry of {size} bytes exceeds the limit for region {region_id}")]
    RaftEntryTooLarge { region_id: u64, size: u64 },
    #[error("store {request_store_id} does not match this store {actual_store_id}")]
    StoreNotMatch {
        request_store_id: u64,
        actual_store_id: u64,
    },
    #[error("invalid conf change for region {region_id}: {message}")]
    InvalidConfChange { region_id: u64, message: String },
    #[error("invalid split of region {region_id}: {message}")]
    InvalidSplit { region_id: u64, message: String },
    #[error("invalid merge of region {region_id}: {message}")]
    InvalidMerge { region_id: u64, message: String },
    #[error("region {0} is merging; proposals and reads are refused until it is merged or rolled back")]
    ProposalInMergingMode(u64),
    #[error("the disk of store {store_id} is full: {reason}")]
    DiskFull { store_id: u64, reason: String },
    #[error("server is busy: {0}")]
    ServerIsBusy(String),
    #[error("raftstore is shutting down")]
    ShuttingDown,
    #[error("engine: {0}")]
    Engine(String),
    #[error("corrupted raft command: {0}")]
    Codec(String),
    #[error("raft: {0}")]
    Raft(String),
}

impl From<engine_traits::Error> for Error {
    fn from(e: engine_traits::Error) -> Self {
        Error::Engine(e.to_string())
    }
}

impl From<raft::Error> for Error {
    fn from(e: raft::Error) -> Self {
        Error::Raft(e.to_string())
    }
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Codec(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
