//! Commands carried in Raft entries, and their byte encoding.
//!
//! Layout (all integers big-endian): `version:u8=1`, header `region_id:u64 peer_id:u64
//! conf_ver:u64 version:u64`, then a body tag: `1` = write (`count:u32`, then per modify
//! `op:u8 cf:u8` and length-prefixed (`u32`) byte strings: put key+value, delete key, delete-range
//! start+end), `2` = compact log (`index:u64 term:u64`), `3` = change peers (`count:u32`, then per
//! change `kind:u8 peer_id:u64 store_id:u64`; carried in a conf-change entry's context), `4` =
//! batch split (`count:u32`, then per cut the length-prefixed split key, `new_region_id:u64`,
//! `peers:u32` and that many `peer_id:u64`), `5` = prepare merge (`min_index:u64`, the target
//! region as length-prefixed protobuf), `6` = commit merge (the source region as length-prefixed
//! protobuf, `commit:u64`, `count:u32`, then each carried log entry as length-prefixed
//! protobuf), `7` = rollback merge (`commit:u64`). Keys are
//! range keys (no data prefix). The header's `term` is not encoded: it only guards the proposal.

use atoll_proto::metapb;
pub use engine_traits::Modify;
use engine_traits::{CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::Entry;

use crate::conf_change::PeerChange;
use crate::split::SplitRequest;
use crate::{Error, Result};

const CODEC_VERSION: u8 = 1;
const CFS: [&str; 4] = [CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAFT];

/// Where a command is addressed; checked when proposed and again when applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CmdHeader {
    pub region_id: u64,
    pub peer_id: u64,
    pub conf_ver: u64,
    pub version: u64,
    /// Non-zero: the write was computed from a snapshot read in this term, and is refused if
    /// the leader's term has changed since (not persisted).
    pub term: u64,
    /// A read that a follower may serve (ReadIndex from the leader, then a local read); not
    /// persisted.
    pub replica_read: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CmdBody {
    Write(Vec<Modify>),
    /// Drops log entries up to and including `index` (admin; proposed by the leader).
    CompactLog {
        index: u64,
        term: u64,
    },
    /// Membership change (admin; the payload of a conf-change entry's context).
    ChangePeer(Vec<PeerChange>),
    /// Cuts the region at each request's key (admin; see [`crate::split`]).
    BatchSplit(Vec<SplitRequest>),
    /// Freezes the source region for a merge into `target` (admin; see [`crate::merge`]).
    PrepareMerge {
        min_index: u64,
        target: metapb::Region,
    },
    /// Absorbs the prepared `source` into the target (admin, in the target's log), with the
    /// source's log entries `min_index + 1 ..= commit` for a lagging local source.
    CommitMerge {
        source: metapb::Region,
        commit: u64,
        entries: Vec<Entry>,
    },
    /// Undoes the prepare at index `commit` (admin, in the source's log).
    RollbackMerge {
        commit: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RaftCmd {
    pub header: CmdHeader,
    pub body: CmdBody,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn cf_index(cf: &str) -> u8 {
    CFS.iter().position(|c| *c == cf).unwrap_or(0) as u8
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Codec("truncated command".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn cf(&mut self) -> Result<&'static str> {
        let i = self.u8()? as usize;
        CFS.get(i)
            .copied()
            .ok_or_else(|| Error::Codec(format!("bad column family index {i}")))
    }
}

/// The encoded size of a write command carrying `modifies` (see the layout above).
pub fn write_encoded_len(modifies: &[Modify]) -> usize {
    let fixed = 1 + 4 * 8 + 1 + 4;
    fixed
        + modifies
            .iter()
            .map(|m| {
                2 + match m {
                    Modify::Put { key, value, .. } => 8 + key.len() + value.len(),
                    Modify::Delete { key, .. } => 4 + key.len(),
                    Modify::DeleteRange { start, end, .. } => 8 + start.len() + end.len(),
                }
            })
            .sum::<usize>()
}

impl RaftCmd {
    pub fn write(header: CmdHeader, modifies: Vec<Modify>) -> RaftCmd {
        RaftCmd {
            header,
            body: CmdBody::Write(modifies),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(CODEC_VERSION);
        for v in [
            self.header.region_id,
            self.header.peer_id,
            self.header.conf_ver,
            self.header.version,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        match &self.body {
            CmdBody::Write(modifies) => {
                out.push(1);
                out.extend_from_slice(&(modifies.len() as u32).to_be_bytes());
                for m in modifies {
                    match m {
                        Modify::Put { cf, key, value } => {
                            out.extend_from_slice(&[1, cf_index(cf)]);
                            put_bytes(&mut out, key);
                            put_bytes(&mut out, value);
                        }
                        Modify::Delete { cf, key } => {
                            out.extend_from_slice(&[2, cf_index(cf)]);
                            put_bytes(&mut out, key);
                        }
                        Modify::DeleteRange { cf, start, end } => {
                            out.extend_from_slice(&[3, cf_index(cf)]);
                            put_bytes(&mut out, start);
                            put_bytes(&mut out, end);
                        }
                    }
                }
            }
            CmdBody::CompactLog { index, term } => {
                out.push(2);
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&term.to_be_bytes());
            }
            CmdBody::ChangePeer(changes) => {
                out.push(3);
                out.extend_from_slice(&(changes.len() as u32).to_be_bytes());
                for c in changes {
                    out.push(c.tag());
                    out.extend_from_slice(&c.peer().id.to_be_bytes());
                    out.extend_from_slice(&c.peer().store_id.to_be_bytes());
                }
            }
            CmdBody::BatchSplit(reqs) => {
                out.push(4);
                out.extend_from_slice(&(reqs.len() as u32).to_be_bytes());
                for r in reqs {
                    put_bytes(&mut out, &r.split_key);
                    out.extend_from_slice(&r.new_region_id.to_be_bytes());
                    out.extend_from_slice(&(r.new_peer_ids.len() as u32).to_be_bytes());
                    for id in &r.new_peer_ids {
                        out.extend_from_slice(&id.to_be_bytes());
                    }
                }
            }
            CmdBody::PrepareMerge { min_index, target } => {
                out.push(5);
                out.extend_from_slice(&min_index.to_be_bytes());
                put_bytes(&mut out, &target.encode_to_vec());
            }
            CmdBody::CommitMerge {
                source,
                commit,
                entries,
            } => {
                out.push(6);
                put_bytes(&mut out, &source.encode_to_vec());
                out.extend_from_slice(&commit.to_be_bytes());
                out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for e in entries {
                    put_bytes(&mut out, &e.write_to_bytes().unwrap_or_default());
                }
            }
            CmdBody::RollbackMerge { commit } => {
                out.push(7);
                out.extend_from_slice(&commit.to_be_bytes());
            }
        }
        out
    }

    pub fn decode(data: &[u8]) -> Result<RaftCmd> {
        let mut r = Reader(data);
        let version = r.u8()?;
        if version != CODEC_VERSION {
            return Err(Error::Codec(format!("unknown command version {version}")));
        }
        let header = CmdHeader {
            region_id: r.u64()?,
            peer_id: r.u64()?,
            conf_ver: r.u64()?,
            version: r.u64()?,
            term: 0,
            replica_read: false,
        };
        let body = match r.u8()? {
            1 => {
                let n = r.u32()? as usize;
                let mut modifies = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    let op = r.u8()?;
                    let cf = r.cf()?;
                    modifies.push(match op {
                        1 => Modify::Put {
                            cf,
                            key: r.bytes()?,
                            value: r.bytes()?,
                        },
                        2 => Modify::Delete { cf, key: r.bytes()? },
                        3 => Modify::DeleteRange {
                            cf,
                            start: r.bytes()?,
                            end: r.bytes()?,
                        },
                        other => return Err(Error::Codec(format!("unknown modify op {other}"))),
                    });
                }
                CmdBody::Write(modifies)
            }
            2 => CmdBody::CompactLog {
                index: r.u64()?,
                term: r.u64()?,
            },
            3 => {
                let n = r.u32()? as usize;
                let mut changes = Vec::with_capacity(n.min(16));
                for _ in 0..n {
                    let tag = r.u8()?;
                    let peer = metapb::Peer {
                        id: r.u64()?,
                        store_id: r.u64()?,
                        ..Default::default()
                    };
                    changes.push(
                        PeerChange::from_tag(tag, peer)
                            .ok_or_else(|| Error::Codec(format!("unknown peer change {tag}")))?,
                    );
                }
                CmdBody::ChangePeer(changes)
            }
            4 => {
                let n = r.u32()? as usize;
                let mut reqs = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    let split_key = r.bytes()?;
                    let new_region_id = r.u64()?;
                    let peers = r.u32()? as usize;
                    let mut new_peer_ids = Vec::with_capacity(peers.min(16));
                    for _ in 0..peers {
                        new_peer_ids.push(r.u64()?);
                    }
                    reqs.push(SplitRequest {
                        split_key,
                        new_region_id,
                        new_peer_ids,
                    });
                }
                CmdBody::BatchSplit(reqs)
            }
            5 => CmdBody::PrepareMerge {
                min_index: r.u64()?,
                target: metapb::Region::decode(r.bytes()?.as_slice())?,
            },
            6 => {
                let source = metapb::Region::decode(r.bytes()?.as_slice())?;
                let commit = r.u64()?;
                let n = r.u32()? as usize;
                let mut entries = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let e = Entry::parse_from_bytes(&r.bytes()?).map_err(|e| Error::Codec(e.to_string()))?;
                    entries.push(e);
                }
                CmdBody::CommitMerge {
                    source,
                    commit,
                    entries,
                }
            }
            7 => CmdBody::RollbackMerge { commit: r.u64()? },
            other => return Err(Error::Codec(format!("unknown command body {other}"))),
        };
        if !r.0.is_empty() {
            return Err(Error::Codec("trailing bytes after command".into()));
        }
        Ok(RaftCmd { header, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let header = CmdHeader {
            region_id: 7,
            peer_id: 8,
            conf_ver: 1,
            version: 3,
            term: 0,
            replica_read: false,
        };
        let cmds = [
            RaftCmd::write(
                header,
                vec![
                    Modify::Put {
                        cf: CF_DEFAULT,
                        key: b"k".to_vec(),
                        value: b"v".to_vec(),
                    },
                    Modify::Delete {
                        cf: CF_LOCK,
                        key: b"".to_vec(),
                    },
                    Modify::DeleteRange {
                        cf: CF_WRITE,
                        start: b"a".to_vec(),
                        end: vec![],
                    },
                ],
            ),
            RaftCmd::write(header, vec![]),
            RaftCmd {
                header,
                body: CmdBody::CompactLog { index: 100, term: 6 },
            },
            RaftCmd {
                header,
                body: CmdBody::ChangePeer(vec![
                    PeerChange::AddLearner(metapb::Peer {
                        id: 9,
                        store_id: 3,
                        ..Default::default()
                    }),
                    PeerChange::Remove(metapb::Peer {
                        id: 4,
                        store_id: 1,
                        ..Default::default()
                    }),
                ]),
            },
            RaftCmd {
                header,
                body: CmdBody::BatchSplit(vec![
                    SplitRequest {
                        split_key: b"m".to_vec(),
                        new_region_id: 20,
                        new_peer_ids: vec![21, 22, 23],
                    },
                    SplitRequest {
                        split_key: b"t".to_vec(),
                        new_region_id: 30,
                        new_peer_ids: vec![31, 32, 33],
                    },
                ]),
            },
            RaftCmd {
                header,
                body: CmdBody::PrepareMerge {
                    min_index: 9,
                    target: metapb::Region {
                        id: 3,
                        start_key: b"m".to_vec(),
                        ..Default::default()
                    },
                },
            },
            RaftCmd {
                header,
                body: CmdBody::CommitMerge {
                    source: metapb::Region {
                        id: 2,
                        end_key: b"m".to_vec(),
                        ..Default::default()
                    },
                    commit: 11,
                    entries: vec![
                        Entry {
                            index: 10,
                            term: 2,
                            data: b"x".to_vec().into(),
                            ..Default::default()
                        },
                        Entry {
                            index: 11,
                            term: 2,
                            ..Default::default()
                        },
                    ],
                },
            },
            RaftCmd {
                header,
                body: CmdBody::RollbackMerge { commit: 11 },
            },
        ];
        for c in cmds {
            let enc = c.encode();
            if let CmdBody::Write(m) = &c.body {
                assert_eq!(write_encoded_len(m), enc.len());
            }
            assert_eq!(RaftCmd::decode(&enc).expect("decode"), c);
        }
    }

    #[test]
    fn rejects_garbage() {
        let c = RaftCmd::write(
            CmdHeader::default(),
            vec![Modify::Put {
                cf: CF_DEFAULT,
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }],
        );
        let enc = c.encode();
        for cut in 0..enc.len() {
            assert!(RaftCmd::decode(&enc[..cut]).is_err(), "prefix {cut} accepted");
        }
        let mut extra = enc.clone();
        extra.push(0);
        assert!(RaftCmd::decode(&extra).is_err());
        let mut bad_version = enc;
        bad_version[0] = 9;
        assert!(RaftCmd::decode(&bad_version).is_err());
    }
}
