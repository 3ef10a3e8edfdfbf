//! Raft log storage of one region, and the persisted region/apply state around it.

use atoll_proto::metapb;
use engine_traits::{KvEngine, WriteBatch, CF_DEFAULT, CF_RAFT};
use prost::Message as _;
use protobuf::Message as _;
use std::cell::RefCell;

use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::conf_change::conf_state_of;
use crate::keys::{self, ApplyState, RaftLocalState};
use crate::merge::MergeState;
use crate::{Error, Result};

/// Index (and term) a freshly bootstrapped region's log starts after, as in TiKV.
pub const RAFT_INIT_INDEX: u64 = 5;

/// The lifecycle state persisted with a region's meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionState {
    /// Serving.
    Normal,
    /// A snapshot's data is being written; a restart redoes it from the received file.
    Applying,
    /// The peer was removed from the region here (or its region merged into another); it must
    /// never come back with this id.
    Tombstone,
    /// The region applied a PrepareMerge: frozen until merged or rolled back (the value holds
    /// the [`MergeState`] before the region).
    Merging,
}

impl RegionState {
    fn tag(self) -> u8 {
        match self {
            RegionState::Normal => 0,
            RegionState::Applying => 1,
            RegionState::Tombstone => 2,
            RegionState::Merging => 3,
        }
    }

    fn from_tag(t: u8) -> Option<RegionState> {
        Some(match t {
            0 => RegionState::Normal,
            1 => RegionState::Applying,
            2 => RegionState::Tombstone,
            3 => RegionState::Merging,
            _ => return None,
        })
    }
}

fn encode_region_state(region: &metapb::Region, state: RegionState) -> Vec<u8> {
    let mut out = vec![state.tag()];
    region.encode(&mut out).unwrap_or_default();
    out
}

/// Stages the persisted state of `region` into a KV write batch.
pub fn write_region_state(wb: &mut WriteBatch, region: &metapb::Region, state: RegionState) {
    wb.put_cf(
        CF_RAFT,
        keys::region_state_key(region.id),
        encode_region_state(region, state),
    );
}

/// Stages the state of a source region that applied a PrepareMerge.
pub fn write_merging_state(wb: &mut WriteBatch, region: &metapb::Region, merge: &MergeState) {
    let mut out = vec![RegionState::Merging.tag()];
    merge.encode(&mut out);
    region.encode(&mut out).unwrap_or_default();
    wb.put_cf(CF_RAFT, keys::region_state_key(region.id), out);
}

/// A region as persisted on this store.
#[derive(Debug, Clone)]
pub struct LocalRegion {
    pub region: metapb::Region,
    pub state: RegionState,
    /// Absent for tombstones.
    pub apply: Option<ApplyState>,
    /// Present in the `Merging` state.
    pub merge: Option<MergeState>,
}

/// Where a snapshot for followers stands in this peer's storage.
#[derive(Debug, Clone, Default)]
pub(crate) enum SnapGen {
    #[default]
    Idle,
    /// raft-rs asked for one; the store loop hands the job to the snapshot worker.
    Requested,
    Generating,
    Ready(Snapshot),
}

/// Writes the initial state of `region` (with this store's peer in it) into the engines.
pub fn bootstrap_region<EK: KvEngine, ER: KvEngine>(
    kv: &EK,
    raft: &ER,
    region: &metapb::Region,
) -> Result<()> {
    let mut rwb = WriteBatch::new();
    let rs = RaftLocalState {
        term: RAFT_INIT_INDEX,
        vote: 0,
        commit: RAFT_INIT_INDEX,
        last_index: RAFT_INIT_INDEX,
        last_term: RAFT_INIT_INDEX,
    };
    rwb.put_cf(CF_DEFAULT, keys::raft_state_key(region.id), rs.encode());
    raft.write(&rwb, true)?;
    let mut kwb = WriteBatch::new();
    let apply = ApplyState::initial();
    kwb.put_cf(CF_RAFT, keys::apply_state_key(region.id), apply.encode());
    write_region_state(&mut kwb, region, RegionState::Normal);
    kv.write(&kwb, true)?;
    Ok(())
}

/// Removes a region prepared by [`bootstrap_region`] that the cluster did not accept.
pub fn clear_prepared_region<EK: KvEngine, ER: KvEngine>(kv: &EK, raft: &ER, region_id: u64) -> Result<()> {
    let mut kwb = WriteBatch::new();
    kwb.delete_cf(CF_RAFT, keys::apply_state_key(region_id));
    kwb.delete_cf(CF_RAFT, keys::region_state_key(region_id));
    kv.write(&kwb, true)?;
    let mut rwb = WriteBatch::new();
    rwb.delete_cf(CF_DEFAULT, keys::raft_state_key(region_id));
    raft.write(&rwb, true)?;
    Ok(())
}

