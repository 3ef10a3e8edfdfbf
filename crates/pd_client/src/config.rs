//! Client tunables.

use std::time::Duration;

/// How the client connects, times out and retries. [`Config::default`] suits a node; tests
/// shorten the timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long [`crate::PdClient::connect`] keeps trying to find a PD leader (PD may start
    /// after the node).
    pub connect_timeout: Duration,
    /// Time to dial one endpoint (TCP + HTTP/2 handshake).
    pub dial_timeout: Duration,
    /// Deadline of one RPC attempt (one unary call, or one TSO round trip).
    pub rpc_timeout: Duration,
    /// Extra attempts after a retryable failure of an RPC.
    pub max_retries: u32,
    /// First backoff between attempts; doubled each time up to [`Config::max_backoff`].
    pub base_backoff: Duration,
    /// Upper bound of a backoff step.
    pub max_backoff: Duration,
    /// Most `get_tso` calls folded into one `TsoRequest`.
    pub max_tso_batch: u32,
    /// Capacity of the region heartbeat queue; [`crate::PdClient::region_heartbeat`] fails
    /// when it is full.
    pub heartbeat_queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connect_timeout: Duration::from_secs(60),
            dial_timeout: Duration::from_secs(3),
            rpc_timeout: Duration::from_secs(10),
            max_retries: 5,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            max_tso_batch: 4096,
            heartbeat_queue: 4096,
        }
    }
}

/// Exponential backoff: `base, 2*base, 4*base, …` capped at `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    base: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            next: base,
            base,
            max,
        }
    }

    pub(crate) fn from_config(config: &Config) -> Backoff {
        Backoff::new(config.base_backoff, config.max_backoff)
    }

    /// The delay to wait now; the following one is doubled.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.max);
        self.next = delay.saturating_mul(2).min(self.max);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 350, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
