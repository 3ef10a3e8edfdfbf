use std::time::Instant;

use atoll_proto::metapb;
use crossbeam_channel::Sender;
use tokio::sync::oneshot;

use crate::cmd::{CmdBody, CmdHeader, Modify, RaftCmd};
use crate::conf_change::PeerChange;
use crate::snap::{SnapKey, SnapMeta};
use crate::split::SplitRequest;
use crate::split_check::CheckResult;
use crate::transport::RaftEnvelope;
use crate::{Error, Result};

/// A consistent snapshot of the KV engine taken after a linearizable read point, and the region
/// it was taken for (its keys must be checked against that region).
pub struct ReadResponse<S> {
    pub snapshot: S,
    pub region: metapb::Region,
    /// The leader's term when the read was served (a write computed from it may require it).
    pub term: u64,
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
    /// Leader only: peers waiting for a snapshot or far behind.
    pub pending_peers: Vec<metapb::Peer>,
    /// Leader only: peers not heard from for `max-peer-down-duration`, with seconds.
    pub down_peers: Vec<(metapb::Peer, u64)>,
    /// Size and key count found by the last split check, if any.
    pub approximate_size: Option<u64>,
    pub approximate_keys: Option<u64>,
}

/// Notifications from the store loop to the node (e.g. to heartbeat PD at once).
#[derive(Debug, Clone)]
pub enum StoreEvent {
    /// This store's peer became leader of the region, or the region changed while leading.
    LeaderChanged(Box<RegionInfo>),
    /// The store loop cannot persist any more and stopped: the node must stop serving.
    Fatal(String),
    /// The leader found that `region` should split at `split_keys`: the node asks PD for ids
    /// (`AskBatchSplit`) and proposes the split ([`Router::batch_split`]).
    AskSplit {
        region: metapb::Region,
        split_keys: Vec<Vec<u8>>,
    },
    /// The leader applied a split into `regions` (PD learns it through `ReportBatchSplit`).
    RegionSplit(Vec<metapb::Region>),
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
    ChangePeer {
        header: CmdHeader,
        changes: Vec<PeerChange>,
        cb: oneshot::Sender<Result<()>>,
    },
    TransferLeader {
        header: CmdHeader,
        to: metapb::Peer,
        cb: oneshot::Sender<Result<()>>,
    },
    SnapshotStatus {
        region_id: u64,
        to_peer_id: u64,
        ok: bool,
    },
    SnapGenerated {
        region_id: u64,
        key: SnapKey,
        result: Result<SnapMeta>,
    },
    SnapApplied {
        region_id: u64,
        key: SnapKey,
        result: Result<()>,
    },
    BatchSplit {
        header: CmdHeader,
        requests: Vec<SplitRequest>,
        cb: oneshot::Sender<Result<()>>,
    },
    /// Split the region at `split_keys`, or in its middle when there are none (PD's
    /// `SplitRegion` step).
    SplitRegion {
        header: CmdHeader,
        split_keys: Vec<Vec<u8>>,
    },
    /// The split checker measured the region at `epoch`.
    SplitChecked {
        region_id: u64,
        epoch: metapb::RegionEpoch,
        result: Option<CheckResult>,
    },
    PrepareMerge {
        header: CmdHeader,
        target: Box<metapb::Region>,
        cb: oneshot::Sender<Result<()>>,
    },
    Shutdown,
}

/// Handle to the store loop: proposes writes, asks for reads, feeds Raft messages in.
pub struct Router<S> {
    /// Client requests.
    pub(crate) tx: Sender<Msg<S>>,
    /// Raft messages and reports: the store loop drains these first, so they never wait
    /// behind client proposals.
    pub(crate) raft_tx: Sender<Msg<S>>,
}

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Router {
            tx: self.tx.clone(),
            raft_tx: self.raft_tx.clone(),
        }
    }
}

impl<S> Msg<S> {
    fn is_raft(&self) -> bool {
        matches!(
            self,
            Msg::Raft(_)
                | Msg::Unreachable { .. }
                | Msg::SnapshotStatus { .. }
                | Msg::SnapGenerated { .. }
                | Msg::SnapApplied { .. }
                | Msg::SplitChecked { .. }
                | Msg::Shutdown
        )
    }

