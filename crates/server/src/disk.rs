//! Watching the data disk's free space (TiKV's `storage.reserve-space`): below the reserve
//! the store is "disk full" — raftstore refuses client writes with `DiskFull` and drops Raft
//! appends and snapshots to its peers — until space is back, checked every second.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often free space is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The space kept free: the configured reserve, at most 5% of the disk (a small disk stays
/// usable); 0 disables the check.
pub fn effective_reserve(configured: u64, total: u64) -> u64 {
    configured.min(total / 20)
}

/// Whether a disk with `available` bytes free is full under `reserve`.
pub fn is_full(available: u64, reserve: u64) -> bool {
    reserve > 0 && available < reserve
}

/// Sets `full` while the disk of `data_dir` has less than the reserve free; runs until aborted.
pub async fn watch(data_dir: PathBuf, configured: u64, full: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let dir = data_dir.clone();
        let space = tokio::task::spawn_blocking(move || {
            Some((fs4::total_space(&dir).ok()?, fs4::available_space(&dir).ok()?))
        })
        .await
        .ok()
        .flatten();
        let Some((total, available)) = space else {
            continue;
        };
        let reserve = effective_reserve(configured, total);
        let now_full = is_full(available, reserve);
        if full.swap(now_full, Ordering::Relaxed) != now_full {
            if now_full {
                tracing::warn!(
                    available,
                    reserve,
                    "the data disk is full: writes are refused until space is freed"
                );
            } else {
                tracing::info!(available, reserve, "the data disk has space again: writes resume");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_capped_and_zero_disables() {
        let gib = 1u64 << 30;
        assert_eq!(effective_reserve(5 * gib, 1000 * gib), 5 * gib);
        assert_eq!(effective_reserve(5 * gib, 20 * gib), gib);
        assert_eq!(effective_reserve(0, 20 * gib), 0);
        assert!(!is_full(0, 0));
        assert!(is_full(gib - 1, gib));
        assert!(!is_full(gib, gib));
    }
}
