//! What PD knows about one region: its metadata plus the leader's latest report.

use atoll_proto::{metapb, pdpb};

/// A heartbeat's approximate size is reported in bytes; PD keeps MiB.
const MIB: u64 = 1 << 20;

/// A region as seen by PD.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegionInfo {
    pub meta: metapb::Region,
    /// The leader peer, when known (regions loaded from disk have none until a heartbeat).
    pub leader: Option<metapb::Peer>,
    pub down_peers: Vec<pdpb::PeerStats>,
    pub pending_peers: Vec<metapb::Peer>,
    pub written_bytes: u64,
    pub written_keys: u64,
    pub read_bytes: u64,
    pub read_keys: u64,
    /// MiB; a non-empty region smaller than 1 MiB counts as 1.
    pub approximate_size: i64,
    pub approximate_keys: i64,
    /// MiB.
    pub approximate_kv_size: i64,
    pub cpu_usage: u64,
    /// Raft term of the leader that reported (0 = unknown).
    pub term: u64,
    /// Seconds the reported read/written bytes and keys were counted over (0 = unknown).
    pub interval_secs: u64,
}

impl RegionInfo {
    /// A region known only by its metadata (bootstrap, persistence, split report).
    pub fn from_meta(meta: metapb::Region) -> RegionInfo {
        RegionInfo {
            meta,
            ..Default::default()
        }
    }

    /// The region described by a leader's heartbeat.
    pub fn from_heartbeat(req: &pdpb::RegionHeartbeatRequest) -> RegionInfo {
        let mut size = (req.approximate_size / MIB) as i64;
        if req.approximate_size > 0 && size < 1 {
            size = 1;
        }
        let mut down_peers = req.down_peers.clone();
        down_peers.sort_by_key(|p| p.peer.as_ref().map_or(0, |p| p.id));
        let mut pending_peers = req.pending_peers.clone();
        pending_peers.sort_by_key(|p| p.id);
        RegionInfo {
            meta: req.region.clone().unwrap_or_default(),
            leader: req.leader,
            down_peers,
            pending_peers,
            written_bytes: req.bytes_written,
            written_keys: req.keys_written,
            read_bytes: req.bytes_read,
            read_keys: req.keys_read,
            approximate_size: size,
            approximate_keys: req.approximate_keys as i64,
            approximate_kv_size: (req.approximate_kv_size / MIB) as i64,
            cpu_usage: req.cpu_usage,
            term: req.term,
            interval_secs: req
                .interval
                .map_or(0, |i| i.end_timestamp.saturating_sub(i.start_timestamp)),
        }
    }

    pub fn id(&self) -> u64 {
        self.meta.id
    }

    pub fn start_key(&self) -> &[u8] {
        &self.meta.start_key
    }

    /// Empty means +infinity.
    pub fn end_key(&self) -> &[u8] {
        &self.meta.end_key
    }

    pub fn epoch(&self) -> metapb::RegionEpoch {
        self.meta.region_epoch.unwrap_or_default()
    }

    /// Whether `key` lies in `[start_key, end_key)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start_key() && (self.end_key().is_empty() || key < self.end_key())
    }

    /// Whether the two key ranges intersect.
    pub fn overlaps(&self, other: &RegionInfo) -> bool {
        let a_before_b_end = other.end_key().is_empty() || self.start_key() < other.end_key();
        let b_before_a_end = self.end_key().is_empty() || other.start_key() < self.end_key();
        a_before_b_end && b_before_a_end
    }

    pub fn same_range(&self, other: &RegionInfo) -> bool {
        self.start_key() == other.start_key() && self.end_key() == other.end_key()
    }

    /// The peer of this region on `store_id`, if any.
    pub fn peer_on_store(&self, store_id: u64) -> Option<&metapb::Peer> {
        self.meta.peers.iter().find(|p| p.store_id == store_id)
    }

    /// The leader as a `pdpb` response wants it (a default peer when unknown, like PD).
    pub fn leader_or_default(&self) -> metapb::Peer {
        self.leader.unwrap_or_default()
    }

    /// Keeps sizes and the leader from `origin` where this report carries none.
    pub fn inherit(&mut self, origin: &RegionInfo) {
        if self.approximate_size == 0 && self.approximate_keys == 0 {
            self.approximate_size = origin.approximate_size;
            self.approximate_keys = origin.approximate_keys;
            self.approximate_kv_size = origin.approximate_kv_size;
        }
        if self.leader.is_none() {
            if let Some(l) = origin.leader {
                // Keep the old leader's store if this region still has a peer there.
                self.leader = self.peer_on_store(l.store_id).copied();
            }
        }
        if self.term == 0 {
            self.term = origin.term;
        }
    }
}
