//! The record of the `write` column family, stored at `key ++ !commit_ts` (for a rollback,
//! `key ++ !start_ts`): what a finished transaction did to the key.
//!
//! Encoding (ours; see docs/design.md): a type byte, varint start_ts, then optional tagged
//! fields: `v` short value (u8 length + bytes), `R` overlapped rollback (no payload).

use crate::codec::{get_u8, get_varint, put_varint};
use crate::lock::LockType;
use crate::{CodecError, TimeStamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteType {
    Put,
    Delete,
    /// A committed read lock: the key was not changed.
    Lock,
    /// The transaction was rolled back; protects the key from a late prewrite of it.
    Rollback,
}

impl WriteType {
    fn flag(self) -> u8 {
        match self {
            WriteType::Put => b'P',
            WriteType::Delete => b'D',
            WriteType::Lock => b'L',
            WriteType::Rollback => b'R',
        }
    }

    fn from_flag(b: u8) -> Result<WriteType, CodecError> {
        Ok(match b {
            b'P' => WriteType::Put,
            b'D' => WriteType::Delete,
            b'L' => WriteType::Lock,
            b'R' => WriteType::Rollback,
            other => return Err(CodecError::BadMarker(other)),
        })
    }

    /// The write a committed lock of `lock_type` becomes (`None` for a pessimistic lock,
    /// which cannot be committed).
    pub fn from_lock_type(lock_type: LockType) -> Option<WriteType> {
        match lock_type {
            LockType::Put => Some(WriteType::Put),
            LockType::Delete => Some(WriteType::Delete),
            LockType::Lock => Some(WriteType::Lock),
            LockType::Pessimistic => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub write_type: WriteType,
    pub start_ts: TimeStamp,
    pub short_value: Option<Vec<u8>>,
    /// A rollback of the transaction whose start_ts equals this record's commit_ts happened
    /// here; the record stands for both.
    pub has_overlapped_rollback: bool,
}

impl Write {
    pub fn new(write_type: WriteType, start_ts: TimeStamp, short_value: Option<Vec<u8>>) -> Write {
        Write {
            write_type,
            start_ts,
            short_value,
            has_overlapped_rollback: false,
        }
    }

    pub fn new_rollback(start_ts: TimeStamp) -> Write {
        Write::new(WriteType::Rollback, start_ts, None)
    }

    /// Whether this version holds data (`Put`/`Delete`), as opposed to `Lock`/`Rollback`.
    pub fn is_data_change(&self) -> bool {
        matches!(self.write_type, WriteType::Put | WriteType::Delete)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.short_value.as_ref().map_or(0, |v| v.len() + 2));
        out.push(self.write_type.flag());
        put_varint(&mut out, self.start_ts.into_inner());
        if let Some(v) = &self.short_value {
            out.push(b'v');
            out.push(v.len() as u8);
            out.extend_from_slice(v);
        }
        if self.has_overlapped_rollback {
            out.push(b'R');
        }
        out
    }

    pub fn decode(mut b: &[u8]) -> Result<Write, CodecError> {
        let b = &mut b;
        let write_type = WriteType::from_flag(get_u8(b)?)?;
        let start_ts = TimeStamp::new(get_varint(b)?);
        let mut w = Write::new(write_type, start_ts, None);
        while !b.is_empty() {
            match get_u8(b)? {
                b'v' => {
                    let len = get_u8(b)? as usize;
                    if b.len() < len {
                        return Err(CodecError::Eof);
                    }
                    let (v, rest) = b.split_at(len);
                    w.short_value = Some(v.to_vec());
                    *b = rest;
                }
                b'R' => w.has_overlapped_rollback = true,
                other => return Err(CodecError::BadMarker(other)),
            }
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut overlapped = Write::new(WriteType::Put, TimeStamp::new(9), Some(vec![]));
        overlapped.has_overlapped_rollback = true;
        for w in [
            Write::new(WriteType::Put, TimeStamp::new(1), Some(b"value".to_vec())),
            Write::new(WriteType::Delete, TimeStamp::max(), None),
            Write::new(WriteType::Lock, TimeStamp::zero(), None),
            Write::new_rollback(TimeStamp::new(5)),
            overlapped,
        ] {
            assert_eq!(Write::decode(&w.encode()).unwrap(), w);
        }
        assert!(Write::decode(b"").is_err());
        assert!(Write::decode(b"Z\x01").is_err());
        assert!(Write::decode(b"P\x01v\x09ab").is_err());
    }
}
