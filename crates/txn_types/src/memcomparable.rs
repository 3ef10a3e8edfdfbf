//! Memcomparable byte-string encoding: the key is cut into 8-byte groups; each group is written
//! padded with zeros and followed by a marker `0xff - padding`. A full group's marker is `0xff`,
//! and the last group always has padding (possibly a whole group of it), so the encoding of `a`
//! sorts before the encoding of every key that has `a` as a proper prefix.

use crate::CodecError;

const GROUP: usize = 8;
const MARKER: u8 = 0xff;

/// Length of the encoding of a `len`-byte key.
pub fn encoded_len(len: usize) -> usize {
    (len / GROUP + 1) * (GROUP + 1)
}

/// Appends the encoding of `key` to `out`.
pub fn encode_bytes_to(key: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(key.len()));
    let mut chunks = key.chunks_exact(GROUP);
    for chunk in &mut chunks {
        out.extend_from_slice(chunk);
        out.push(MARKER);
    }
    let rest = chunks.remainder();
    let pad = GROUP - rest.len();
    out.extend_from_slice(rest);
    out.extend(std::iter::repeat_n(0u8, pad));
    out.push(MARKER - pad as u8);
}

/// The encoding of `key`.
pub fn encode_bytes(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(key.len()));
    encode_bytes_to(key, &mut out);
    out
}

/// Decodes one encoded key from the front of `input`; returns it and the bytes after it.
pub fn decode_bytes(input: &[u8]) -> Result<(Vec<u8>, &[u8]), CodecError> {
    let mut out = Vec::with_capacity(input.len() / (GROUP + 1) * GROUP);
    let mut rest = input;
    loop {
        if rest.len() < GROUP + 1 {
            return Err(CodecError::Eof);
        }
        let (group, tail) = rest.split_at(GROUP + 1);
        rest = tail;
        let marker = group[GROUP];
        if marker == MARKER {
            out.extend_from_slice(&group[..GROUP]);
            continue;
        }
        let pad = (MARKER - marker) as usize;
        if pad > GROUP {
            return Err(CodecError::BadMarker(marker));
        }
        let real = GROUP - pad;
        if group[real..GROUP].iter().any(|b| *b != 0) {
            return Err(CodecError::BadPadding);
        }
        out.extend_from_slice(&group[..real]);
        return Ok((out, rest));
    }
}

/// Decodes a whole encoded key (no trailing bytes allowed).
pub fn decode_bytes_exact(input: &[u8]) -> Result<Vec<u8>, CodecError> {
    match decode_bytes(input)? {
        (key, []) => Ok(key),
        (_, _) => Err(CodecError::BadPadding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        assert_eq!(encode_bytes(b""), vec![0, 0, 0, 0, 0, 0, 0, 0, 0xf7]);
        assert_eq!(encode_bytes(b"r\0\0\0"), b"r\0\0\0\0\0\0\0\xfb".to_vec());
        assert_eq!(
            encode_bytes(b"12345678"),
            b"12345678\xff\0\0\0\0\0\0\0\0\xf7".to_vec()
        );
        assert_eq!(
            encode_bytes(b"123456789"),
            b"12345678\xff9\0\0\0\0\0\0\0\xf8".to_vec()
        );
    }

    #[test]
    fn round_trip_and_order() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\xff".to_vec(),
            b"abcdefgh".to_vec(),
            b"abcdefgh\0".to_vec(),
            b"abcdefghi".to_vec(),
            vec![0xff; 17],
        ];
        for k in &keys {
            let enc = encode_bytes(k);
            assert_eq!(enc.len(), encoded_len(k.len()));
            assert_eq!(&decode_bytes_exact(&enc).expect("decode"), k);
            let mut with_tail = enc.clone();
            with_tail.extend_from_slice(b"tail");
            let (dec, rest) = decode_bytes(&with_tail).expect("decode");
            assert_eq!((&dec, rest), (k, &b"tail"[..]));
        }
        for a in &keys {
            for b in &keys {
                assert_eq!(a.cmp(b), encode_bytes(a).cmp(&encode_bytes(b)), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode_bytes(b"abc"), Err(CodecError::Eof));
        assert_eq!(
            decode_bytes(b"a\0\0\0\0\0\0\x01\xf8"),
            Err(CodecError::BadPadding)
        );
        assert_eq!(
            decode_bytes(b"a\0\0\0\0\0\0\0\x01"),
            Err(CodecError::BadMarker(1))
        );
        assert!(decode_bytes_exact(b"12345678\xff").is_err());
    }
}
