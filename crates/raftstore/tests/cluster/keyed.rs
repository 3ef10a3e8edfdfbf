//! Requests routed by key, as a client with a region cache does once regions split: find the
//! region holding a key (the newest view any leader has), retry on epoch and leader errors, and
//! scan across regions. Also splits proposed as the node does (ids allocated here instead of
//! by PD), and the pump that answers the stores' split requests in the harness.

use super::*;
use raftstore::split::split_regions;
use raftstore::SplitRequest;

fn contains(region: &metapb::Region, key: &[u8]) -> bool {
    key >= region.start_key.as_slice() && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

/// Splits `region` at `keys` with ids from `ids`, through `router` (the region's leader).
pub async fn split_with(
    router: &StoreRouter,
    ids: &AtomicU64,
    region: &metapb::Region,
    keys: Vec<Vec<u8>>,
) -> raftstore::Result<Vec<metapb::Region>> {
    let requests: Vec<SplitRequest> = keys
        .into_iter()
        .map(|split_key| SplitRequest {
            split_key,
            new_region_id: ids.fetch_add(1, Ordering::Relaxed),
            new_peer_ids: region
                .peers
                .iter()
                .map(|_| ids.fetch_add(1, Ordering::Relaxed))
                .collect(),
        })
        .collect();
    let regions = split_regions(region, &requests)?;
    router.batch_split(header_of(region), requests).await?;
    Ok(regions)
}

/// Answers a store's events as the node would: splits the store asks for are done at once;
/// everything else is passed on for [`Cluster::take_events`].
pub(super) fn spawn_event_pump(
    router: StoreRouter,
    ids: Arc<AtomicU64>,
    mut rx: UnboundedReceiver<StoreEvent>,
) -> UnboundedReceiver<StoreEvent> {
    let (tx, out) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            match ev {
                StoreEvent::AskSplit { region, split_keys } => {
                    let (router, ids) = (router.clone(), ids.clone());
                    tokio::spawn(async move {
                        let _ = split_with(&router, &ids, &region, split_keys).await;
                    });
                }
                other => {
                    let _ = tx.send(other);
                }
            }
        }
    });
    out
}

impl Client {
    /// The store leading the region that holds `key`, with the newest view of that region
    /// any running leader has.
    pub async fn leader_for_key(&self, key: &[u8]) -> Option<(u64, RegionInfo)> {
        let mut best: Option<(u64, RegionInfo)> = None;
        for store in self.running_stores() {
            for info in self.region_infos(store).await.unwrap_or_default() {
                if !info.is_leader || !contains(&info.region, key) {
                    continue;
                }
                let version = |i: &RegionInfo| i.region.region_epoch.unwrap_or_default().version;
                if best
                    .as_ref()
                    .is_none_or(|(_, b)| (version(&info), info.term) > (version(b), b.term))
                {
                    best = Some((store, info));
                }
            }
        }
        best
    }

    /// All regions led by running stores, in key order (the newest view of each range).
    pub async fn regions(&self) -> Vec<metapb::Region> {
        let mut by_id: HashMap<u64, metapb::Region> = HashMap::new();
        for store in self.running_stores() {
            for info in self.region_infos(store).await.unwrap_or_default() {
                let e = by_id.entry(info.region.id).or_insert_with(|| info.region.clone());
                if info.region.region_epoch.unwrap_or_default().version
                    > e.region_epoch.unwrap_or_default().version
                {
                    *e = info.region.clone();
                }
            }
        }
        let mut v: Vec<metapb::Region> = by_id.into_values().collect();
        v.sort_by(|a, b| a.start_key.cmp(&b.start_key));
        v
    }

    /// One write of `modifies` (all in one region) to the leader of the region holding `key`.
    pub async fn try_write_key(&self, key: &[u8], modifies: Vec<Modify>) -> Outcome<()> {
        let Some((store, info)) = self.leader_for_key(key).await else {
            return Err(Failure::Raft(Error::RegionNotFound(0)));
        };
        self.write_on(store, info.region.id, modifies, ATTEMPT_TIMEOUT)
            .await
    }

    /// Puts `key` until acknowledged, wherever its region is.
    pub async fn must_put_key(&self, key: &[u8], value: &[u8]) {
        retry_ok("keyed write never acknowledged", || {
            self.try_write_key(key, vec![put(key, value)])
        })
        .await
    }

