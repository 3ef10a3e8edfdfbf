//! Multi-Raft: many Raft groups (regions) per store.
//!
//! Owns the peers of every region on this store (each wraps a raft-rs `RawNode` over a
//! [`PeerStorage`]), the store loop that drives them, proposing commands and membership changes
//! ([`conf_change`]), linearizable reads (lease, ReadIndex, follower reads), persisting the Raft
//! log, applying committed commands to the KV engine, region snapshots ([`snap`]), peers created
//! from messages and destroyed when removed, and the local layout of Raft and region state
//! ([`keys`]).
//!
//! Must not depend on `storage` or `server`: it knows column families and keys, never MVCC or
//! RPCs. It talks to other stores only through the [`Transport`] trait.
//!
//! Invariants:
//! - An entry is acknowledged only after the Raft log holding it was fsynced on a quorum.
//! - One store loop iteration persists the Ready of every region in one raft-engine write batch
//!   with one fsync, and applies every region's committed entries in one KV write batch that also
//!   carries each region's apply state, so data and applied index never disagree.
//! - A command is applied only if its region epoch still matches and its keys lie in the region;
//!   a membership change changes the region state in the same batch as the apply state.
//! - A removed peer leaves a tombstone and never comes back under the same peer id.
//! - Reads are served only from KV data at or past their read index, on a leader holding a lease
//!   or after a quorum confirmed the read index.

mod apply_writer;
mod cmd;
pub mod conf_change;
mod error;
pub mod keys;
mod log_writer;
mod logger;
pub mod merge;
pub mod metrics;
mod peer;
mod peer_storage;
mod read;
mod router;
pub mod snap;
mod snap_worker;
pub mod split;
mod split_check;
mod store;
mod transport;

pub use cmd::{CmdBody, CmdHeader, Modify, RaftCmd};
pub use conf_change::PeerChange;
pub use error::{Error, Result};
pub use merge::MergeState;
pub use peer_storage::{
    bootstrap_region, clear_prepared_region, load_local_regions, load_regions, write_merging_state,
    LocalRegion, PeerStorage, RegionState, RAFT_INIT_INDEX,
};
pub use router::{ReadResponse, RegionInfo, Router, StoreEvent};
pub use snap::{SnapKey, SnapManager, SnapMeta};
pub use split::SplitRequest;
pub use split_check::SplitConfig;
pub use store::{spawn_store, StoreConfig, StoreHandle};
pub use transport::{RaftEnvelope, Transport};