/// Every region recorded in the KV engine (tombstones included), with its apply state.
pub fn load_local_regions<EK: KvEngine>(kv: &EK) -> Result<Vec<LocalRegion>> {
    let (lo, hi) = keys::region_state_range();
    let mut states = vec![];
    kv.scan_cf(CF_RAFT, &lo, Some(&hi), |k, v| {
        if let (Some(id), Some((&state, rest))) = (keys::region_id_of_state_key(k), v.split_first()) {
            states.push((id, state, rest.to_vec()));
        }
        Ok(true)
    })?;
    let mut out = Vec::with_capacity(states.len());
    for (id, tag, bytes) in states {
        let state = RegionState::from_tag(tag)
            .ok_or_else(|| Error::Codec(format!("region {id} has unknown state {tag}")))?;
        let (merge, region_bytes) = if state == RegionState::Merging {
            let (m, rest) = MergeState::decode(&bytes)?;
            (Some(m), rest)
        } else {
            (None, bytes.as_slice())
        };
        let region = metapb::Region::decode(region_bytes)?;
        let apply = if state == RegionState::Tombstone {
            None
        } else {
            Some(
                kv.get_cf(CF_RAFT, &keys::apply_state_key(id))?
                    .and_then(|b| ApplyState::decode(&b))
                    .ok_or_else(|| Error::Codec(format!("region {id} has no apply state")))?,
            )
        };
        out.push(LocalRegion {
            region,
            state,
            apply,
            merge,
        });
    }
    Ok(out)
}

/// Every live (not tombstone) region recorded in the KV engine, with its apply state.
pub fn load_regions<EK: KvEngine>(kv: &EK) -> Result<Vec<(metapb::Region, ApplyState)>> {
    Ok(load_local_regions(kv)?
        .into_iter()
        .filter_map(|r| r.apply.map(|a| (r.region, a)))
        .collect())
}

/// The raft-rs storage of one region over the raft engine.
pub struct PeerStorage<ER: KvEngine> {
    raft_engine: ER,
    region: metapb::Region,
    raft_state: RaftLocalState,
    apply_state: ApplyState,
    pub(crate) snap_gen: RefCell<SnapGen>,
    /// Entries handed to the log writer but not known to be written yet, in index order, each
    /// with the sequence number of the write carrying it: raft-rs reads them from here until
    /// that write is done (it expects appended entries to be readable at once).
    unpersisted: std::collections::VecDeque<(Entry, u64)>,
}

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

impl<ER: KvEngine> PeerStorage<ER> {
    /// Opens the storage of `region` from the raft engine; `apply_state` comes from the KV engine.
    pub fn open(raft_engine: ER, region: metapb::Region, apply_state: ApplyState) -> Result<PeerStorage<ER>> {
        let saved = raft_engine
            .get_cf(CF_DEFAULT, &keys::raft_state_key(region.id))?
            .and_then(|b| RaftLocalState::decode(&b));
        let mut raft_state = match saved {
            Some(s) => s,
            // A region made by a split has no log yet: it starts where the split's apply state
            // says, and its raft state is written with its first Ready.
            None if apply_state == ApplyState::initial() => RaftLocalState::default(),
            None => return Err(Error::Codec(format!("region {} has no raft state", region.id))),
        };
        // The commit index advanced by a LightReady is not persisted until the next hard state
        // is, so the saved commit can trail the applied index: everything applied was committed.
        if raft_state.commit < apply_state.applied_index {
            raft_state.commit = apply_state.applied_index;
        }
        // A crash between persisting an applied snapshot's apply state and its raft state
        // leaves the log behind the snapshot: the log starts after the snapshot then.
        if raft_state.last_index < apply_state.truncated_index {
            raft_state.last_index = apply_state.truncated_index;
            raft_state.last_term = apply_state.truncated_term;
            raft_state.commit = raft_state.commit.max(apply_state.truncated_index);
        }
        // A peer that voted while uninitialized (before its split arrived) keeps that vote, in
        // a term no older than its log.
        raft_state.term = raft_state.term.max(raft_state.last_term);
        Ok(PeerStorage {
            raft_engine,
            region,
            raft_state,
            apply_state,
            snap_gen: RefCell::new(SnapGen::Idle),
            unpersisted: std::collections::VecDeque::new(),
        })
    }

