//! MVCC keys: a transactional key is stored memcomparable-encoded (the space of region
//! boundaries); its versions in the `write` and `default` column families carry an 8-byte
//! suffix `!ts` (big-endian), so that for one key newer versions sort first.

use crate::{memcomparable, CodecError, TimeStamp};

/// Length of the timestamp suffix.
pub const TS_LEN: usize = 8;

/// The stored form of user key `raw`.
pub fn encode(raw: &[u8]) -> Vec<u8> {
    memcomparable::encode_bytes(raw)
}

/// The user key of a stored (encoded) key.
pub fn decode(encoded: &[u8]) -> Result<Vec<u8>, CodecError> {
    memcomparable::decode_bytes_exact(encoded)
}

/// `encoded ++ !ts`: the version of `encoded` at `ts`.
pub fn append_ts(encoded: &[u8], ts: TimeStamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + TS_LEN);
    out.extend_from_slice(encoded);
    out.extend_from_slice(&(!ts.into_inner()).to_be_bytes());
    out
}

/// Splits a versioned key into its encoded key and timestamp.
pub fn split_ts(versioned: &[u8]) -> Result<(&[u8], TimeStamp), CodecError> {
    if versioned.len() < TS_LEN {
        return Err(CodecError::Eof);
    }
    let (key, ts) = versioned.split_at(versioned.len() - TS_LEN);
    let mut a = [0u8; TS_LEN];
    a.copy_from_slice(ts);
    Ok((key, TimeStamp::new(!u64::from_be_bytes(a))))
}

/// An exclusive bound just above every version of `encoded` and below every version of any
/// larger key (encoded keys are prefix-free, so a larger key differs within `encoded`'s length).
pub fn versions_end(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + TS_LEN + 1);
    out.extend_from_slice(encoded);
    out.extend_from_slice(&[0xff; TS_LEN + 1]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_newest_first_and_stay_inside_their_key() {
        let a = encode(b"a");
        let ab = encode(b"ab");
        let v1 = append_ts(&a, TimeStamp::new(1));
        let v9 = append_ts(&a, TimeStamp::new(9));
        assert!(v9 < v1);
        assert!(v1 < versions_end(&a));
        assert!(versions_end(&a) < append_ts(&ab, TimeStamp::max()));
        assert!(append_ts(&a, TimeStamp::zero()) < versions_end(&a));
        let (k, ts) = split_ts(&v9).unwrap();
        assert_eq!((k, ts), (a.as_slice(), TimeStamp::new(9)));
        assert_eq!(decode(k).unwrap(), b"a".to_vec());
        assert!(split_ts(b"short").is_err());
    }
}
