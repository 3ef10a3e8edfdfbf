//! Checks on the regions PD lists.

use super::*;

impl Cluster {
    /// Waits until every region PD lists has `peers` peers and a leader, then asserts that the
    /// regions tile the key space (each ends where the next in key order starts).
    pub async fn wait_regions_tile(&self, peers: usize) {
        wait_until(
            Duration::from_secs(60),
            &format!("every region has {peers} peers and a leader"),
            || async {
                self.pd_regions().await.iter().all(|r| {
                    r["peers"].as_array().map(Vec::len) == Some(peers)
                        && r["leader"]["id"].as_u64().unwrap_or(0) > 0
                })
            },
        )
        .await;
        let mut bounds: Vec<(String, String)> = self
            .pd_regions()
            .await
            .iter()
            .map(|r| {
                (
                    r["start_key"].as_str().unwrap_or_default().to_owned(),
                    r["end_key"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        bounds.sort();
        assert_eq!(
            bounds.first().map(|b| b.0.as_str()),
            Some(""),
            "no region starts the key space"
        );
        assert_eq!(
            bounds.last().map(|b| b.1.as_str()),
            Some(""),
            "no region ends the key space"
        );
        for w in bounds.windows(2) {
            assert_eq!(w[0].1, w[1].0, "regions do not tile: {w:?}");
        }
    }
}