    /// Storage of a peer created from a message: no range, no peers, no log until a snapshot
    /// arrives. A hard state persisted by an earlier incarnation (a vote) is kept.
    pub fn new_uninitialized(raft_engine: ER, region_id: u64) -> Result<PeerStorage<ER>> {
        let raft_state = raft_engine
            .get_cf(CF_DEFAULT, &keys::raft_state_key(region_id))?
            .and_then(|b| RaftLocalState::decode(&b))
            .map(|s| RaftLocalState {
                term: s.term,
                vote: s.vote,
                ..Default::default()
            })
            .unwrap_or_default();
        Ok(PeerStorage {
            raft_engine,
            region: metapb::Region {
                id: region_id,
                ..Default::default()
            },
            raft_state,
            apply_state: ApplyState::default(),
            snap_gen: RefCell::new(SnapGen::Idle),
            unpersisted: std::collections::VecDeque::new(),
        })
    }

    /// Whether the peer has its region's data (a range and peers), as opposed to being created
    /// from a message and waiting for a snapshot.
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    /// Records a snapshot's position as the start of the log (its data is applied apart).
    pub(crate) fn restore_snapshot(
        &mut self,
        index: u64,
        term: u64,
        region: metapb::Region,
        raft_wb: &mut WriteBatch,
    ) {
        if self.raft_state.last_index >= self.apply_state.truncated_index.max(1) {
            raft_wb.delete_range_cf(
                CF_DEFAULT,
                keys::raft_entry_key(self.region.id, 0),
                keys::raft_entry_key(self.region.id, self.raft_state.last_index + 1),
            );
        }
        self.raft_state.last_index = index;
        self.raft_state.last_term = term;
        self.raft_state.commit = self.raft_state.commit.max(index);
        self.apply_state = ApplyState {
            applied_index: index,
            truncated_index: index,
            truncated_term: term,
        };
        self.unpersisted.clear();
        self.region = region;
        raft_wb.put_cf(
            CF_DEFAULT,
            keys::raft_state_key(self.region.id),
            self.raft_state.encode(),
        );
    }

    /// Stages removal of the whole log and raft state of this region.
    pub(crate) fn clear_log(&self, raft_wb: &mut WriteBatch) {
        raft_wb.delete_range_cf(
            CF_DEFAULT,
            keys::raft_entry_key(self.region.id, 0),
            keys::raft_entry_key(self.region.id, u64::MAX),
        );
        raft_wb.delete_cf(CF_DEFAULT, keys::raft_state_key(self.region.id));
    }

    pub fn region(&self) -> &metapb::Region {
        &self.region
    }

    pub fn set_region(&mut self, region: metapb::Region) {
        self.region = region;
    }

    pub fn apply_state(&self) -> &ApplyState {
        &self.apply_state
    }

    pub fn apply_state_mut(&mut self) -> &mut ApplyState {
        &mut self.apply_state
    }

    pub fn raft_state(&self) -> &RaftLocalState {
        &self.raft_state
    }

    /// Stages `entries` (appended after a possible conflict) and `hs` into `wb`, the write of
    /// sequence number `seq`; the entries stay readable from memory until that write is done
    /// ([`PeerStorage::on_persisted`]).
    pub fn append(
        &mut self,
        entries: &[Entry],
        hs: Option<&HardState>,
        wb: &mut WriteBatch,
        seq: u64,
    ) -> Result<()> {
        let region_id = self.region.id;
        if let Some(first) = entries.first() {
            let prev_last = self.raft_state.last_index;
            while self
                .unpersisted
                .back()
                .is_some_and(|(e, _)| e.index >= first.index)
            {
                self.unpersisted.pop_back();
            }
            if self
                .unpersisted
                .back()
                .is_some_and(|(e, _)| e.index + 1 != first.index)
            {
                self.unpersisted.clear();
            }
            for e in entries {
                let bytes = e.write_to_bytes().map_err(|e| Error::Codec(e.to_string()))?;
                wb.put_cf(CF_DEFAULT, keys::raft_entry_key(region_id, e.index), bytes);
                self.unpersisted.push_back((e.clone(), seq));
            }
            let last = entries.last().unwrap_or(first);
            if last.index < prev_last {
                wb.delete_range_cf(
                    CF_DEFAULT,
                    keys::raft_entry_key(region_id, last.index + 1),
                    keys::raft_entry_key(region_id, prev_last + 1),
                );
            }
            self.raft_state.last_index = last.index;
            self.raft_state.last_term = last.term;
        }
        if let Some(hs) = hs {
            self.raft_state.term = hs.term;
            self.raft_state.vote = hs.vote;
            self.raft_state.commit = hs.commit;
        }
        if !entries.is_empty() || hs.is_some() {
            wb.put_cf(
                CF_DEFAULT,
                keys::raft_state_key(region_id),
                self.raft_state.encode(),
            );
        }
        Ok(())
    }