    /// Reads `[start, end)` (`end` empty: to the end) from one region's leader: its pairs, and
    /// where the region ends (empty: the key space's end).
    async fn try_scan_region(&self, start: &[u8], end: &[u8]) -> Outcome<(Acked, Vec<u8>)> {
        let Some((store, info)) = self.leader_for_key(start).await else {
            return Err(Failure::Raft(Error::RegionNotFound(0)));
        };
        let router = self.router(store).ok_or(Failure::StoreDown)?;
        let resp = attempt(ATTEMPT_TIMEOUT, router.read(header_of(&info.region))).await?;
        let region = resp.region;
        let upper = if !end.is_empty() && (region.end_key.is_empty() || end < region.end_key.as_slice()) {
            end.to_vec()
        } else {
            region.end_key.clone()
        };
        let mut out = vec![];
        resp.snapshot
            .scan_cf(
                CF_DEFAULT,
                &data_key(start),
                Some(&data_end_key(&upper)),
                |k, v| {
                    out.push((k[1..].to_vec(), v.to_vec()));
                    Ok(true)
                },
            )
            .map_err(|e| Failure::Raft(Error::Engine(e.to_string())))?;
        Ok((out, region.end_key))
    }

    /// Every pair in `[start, end)`, region by region, each region read linearizably (retried
    /// until answered).
    pub async fn must_scan(&self, start: &[u8], end: &[u8]) -> Acked {
        let mut out = vec![];
        let mut cursor = start.to_vec();
        loop {
            let (mut part, region_end) =
                retry_ok("scan never answered", || self.try_scan_region(&cursor, end)).await;
            out.append(&mut part);
            if region_end.is_empty() || (!end.is_empty() && region_end.as_slice() >= end) {
                return out;
            }
            cursor = region_end;
        }
    }

    /// Splits the region holding `key` at `key` through its leader, retrying until done.
    pub async fn must_split(&self, key: &[u8]) -> Vec<metapb::Region> {
        retry_ok("split never applied", || async {
            let (store, info) = self
                .leader_for_key(key)
                .await
                .ok_or(Failure::Raft(Error::RegionNotFound(0)))?;
            if info.region.start_key == key {
                return Ok(vec![]);
            }
            let router = self.router(store).ok_or(Failure::StoreDown)?;
            attempt(
                ATTEMPT_TIMEOUT,
                split_with(&router, &self.next_peer_id, &info.region, vec![key.to_vec()]),
            )
            .await
        })
        .await
    }
}

impl Client {
    /// The newest view of `region` any running leader has.
    pub async fn newest_region(&self, region: u64) -> Option<metapb::Region> {
        self.regions().await.into_iter().find(|r| r.id == region)
    }

    /// Asks `source`'s leader once to prepare a merge into `target` (as the leaders see it).
    pub async fn try_prepare_merge(&self, source: u64, target: u64) -> Outcome<()> {
        let (store, info) = self
            .leader(source)
            .await
            .ok_or(Failure::Raft(Error::RegionNotFound(source)))?;
        let target = self
            .newest_region(target)
            .await
            .ok_or(Failure::Raft(Error::RegionNotFound(target)))?;
        let router = self.router(store).ok_or(Failure::StoreDown)?;
        attempt(
            ATTEMPT_TIMEOUT,
            router.prepare_merge(header_of(&info.region), target),
        )
        .await
    }

    /// Merges `source` into `target` and waits until every running store dropped `source` and
    /// the leaders see `target` over both ranges; returns the merged region.
    pub async fn must_merge(&self, source: u64, target: u64) -> metapb::Region {
        let before_s = self.newest_region(source).await.expect("source region");
        let before_t = self.newest_region(target).await.expect("target region");
        retry_ok("prepare merge never applied", || {
            self.try_prepare_merge(source, target)
        })
        .await;
        self.wait_merged(&before_s, &before_t).await
    }

    /// Waits until every running store dropped `source`'s peer and leaders see `target` cover
    /// both ranges.
    pub async fn wait_merged(&self, source: &metapb::Region, target: &metapb::Region) -> metapb::Region {
        let start = source.start_key.clone().min(target.start_key.clone());
        let end = if source.end_key.is_empty() || target.end_key.is_empty() {
            vec![]
        } else {
            source.end_key.clone().max(target.end_key.clone())
        };
        for store in self.running_stores() {
            self.wait_region_gone(store, source.id).await;
        }
        let deadline = Instant::now() + MUST_TIMEOUT;
        loop {
            if let Some(r) = self.newest_region(target.id).await {
                if r.start_key == start && r.end_key == end {
                    return r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "region {} never covered both ranges",
                target.id
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
