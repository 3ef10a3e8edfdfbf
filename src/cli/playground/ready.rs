//! When is the playground ready? Pure checks over PD's HTTP API answers
//! (`/pd/api/v1/stores`, `/pd/api/v1/regions`), so they are tested on JSON literals.

use serde_json::Value;

/// What PD's store listing says about the nodes we started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoresView {
    /// Addresses of our nodes that PD lists with `state_name` "Up".
    pub up: Vec<String>,
    /// Addresses of our nodes that PD does not list as Up (not registered yet, or another state).
    pub not_up: Vec<String>,
}

impl StoresView {
    pub fn all_up(&self) -> bool {
        self.not_up.is_empty()
    }
}

/// A store entry is `{"store": {...}, "status": {...}}` in PD's API; accept a bare store too.
fn store_meta(entry: &Value) -> &Value {
    entry.get("store").unwrap_or(entry)
}

/// Which of `expected_addrs` PD reports as Up in a `/pd/api/v1/stores` answer.
pub fn stores_view(stores_json: &Value, expected_addrs: &[String]) -> StoresView {
    let listed: Vec<(&str, &str)> = stores_json
        .get("stores")
        .and_then(Value::as_array)
        .map(|stores| {
            stores
                .iter()
                .map(store_meta)
                .map(|s| {
                    (
                        s.get("address").and_then(Value::as_str).unwrap_or_default(),
                        s.get("state_name").and_then(Value::as_str).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let (up, not_up): (Vec<String>, Vec<String>) = expected_addrs.iter().cloned().partition(|addr| {
        listed
            .iter()
            .any(|&(a, state)| a == addr.as_str() && state == "Up")
    });
    StoresView { up, not_up }
}

/// How many regions in a `/pd/api/v1/regions` answer, and how many of them have a leader.
pub fn regions_with_leader(regions_json: &Value) -> (usize, usize) {
    let regions = regions_json
        .get("regions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let led = regions
        .iter()
        .filter(|r| {
            r.get("leader").is_some_and(|leader| {
                let field = |k: &str| leader.get(k).and_then(Value::as_u64).unwrap_or(0);
                field("id") != 0 || field("store_id") != 0
            })
        })
        .count();
    (regions.len(), led)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addrs() -> Vec<String> {
        vec!["127.0.0.1:20160".into(), "127.0.0.1:20161".into()]
    }

    #[test]
    fn stores_all_up() {
        let v = json!({"count": 2, "stores": [
            {"store": {"id": 1, "address": "127.0.0.1:20160", "state_name": "Up"}, "status": {}},
            {"store": {"id": 4, "address": "127.0.0.1:20161", "state_name": "Up"}, "status": {}},
        ]});
        let view = stores_view(&v, &addrs());
        assert!(view.all_up());
        assert_eq!(view.up.len(), 2);
    }

    #[test]
    fn stores_partly_up() {
        let v = json!({"count": 3, "stores": [
            {"store": {"id": 1, "address": "127.0.0.1:20160", "state_name": "Up"}},
            {"store": {"id": 4, "address": "127.0.0.1:20161", "state_name": "Disconnected"}},
            // Someone else's store does not count.
            {"store": {"id": 5, "address": "127.0.0.1:29999", "state_name": "Up"}},
        ]});
        let view = stores_view(&v, &addrs());
        assert!(!view.all_up());
        assert_eq!(view.up, ["127.0.0.1:20160"]);
        assert_eq!(view.not_up, ["127.0.0.1:20161"]);
    }

    #[test]
    fn stores_empty_or_odd_shapes() {
        assert_eq!(
            stores_view(&json!({"count": 0, "stores": []}), &addrs()).up.len(),
            0
        );
        assert_eq!(stores_view(&json!({"count": 0}), &addrs()).not_up.len(), 2);
        assert_eq!(stores_view(&json!("nope"), &addrs()).not_up.len(), 2);
        // A bare store object (no "store" wrapper) is understood too.
        let bare = json!({"stores": [{"address": "127.0.0.1:20160", "state_name": "Up"}]});
        assert_eq!(stores_view(&bare, &addrs()).up, ["127.0.0.1:20160"]);
    }

    #[test]
    fn region_leaders() {
        let v = json!({"count": 3, "regions": [
            {"id": 2, "leader": {"id": 3, "store_id": 1}},
            {"id": 6},
            {"id": 8, "leader": {"id": 0, "store_id": 0}},
        ]});
        assert_eq!(regions_with_leader(&v), (3, 1));
        assert_eq!(regions_with_leader(&json!({"count": 0, "regions": []})), (0, 0));
        assert_eq!(regions_with_leader(&json!({})), (0, 0));
    }
}