    /// The region the message is about, if any.
    pub(crate) fn region_id(&self) -> Option<u64> {
        Some(match self {
            Msg::Propose { cmd, .. } => cmd.header.region_id,
            Msg::Read { header, .. }
            | Msg::ChangePeer { header, .. }
            | Msg::TransferLeader { header, .. }
            | Msg::BatchSplit { header, .. }
            | Msg::SplitRegion { header, .. }
            | Msg::PrepareMerge { header, .. } => header.region_id,
            Msg::Raft(env) => env.region_id,
            Msg::Unreachable { region_id, .. }
            | Msg::SnapshotStatus { region_id, .. }
            | Msg::SnapGenerated { region_id, .. }
            | Msg::SnapApplied { region_id, .. }
            | Msg::SplitChecked { region_id, .. } => *region_id,
            Msg::RegionInfos(_) | Msg::Shutdown => return None,
        })
    }
}

impl<S: Send + 'static> Router<S> {
    pub(crate) fn send(&self, msg: Msg<S>) -> Result<()> {
        let tx = if msg.is_raft() { &self.raft_tx } else { &self.tx };
        tx.send(msg).map_err(|_| Error::ShuttingDown)
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
    /// A region that split or merged while the read waited answers `EpochNotMatch`: the
    /// snapshot no longer holds the range the caller asked for.
    pub async fn read(&self, header: CmdHeader) -> Result<ReadResponse<S>> {
        let (cb, rx) = oneshot::channel();
        self.send(Msg::Read { header, cb })?;
        let resp = rx.await.map_err(|_| Error::ShuttingDown)??;
        let epoch = resp.region.region_epoch.unwrap_or_default();
        if epoch.version != header.version {
            return Err(Error::EpochNotMatch {
                region_id: resp.region.id,
                message: format!(
                    "region {} changed to version {} while the read with version {} waited",
                    resp.region.id, epoch.version, header.version
                ),
                current_regions: vec![resp.region],
            });
        }
        Ok(resp)
    }

    /// Proposes a batch split of the region in `header` (ids from PD) and waits until it is
    /// applied.
    pub async fn batch_split(&self, header: CmdHeader, requests: Vec<SplitRequest>) -> Result<()> {
        let (cb, rx) = oneshot::channel();
        self.send(Msg::BatchSplit { header, requests, cb })?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Asks the leader of the region in `header` to split at `split_keys`, or in its middle
    /// when there are none; the split goes on as [`StoreEvent::AskSplit`].
    /// Asks the region in `header` (its leader) to merge into the adjacent `target` (PD's
    /// view of it, with peers on the same stores); answers once the source applied the prepare.
    /// The target absorbs it afterwards by itself, or the source rolls back if the target moved on.
    pub async fn prepare_merge(&self, header: CmdHeader, target: metapb::Region) -> Result<()> {
        let (cb, rx) = oneshot::channel();
        self.send(Msg::PrepareMerge {
            header,
            target: Box::new(target),
            cb,
        })?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    pub fn split_region(&self, header: CmdHeader, split_keys: Vec<Vec<u8>>) -> Result<()> {
        self.send(Msg::SplitRegion { header, split_keys })
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

    /// Proposes a membership change and waits until it is applied.
    pub async fn change_peer(&self, header: CmdHeader, changes: Vec<PeerChange>) -> Result<()> {
        let (cb, rx) = oneshot::channel();
        self.send(Msg::ChangePeer { header, changes, cb })?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Asks the leader to hand leadership to `to`; returns once the transfer started.
    pub async fn transfer_leader(&self, header: CmdHeader, to: metapb::Peer) -> Result<()> {
        let (cb, rx) = oneshot::channel();
        self.send(Msg::TransferLeader { header, to, cb })?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Tells Raft whether a snapshot reached `to_peer_id`.
    pub fn report_snapshot(&self, region_id: u64, to_peer_id: u64, ok: bool) -> Result<()> {
        self.send(Msg::SnapshotStatus {
            region_id,
            to_peer_id,
            ok,
        })
    }

    /// The regions of this store, for heartbeats and status.
    pub async fn region_infos(&self) -> Result<Vec<RegionInfo>> {
        let (cb, rx) = oneshot::channel();
        self.send(Msg::RegionInfos(cb))?;
        rx.await.map_err(|_| Error::ShuttingDown)
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.raft_tx.send(Msg::Shutdown);
    }
}
