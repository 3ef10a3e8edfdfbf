use std::fmt;

/// Number of bits of the logical part of a timestamp.
pub const LOGICAL_BITS: u32 = 18;

/// A TSO timestamp: `physical_ms << 18 | logical`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeStamp(u64);

impl TimeStamp {
    pub const fn new(ts: u64) -> TimeStamp {
        TimeStamp(ts)
    }

    pub const fn compose(physical_ms: u64, logical: u64) -> TimeStamp {
        TimeStamp((physical_ms << LOGICAL_BITS) | (logical & ((1 << LOGICAL_BITS) - 1)))
    }

    pub const fn zero() -> TimeStamp {
        TimeStamp(0)
    }

    pub const fn max() -> TimeStamp {
        TimeStamp(u64::MAX)
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The next timestamp (saturating).
    pub const fn next(self) -> TimeStamp {
        TimeStamp(self.0.saturating_add(1))
    }

    /// The previous timestamp (saturating).
    pub const fn prev(self) -> TimeStamp {
        TimeStamp(self.0.saturating_sub(1))
    }

    pub const fn physical(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    pub const fn logical(self) -> u64 {
        self.0 & ((1 << LOGICAL_BITS) - 1)
    }

    pub const fn into_inner(self) -> u64 {
        self.0
    }
}

impl From<u64> for TimeStamp {
    fn from(ts: u64) -> TimeStamp {
        TimeStamp(ts)
    }
}

impl fmt::Display for TimeStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_split() {
        let ts = TimeStamp::compose(1_700_000_000_000, 42);
        assert_eq!(ts.physical(), 1_700_000_000_000);
        assert_eq!(ts.logical(), 42);
        assert!(TimeStamp::compose(1, 0) > TimeStamp::compose(0, (1 << 18) - 1));
    }
}
