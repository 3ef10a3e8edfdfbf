use atoll_proto::metapb;

/// A Raft message addressed to one peer of a region on another store.
#[derive(Debug, Clone)]
pub struct RaftEnvelope {
    pub region_id: u64,
    pub from_peer: metapb::Peer,
    pub to_peer: metapb::Peer,
    pub region_epoch: metapb::RegionEpoch,
    pub start_key: Vec<u8>,
    pub end_key: Vec<u8>,
    /// The receiving peer was removed from the region and should destroy itself.
    pub is_tombstone: bool,
    pub message: raft::eraftpb::Message,
}

/// Delivers Raft messages to other stores. Sends are fire-and-forget: Raft retries by itself,
/// and a peer that cannot be reached is reported back through the router.
pub trait Transport: Send + 'static {
    fn send(&mut self, msg: RaftEnvelope);
    /// Called once per store loop iteration after all sends, so sends can be batched.
    fn flush(&mut self) {}
}
