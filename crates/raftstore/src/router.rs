use std::time::Instant;

use atoll_proto::metapb;
use crossbeam_channel::Sender;
use tokio::sync::oneshot;

use crate::cmd::{CmdBody, CmdHeader, Modify, RaftCmd};
use crate::transport::RaftEnvelope;
use crate::{Error, Result};

/// A consistent snapshot of the KV engine taken after a linearizable read point, and the region
/// it was taken for (its keys must be checked against that region).
pub struct ReadResponse<S> {
    pub snapshot: S,
    pub region: metapb::Region,
}

/// What PD needs to know about one region held by this store.
#[derive(Debug, Clone, Default)]
pub struct RegionInfo {
    pub region: metapb::Region,
    pub leader: Option<metapb::Peer>,
    pub is_leader: bool,
    pub term: u64,
    pub applied_index: u64,
    pub written_bytes: u64,
    pub written_keys: u64,
}

/// Notifications from the store loop to the node (e.g. to heartbeat PD at once).
#[derive(Debug, Clone)]
pub enum StoreEvent {
    /// This store's peer became leader of the region, or the region changed while leading.
    LeaderChanged(RegionInfo),
}

pub(crate) enum Msg<S> {
    Propose {
        cmd: RaftCmd,
        cb: oneshot::Sender<Result<()>>,
        /// When the caller handed the command to the router (for the wait-time metrics).
        sent_at: Instant,
    },
    Read {
        header: CmdHeader,
        cb: oneshot::Sender<Result<ReadResponse<S>>>,
    },
    Raft(Box<RaftEnvelope>),
    Unreachable {
        region_id: u64,
        to_peer_id: u64,
    },
    RegionInfos(oneshot::Sender<Vec<RegionInfo>>),
    Shutdown,
}

/// Handle to the store loop: proposes writes, asks for reads, feeds Raft messages in.
pub struct Router<S> {
    pub(crate) tx: Sender<Msg<S>>,
}

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Router { tx: self.tx.clone() }
    }
}

impl<S: Send + 'static> Router<S> {
    fn send(&self, msg: Msg<S>) -> Result<()> {
        self.tx.send(msg).map_err(|_| Error::ShuttingDown)
    }

    /// Proposes `modifies` to the region in `header` and waits until they are applied.
    pub async fn write(&self, header: CmdHeader, modifies: Vec<Modify>) -> Result<()> {
        let (cb, rx) = oneshot::channel();
        self.send(Msg::Propose {
            cmd: RaftCmd {
                header,
                body: CmdBody::Write(modifies),
            },
            cb,
            sent_at: Instant::now(),
        })?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// A snapshot reflecting every write acknowledged before this call (ReadIndex on the leader).
    pub async fn read(&self, header: CmdHeader) -> Result<ReadResponse<S>> {
        let (cb, rx) = oneshot::channel();
        self.send(Msg::Read { header, cb })?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Hands a Raft message received from another store to its peer.
    pub fn send_raft(&self, msg: RaftEnvelope) -> Result<()> {
        self.send(Msg::Raft(Box::new(msg)))
    }

    /// Tells Raft that the store holding `to_peer_id` could not be reached.
    pub fn report_unreachable(&self, region_id: u64, to_peer_id: u64) -> Result<()> {
        self.send(Msg::Unreachable {
            region_id,
            to_peer_id,
        })
    }

    /// The regions of this store, for heartbeats and status.
    pub async fn region_infos(&self) -> Result<Vec<RegionInfo>> {
        let (cb, rx) = oneshot::channel();
        self.send(Msg::RegionInfos(cb))?;
        rx.await.map_err(|_| Error::ShuttingDown)
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.tx.send(Msg::Shutdown);
    }
}
