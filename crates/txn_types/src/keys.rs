//! Key prefixes of the KV engine.
//!
//! User data lives under `DATA_PREFIX` ('z') so that local metadata (prefix `0x01`) sorts before
//! all of it. Region boundaries (`metapb::Region.start_key/end_key`) are in "range key" space —
//! the bytes data keys carry after the prefix; an empty end key means "to the end".

pub const DATA_PREFIX: u8 = b'z';
/// One past every data key: the exclusive end of the data space.
pub const DATA_END: &[u8] = b"{";

/// The engine key of range key `key`.
pub fn data_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(DATA_PREFIX);
    out.extend_from_slice(key);
    out
}

/// The engine key bounding a region's end (`DATA_END` for an empty end key).
pub fn data_end_key(end: &[u8]) -> Vec<u8> {
    if end.is_empty() {
        DATA_END.to_vec()
    } else {
        data_key(end)
    }
}

/// The range key of engine key `key`, if it is a data key.
pub fn origin_key(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(&[DATA_PREFIX])
}

/// Whether range key `key` lies in `[start, end)` (empty `end` = unbounded).
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(data_key(b"k"), b"zk".to_vec());
        assert_eq!(origin_key(b"zk"), Some(&b"k"[..]));
        assert_eq!(origin_key(b"\x01k"), None);
        assert!(data_key(&[0xff; 10]) < data_end_key(b""));
        assert!(in_range(b"b", b"a", b""));
        assert!(in_range(b"a", b"a", b"b"));
        assert!(!in_range(b"b", b"a", b"b"));
    }
}
