//! Value formats of PD's JSON (Go's): byte sizes like "1.5GiB", RFC 3339 times, Go floats.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serializer;

/// Like go-units `BytesSize`: binary units, 4 significant digits ("0B", "1KiB", "49.5GiB").
pub fn byte_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", significant(size, 4), UNITS[i])
}

/// `%.{digits}g` for values below 10^digits: rounded to `digits` significant digits, trailing
/// zeros trimmed.
fn significant(v: f64, digits: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 with nanoseconds (trailing zeros trimmed) in UTC, like Go's `time.RFC3339Nano`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, mo, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let nanos = d.subsec_nanos();
    let frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{:09}", nanos).trim_end_matches('0').to_string()
    };
    format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}{frac}Z")
}

/// Serializes a float the way Go's encoding/json does for ordinary values (`1` not `1.0`).
pub fn go_float<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// Uppercase hex of raw key bytes (PD's `HexRegionKeyStr`).
pub fn hex_upper(key: &[u8]) -> String {
    use std::fmt::Write;
    key.iter().fold(String::with_capacity(key.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn byte_sizes_like_go_units() {
        assert_eq!(byte_size(0), "0B");
        assert_eq!(byte_size(512), "512B");
        assert_eq!(byte_size(1024), "1KiB");
        assert_eq!(byte_size(1536), "1.5KiB");
        assert_eq!(byte_size(100 << 30), "100GiB");
        assert_eq!(byte_size((49 << 30) + (1 << 29)), "49.5GiB");
        assert_eq!(byte_size(1_000_000_000_000), "931.3GiB");
        assert_eq!(byte_size(1023 * 1024 + 1000), "1024KiB");
    }

    #[test]
    fn times_and_keys() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.12Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(hex_upper(b"t\x80\x00\xff"), "748000FF");
        assert_eq!(hex_upper(b""), "");
    }
}
