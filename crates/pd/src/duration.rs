//! A duration read and written the way PD's config does ("30m", "10s", "1h30m", "500ms").

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A human-readable duration; prints like Go's `time.Duration.String()` (e.g. "30m0s").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ReadableDuration(pub Duration);

impl ReadableDuration {
    pub const fn secs(s: u64) -> ReadableDuration {
        ReadableDuration(Duration::from_secs(s))
    }

    pub const fn millis(ms: u64) -> ReadableDuration {
        ReadableDuration(Duration::from_millis(ms))
    }

    /// Parses Go-style durations: a sequence of `<number><unit>` with units ns, us, µs, ms, s,
    /// m, h (and d for convenience). A bare "0" is zero.
    pub fn parse(s: &str) -> Result<ReadableDuration, String> {
        let s = s.trim();
        if s == "0" || s.is_empty() {
            return Ok(ReadableDuration(Duration::ZERO));
        }
        let mut total = 0f64;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if num_len == 0 {
                return Err(format!("invalid duration {s:?}"));
            }
            let value: f64 = rest[..num_len]
                .parse()
                .map_err(|_| format!("invalid duration {s:?}"))?;
            rest = &rest[num_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let nanos_per_unit = match &rest[..unit_len] {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                "d" => 86400e9,
                u => return Err(format!("invalid duration unit {u:?} in {s:?}")),
            };
            rest = &rest[unit_len..];
            total += value * nanos_per_unit;
        }
        Ok(ReadableDuration(Duration::from_nanos(total.round() as u64)))
    }
}

/// `v` with trailing zeros (and a trailing dot) removed from its fraction of `digits` digits.
fn trim_fraction(int: u128, frac: u128, digits: usize) -> String {
    if frac == 0 {
        return int.to_string();
    }
    let f = format!("{frac:0digits$}");
    format!("{int}.{}", f.trim_end_matches('0'))
}

impl fmt::Display for ReadableDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        if ns == 0 {
            return f.write_str("0s");
        }
        if ns < 1_000 {
            return write!(f, "{ns}ns");
        }
        if ns < 1_000_000 {
            return write!(f, "{}µs", trim_fraction(ns / 1_000, ns % 1_000, 3));
        }
        if ns < 1_000_000_000 {
            return write!(f, "{}ms", trim_fraction(ns / 1_000_000, ns % 1_000_000, 6));
        }
        let secs = ns / 1_000_000_000;
        let frac = ns % 1_000_000_000;
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        let s = trim_fraction(s, frac, 9);
        if h > 0 {
            write!(f, "{h}h{m}m{s}s")
        } else if m > 0 {
            write!(f, "{m}m{s}s")
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for ReadableDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ReadableDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ReadableDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_like_go() {
        let cases = [
            ("30m", "30m0s"),
            ("10s", "10s"),
            ("1h30m", "1h30m0s"),
            ("500ms", "500ms"),
            ("10ms", "10ms"),
            ("1.5s", "1.5s"),
            ("24h", "24h0m0s"),
            ("0", "0s"),
            ("90s", "1m30s"),
        ];
        for (input, printed) in cases {
            assert_eq!(
                ReadableDuration::parse(input).unwrap().to_string(),
                printed,
                "{input}"
            );
        }
        assert!(ReadableDuration::parse("10x").is_err());
        assert!(ReadableDuration::parse("s").is_err());
        assert_eq!(ReadableDuration(Duration::from_micros(1500)).to_string(), "1.5ms");
    }
}
