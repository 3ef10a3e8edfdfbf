//! The record of the `lock` column family: one per locked key, written by prewrite or a
//! pessimistic lock, removed by commit or rollback.
//!
//! Encoding (ours; the byte layout is in docs/design.md): a type byte, the primary key
//! (varint length + bytes), varints start_ts and ttl, then optional tagged fields in a fixed
//! order: `v` short value (u8 length + bytes), `f` for_update_ts (u64 BE), `t` txn_size
//! (u64 BE), `c` min_commit_ts (u64 BE), `a` async commit (varint count + length-prefixed
//! secondaries), `r` rollback timestamps (varint count + u64 BE each). Unknown tags are an error.

use crate::codec::{get_bytes, get_u64, get_u8, get_varint, put_bytes, put_varint};
use crate::{CodecError, TimeStamp};

/// Values up to this length are stored inside the lock/write record instead of `default`.
pub const SHORT_VALUE_MAX_LEN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockType {
    Put,
    Delete,
    /// A read lock written by a prewrite `Op::Lock` (commits as a `Lock` write record).
    Lock,
    /// A pessimistic lock: taken before prewrite, blocks writers but not readers.
    Pessimistic,
}

impl LockType {
    fn flag(self) -> u8 {
        match self {
            LockType::Put => b'P',
            LockType::Delete => b'D',
            LockType::Lock => b'L',
            LockType::Pessimistic => b'S',
        }
    }

    fn from_flag(b: u8) -> Result<LockType, CodecError> {
        Ok(match b {
            b'P' => LockType::Put,
            b'D' => LockType::Delete,
            b'L' => LockType::Lock,
            b'S' => LockType::Pessimistic,
            other => return Err(CodecError::BadMarker(other)),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub lock_type: LockType,
    /// The transaction's primary key (a user key, not encoded).
    pub primary: Vec<u8>,
    /// The owning transaction's start timestamp.
    pub ts: TimeStamp,
    /// Milliseconds, counted from the physical time of `ts`.
    pub ttl: u64,
    pub short_value: Option<Vec<u8>>,
    /// Non-zero for a pessimistic transaction's locks.
    pub for_update_ts: TimeStamp,
    pub txn_size: u64,
    /// The transaction can only commit at or after this timestamp.
    pub min_commit_ts: TimeStamp,
    pub use_async_commit: bool,
    /// For an async-commit primary: every other key of the transaction (user keys).
    pub secondaries: Vec<Vec<u8>>,
    /// Start timestamps of other transactions rolled back on this key while it was locked.
    pub rollback_ts: Vec<TimeStamp>,
}

impl Lock {
    pub fn new(lock_type: LockType, primary: Vec<u8>, ts: TimeStamp, ttl: u64) -> Lock {
        Lock {
            lock_type,
            primary,
            ts,
            ttl,
            short_value: None,
            for_update_ts: TimeStamp::zero(),
            txn_size: 0,
            min_commit_ts: TimeStamp::zero(),
            use_async_commit: false,
            secondaries: vec![],
            rollback_ts: vec![],
        }
    }

    pub fn is_pessimistic_lock(&self) -> bool {
        self.lock_type == LockType::Pessimistic
    }

    pub fn is_pessimistic_txn(&self) -> bool {
        !self.for_update_ts.is_zero()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.primary.len());
        out.push(self.lock_type.flag());
        put_bytes(&mut out, &self.primary);
        put_varint(&mut out, self.ts.into_inner());
        put_varint(&mut out, self.ttl);
        if let Some(v) = &self.short_value {
            out.push(b'v');
            out.push(v.len() as u8);
            out.extend_from_slice(v);
        }
        if !self.for_update_ts.is_zero() {
            out.push(b'f');
            out.extend_from_slice(&self.for_update_ts.into_inner().to_be_bytes());
        }
        if self.txn_size != 0 {
            out.push(b't');
            out.extend_from_slice(&self.txn_size.to_be_bytes());
        }
        if !self.min_commit_ts.is_zero() {
            out.push(b'c');
            out.extend_from_slice(&self.min_commit_ts.into_inner().to_be_bytes());
        }
        if self.use_async_commit {
            out.push(b'a');
            put_varint(&mut out, self.secondaries.len() as u64);
            for s in &self.secondaries {
                put_bytes(&mut out, s);
            }
        }
        if !self.rollback_ts.is_empty() {
            out.push(b'r');
            put_varint(&mut out, self.rollback_ts.len() as u64);
            for ts in &self.rollback_ts {
                out.extend_from_slice(&ts.into_inner().to_be_bytes());
            }
        }
        out
    }

    pub fn decode(mut b: &[u8]) -> Result<Lock, CodecError> {
        let b = &mut b;
        let lock_type = LockType::from_flag(get_u8(b)?)?;
        let primary = get_bytes(b)?;
        let ts = TimeStamp::new(get_varint(b)?);
        let ttl = get_varint(b)?;
        let mut lock = Lock::new(lock_type, primary, ts, ttl);
        while !b.is_empty() {
            match get_u8(b)? {
                b'v' => {
                    let len = get_u8(b)? as usize;
                    if b.len() < len {
                        return Err(CodecError::Eof);
                    }
                    let (v, rest) = b.split_at(len);
                    lock.short_value = Some(v.to_vec());
                    *b = rest;
                }
                b'f' => lock.for_update_ts = TimeStamp::new(get_u64(b)?),
                b't' => lock.txn_size = get_u64(b)?,
                b'c' => lock.min_commit_ts = TimeStamp::new(get_u64(b)?),
                b'a' => {
                    lock.use_async_commit = true;
                    let n = get_varint(b)?;
                    for _ in 0..n {
                        lock.secondaries.push(get_bytes(b)?);
                    }
                }
                b'r' => {
                    let n = get_varint(b)?;
                    for _ in 0..n {
                        lock.rollback_ts.push(TimeStamp::new(get_u64(b)?));
                    }
                }
                other => return Err(CodecError::BadMarker(other)),
            }
        }
        Ok(lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut full = Lock::new(LockType::Put, b"pk".to_vec(), TimeStamp::new(10), 3000);
        full.short_value = Some(b"v".to_vec());
        full.for_update_ts = TimeStamp::new(12);
        full.txn_size = 7;
        full.min_commit_ts = TimeStamp::new(11);
        full.use_async_commit = true;
        full.secondaries = vec![b"s1".to_vec(), vec![]];
        full.rollback_ts = vec![TimeStamp::new(3), TimeStamp::new(5)];
        for lock in [
            Lock::new(LockType::Delete, vec![], TimeStamp::zero(), 0),
            Lock::new(LockType::Pessimistic, b"p".to_vec(), TimeStamp::max(), u64::MAX),
            Lock::new(LockType::Lock, b"p".to_vec(), TimeStamp::new(1), 1),
            full,
        ] {
            assert_eq!(Lock::decode(&lock.encode()).unwrap(), lock);
        }
        let mut async_empty = Lock::new(LockType::Put, b"p".to_vec(), TimeStamp::new(1), 1);
        async_empty.use_async_commit = true;
        assert_eq!(Lock::decode(&async_empty.encode()).unwrap(), async_empty);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Lock::decode(b"").is_err());
        assert!(Lock::decode(b"X").is_err());
        let mut b = Lock::new(LockType::Put, b"p".to_vec(), TimeStamp::new(1), 1).encode();
        b.push(b'?');
        assert!(Lock::decode(&b).is_err());
        b.pop();
        b.extend_from_slice(b"v\x05ab");
        assert!(Lock::decode(&b).is_err());
    }
}
