//! Replica placement by location labels (PD's `location-labels`, `isolation-level` and distinct
//! score).
//!
//! A store's *location* is the list of its values for `location-labels`, in order (a missing
//! label is the empty value), e.g. `["z1", "r2", "h3"]` for `zone, rack, host`. Two stores
//! differ first at some level; the earlier that level, the more isolated they are.
//!
//! * distinct score of a store among the stores of a region's other replicas: the sum over
//!   those stores of `100^(levels − first differing level − 1)` (0 for the same location) —
//!   higher is more spread, and one zone of difference outweighs any number of hosts;
//! * isolation: with `isolation-level = "zone"`, two replicas must not share a zone; a store
//!   that would share one with another replica is not a valid target.
//!
//! Pure functions; the replica checker and balance-region use them.

/// PD's `replicaBaseScore`.
const BASE: f64 = 100.0;

/// `labels` (key, value) as a location over `keys` (lowercase compare, as PD).
pub fn location(labels: &[(String, String)], keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            labels
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.to_ascii_lowercase())
                .unwrap_or_default()
        })
        .collect()
}

/// The first level at which `a` and `b` differ.
fn first_difference(a: &[String], b: &[String]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// PD's distinct score of `candidate` against `others`.
pub fn distinct_score(others: &[&[String]], candidate: &[String]) -> f64 {
    let levels = candidate.len();
    others
        .iter()
        .filter_map(|o| first_difference(o, candidate))
        .map(|i| BASE.powi((levels - i - 1) as i32))
        .sum()
}

/// Whether `candidate` keeps `others` isolated at `level` (an index into the location); no
/// level means no constraint.
pub fn is_isolated(others: &[&[String]], candidate: &[String], level: Option<usize>) -> bool {
    let Some(level) = level else {
        return true;
    };
    others.iter().all(|o| {
        let n = (level + 1).min(o.len()).min(candidate.len());
        o[..n] != candidate[..n]
    })
}

/// The index of `isolation_level` in `keys`, if both are set.
pub fn isolation_index(keys: &[String], isolation_level: &str) -> Option<usize> {
    if isolation_level.is_empty() {
        return None;
    }
    keys.iter().position(|k| k.eq_ignore_ascii_case(isolation_level))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn locations_scores_and_isolation() {
        let keys = loc(&["zone", "host"]);
        let labels = vec![("Zone".to_string(), "Z1".to_string())];
        assert_eq!(location(&labels, &keys), loc(&["z1", ""]));

        let (a, b) = (loc(&["z1", "h1"]), loc(&["z2", "h2"]));
        let others: Vec<&[String]> = vec![&a, &b];
        // Another zone: 100 per replica; same zone, other host: 1.
        assert_eq!(distinct_score(&others, &loc(&["z3", "h3"])), 200.0);
        assert_eq!(distinct_score(&others, &loc(&["z1", "h9"])), 101.0);
        assert_eq!(distinct_score(&others, &loc(&["z1", "h1"])), 100.0);
        assert_eq!(distinct_score(&[], &loc(&["z1", "h1"])), 0.0);

        let zone = isolation_index(&keys, "zone");
        assert_eq!(zone, Some(0));
        assert!(is_isolated(&others, &loc(&["z3", "h1"]), zone));
        assert!(!is_isolated(&others, &loc(&["z1", "h5"]), zone));
        assert!(is_isolated(
            &others,
            &loc(&["z1", "h5"]),
            isolation_index(&keys, "host")
        ));
        assert!(is_isolated(&others, &loc(&["z1", "h1"]), None));
        assert_eq!(isolation_index(&keys, ""), None);
        assert_eq!(isolation_index(&keys, "rack"), None);
    }
}