    /// The log write of sequence number `seq` (and every earlier one) is done: its entries are
    /// read from the engine from now on.
    pub fn on_persisted(&mut self, seq: u64) {
        while self.unpersisted.front().is_some_and(|(_, s)| *s <= seq) {
            self.unpersisted.pop_front();
        }
    }

    fn cached(&self, idx: u64) -> Option<&Entry> {
        let first = self.unpersisted.front()?.0.index;
        let i = usize::try_from(idx.checked_sub(first)?).ok()?;
        self.unpersisted.get(i).map(|(e, _)| e)
    }

    /// Stages removal of log entries up to `index` once the apply state recorded the truncation.
    pub fn compact_to(&self, from: u64, index: u64, wb: &mut WriteBatch) {
        if from <= index {
            wb.delete_range_cf(
                CF_DEFAULT,
                keys::raft_entry_key(self.region.id, from),
                keys::raft_entry_key(self.region.id, index + 1),
            );
        }
    }

    fn read_entry(&self, idx: u64) -> raft::Result<Option<Entry>> {
        let key = keys::raft_entry_key(self.region.id, idx);
        match self.raft_engine.get_cf(CF_DEFAULT, &key).map_err(storage_err)? {
            Some(b) => {
                let mut e = Entry::default();
                e.merge_from_bytes(&b).map_err(storage_err)?;
                Ok(Some(e))
            }
            None => Ok(None),
        }
    }
}

impl<ER: KvEngine> raft::Storage for PeerStorage<ER> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hs = HardState {
            term: self.raft_state.term,
            vote: self.raft_state.vote,
            commit: self.raft_state.commit,
            ..Default::default()
        };
        Ok(RaftState::new(hs, conf_state_of(&self.region)))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.apply_state.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.raft_state.last_index + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        // Entries at and after the first unpersisted one come from memory.
        let engine_high = self
            .unpersisted
            .front()
            .map_or(high, |(e, _)| e.index.clamp(low, high));
        let bounds = engine_traits::IterBounds::new(
            Some(keys::raft_entry_key(self.region.id, low)),
            Some(keys::raft_entry_key(self.region.id, engine_high)),
        );
        let mut it = self
            .raft_engine
            .iterator_cf(CF_DEFAULT, bounds)
            .map_err(storage_err)?;
        let mut valid = engine_traits::EngineIterator::seek_to_first(&mut it).map_err(storage_err)?;
        let mut expect = low;
        while valid {
            let mut e = Entry::default();
            e.merge_from_bytes(engine_traits::EngineIterator::value(&it))
                .map_err(storage_err)?;
            if e.index != expect {
                return Err(raft::Error::Store(StorageError::Unavailable));
            }
            size += e.compute_size() as u64;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e);
            expect += 1;
            valid = engine_traits::EngineIterator::next(&mut it).map_err(storage_err)?;
        }
        if expect == engine_high {
            while expect < high {
                let Some(e) = self.cached(expect) else { break };
                size += e.compute_size() as u64;
                if !out.is_empty() && size > max_size {
                    break;
                }
                out.push(e.clone());
                expect += 1;
            }
        }
        if out.is_empty() && low < high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.apply_state.truncated_index {
            return Ok(self.apply_state.truncated_term);
        }
        if idx < self.apply_state.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.raft_state.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if idx == self.raft_state.last_index {
            return Ok(self.raft_state.last_term);
        }
        if let Some(e) = self.cached(idx) {
            return Ok(e.term);
        }
        match self.read_entry(idx)? {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.apply_state.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.raft_state.last_index)
    }

    /// Snapshots are generated off the store loop: the first call asks for one (the store loop
    /// hands the job to the snapshot worker) and later calls return it once it is ready and
    /// recent enough.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let mut gen = self.snap_gen.borrow_mut();
        if let SnapGen::Ready(s) = &*gen {
            let md = s.get_metadata();
            let cs = md.get_conf_state();
            // A snapshot taken before `to` joined the region does not let it in.
            let has_to = cs
                .get_voters()
                .iter()
                .chain(cs.get_learners())
                .chain(cs.get_voters_outgoing())
                .any(|id| *id == to);
            if has_to && md.index >= request_index && md.index >= self.apply_state.truncated_index {
                return Ok(s.clone());
            }
            *gen = SnapGen::Idle;
        }
        if matches!(*gen, SnapGen::Idle) {
            *gen = SnapGen::Requested;
        }
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    }
}
