//! Local (non-data) keys. Everything here sorts before data keys (prefix `0x01` < `z`).
//!
//! Raft engine (`default` CF): `0x01 0x02 region_id:u64 0x01 index:u64` → Raft entry (rust-protobuf
//! encoded `eraftpb::Entry`); `0x01 0x02 region_id:u64 0x02` → [`RaftLocalState`].
//! KV engine (`raft` CF): `0x01 0x01` → store ident; `0x01 0x04` → first region id of prepared
//! but not yet accepted bootstrap regions; `0x01 0x03 region_id:u64 0x01` → region state
//! (`state:u8` + prost-encoded `metapb::Region`); `0x01 0x02 region_id:u64 0x03` → apply state.

const LOCAL_PREFIX: u8 = 0x01;
const STORE_IDENT: &[u8] = &[LOCAL_PREFIX, 0x01];
const PREPARE_BOOTSTRAP: &[u8] = &[LOCAL_PREFIX, 0x04];
const RAFT_PREFIX: u8 = 0x02;
const REGION_META_PREFIX: u8 = 0x03;
const ENTRY_SUFFIX: u8 = 0x01;
const RAFT_STATE_SUFFIX: u8 = 0x02;
const APPLY_STATE_SUFFIX: u8 = 0x03;
const REGION_STATE_SUFFIX: u8 = 0x01;

pub fn store_ident_key() -> &'static [u8] {
    STORE_IDENT
}

/// Present while this store holds bootstrap regions PD has not accepted (value: the first
/// region's id).
pub fn prepare_bootstrap_key() -> &'static [u8] {
    PREPARE_BOOTSTRAP
}

fn region_key(prefix: u8, region_id: u64, suffix: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(19);
    k.extend_from_slice(&[LOCAL_PREFIX, prefix]);
    k.extend_from_slice(&region_id.to_be_bytes());
    k.push(suffix);
    k
}

pub fn raft_entry_key(region_id: u64, index: u64) -> Vec<u8> {
    let mut k = region_key(RAFT_PREFIX, region_id, ENTRY_SUFFIX);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn raft_state_key(region_id: u64) -> Vec<u8> {
    region_key(RAFT_PREFIX, region_id, RAFT_STATE_SUFFIX)
}

pub fn apply_state_key(region_id: u64) -> Vec<u8> {
    region_key(RAFT_PREFIX, region_id, APPLY_STATE_SUFFIX)
}

pub fn region_state_key(region_id: u64) -> Vec<u8> {
    region_key(REGION_META_PREFIX, region_id, REGION_STATE_SUFFIX)
}

/// Bounds covering every region state key.
pub fn region_state_range() -> (Vec<u8>, Vec<u8>) {
    (
        vec![LOCAL_PREFIX, REGION_META_PREFIX],
        vec![LOCAL_PREFIX, REGION_META_PREFIX + 1],
    )
}

/// Region id of a region state key.
pub fn region_id_of_state_key(key: &[u8]) -> Option<u64> {
    if key.len() != 11 || key[..2] != [LOCAL_PREFIX, REGION_META_PREFIX] || key[10] != REGION_STATE_SUFFIX {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[2..10]);
    Some(u64::from_be_bytes(b))
}

fn u64s<const N: usize>(b: &[u8]) -> Option<[u64; N]> {
    if b.len() != N * 8 {
        return None;
    }
    let mut out = [0u64; N];
    for (i, chunk) in b.chunks_exact(8).enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        out[i] = u64::from_be_bytes(a);
    }
    Some(out)
}

fn encode_u64s(vals: &[u64]) -> Vec<u8> {
    vals.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// Persisted Raft state of a region: hard state plus the last log position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RaftLocalState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    pub last_index: u64,
    pub last_term: u64,
}

impl RaftLocalState {
    pub fn encode(&self) -> Vec<u8> {
        encode_u64s(&[self.term, self.vote, self.commit, self.last_index, self.last_term])
    }
    pub fn decode(b: &[u8]) -> Option<RaftLocalState> {
        let [term, vote, commit, last_index, last_term] = u64s::<5>(b)?;
        Some(RaftLocalState {
            term,
            vote,
            commit,
            last_index,
            last_term,
        })
    }
}

/// Persisted apply progress of a region, written atomically with the data it covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyState {
    pub applied_index: u64,
    pub truncated_index: u64,
    pub truncated_term: u64,
}

impl ApplyState {
    /// The apply state of a region created by bootstrap or split: its log starts after
    /// [`crate::RAFT_INIT_INDEX`].
    pub fn initial() -> ApplyState {
        ApplyState {
            applied_index: crate::RAFT_INIT_INDEX,
            truncated_index: crate::RAFT_INIT_INDEX,
            truncated_term: crate::RAFT_INIT_INDEX,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_u64s(&[self.applied_index, self.truncated_index, self.truncated_term])
    }
    pub fn decode(b: &[u8]) -> Option<ApplyState> {
        let [applied_index, truncated_index, truncated_term] = u64s::<3>(b)?;
        Some(ApplyState {
            applied_index,
            truncated_index,
            truncated_term,
        })
    }
}

/// Store identity written once at first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreIdent {
    pub cluster_id: u64,
    pub store_id: u64,
}

impl StoreIdent {
    pub fn encode(&self) -> Vec<u8> {
        encode_u64s(&[self.cluster_id, self.store_id])
    }
    pub fn decode(b: &[u8]) -> Option<StoreIdent> {
        let [cluster_id, store_id] = u64s::<2>(b)?;
        Some(StoreIdent { cluster_id, store_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert!(raft_entry_key(1, 5) < raft_entry_key(1, 6));
        assert!(raft_entry_key(1, u64::MAX) < raft_state_key(1));
        assert!(raft_state_key(1) < raft_entry_key(2, 0));
        let (lo, hi) = region_state_range();
        let k = region_state_key(42);
        assert!(k >= lo && k < hi);
        assert_eq!(region_id_of_state_key(&k), Some(42));
        assert_eq!(region_id_of_state_key(&apply_state_key(42)), None);
        assert!(k.as_slice() < b"z".as_slice());
    }

    #[test]
    fn states_round_trip() {
        let r = RaftLocalState {
            term: 1,
            vote: 2,
            commit: 3,
            last_index: 4,
            last_term: 5,
        };
        assert_eq!(RaftLocalState::decode(&r.encode()), Some(r));
        let a = ApplyState {
            applied_index: 9,
            truncated_index: 5,
            truncated_term: 5,
        };
        assert_eq!(ApplyState::decode(&a.encode()), Some(a));
        let s = StoreIdent {
            cluster_id: 1,
            store_id: 2,
        };
        assert_eq!(StoreIdent::decode(&s.encode()), Some(s));
        assert_eq!(ApplyState::decode(b"short"), None);
    }
}
