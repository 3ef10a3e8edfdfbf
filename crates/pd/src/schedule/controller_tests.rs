use std::time::{Duration, Instant};

use super::*;
use crate::schedule::builder;
use crate::schedule::operator::REGION_OPERATOR_TIMEOUT;
use crate::schedule::test_util::{region, V};

fn no_target(_: &RegionInfo, _: u64) -> Option<u64> {
    None
}

fn add_op(region_id: u64, kind: OpKind) -> Operator {
    let r = region(region_id, &[(region_id * 10, 1, V)], 1, (1, 1));
    builder::add_peer("make-up-replica", kind, &r, 4, region_id * 10 + 1).unwrap()
}

#[test]
fn at_most_one_operator_per_region() {
    let c = OperatorController::new();
    c.add(add_op(2, OpKind::REPLICA), None).unwrap();
    let err = c.add(add_op(2, OpKind::ADMIN), None).unwrap_err();
    assert!(matches!(err, AddError::Exists { region_id: 2, .. }), "{err}");
    assert!(err.to_string().contains("already has an operator"));
    c.add(add_op(3, OpKind::ADMIN), None).unwrap();
    assert_eq!(
        c.operators().iter().map(Operator::region_id).collect::<Vec<_>>(),
        vec![2, 3]
    );
    // Canceled: gone, and its status says so for a while.
    assert!(c.cancel(2, "admin stop").is_some());
    assert!(!c.has(2));
    let s = c.status(2).unwrap();
    assert_eq!(s.status, pdpb::OperatorStatus::Cancel);
    assert!(s
        .text()
        .starts_with("status: CANCEL, operator: make-up-replica {add peer: store [4]}"));
    assert!(c.cancel(2, "again").is_none());
    assert_eq!(c.status(3).unwrap().status, pdpb::OperatorStatus::Running);
    assert!(c.status(9).is_none());
    // A new operator may come once the old one ended.
    c.add(add_op(2, OpKind::REPLICA), None).unwrap();
}

#[test]
fn replica_limit() {
    let c = OperatorController::new();
    let limit = Some((OpKind::REPLICA, 2));
    c.add(add_op(2, OpKind::REPLICA), limit).unwrap();
    c.add(add_op(3, OpKind::REPLICA), limit).unwrap();
    assert_eq!(
        c.add(add_op(4, OpKind::REPLICA), limit),
        Err(AddError::LimitReached {
            kind: "replica".into(),
            limit: 2
        })
    );
    // Administrators are not limited.
    c.add(add_op(4, OpKind::ADMIN), None).unwrap();
    assert_eq!(c.count_kind(OpKind::REPLICA), 2);
    assert_eq!(c.count_kind(OpKind::REGION), 3);
}

#[test]
fn dispatch_sends_until_done_then_ends() {
    let c = OperatorController::new();
    let now = Instant::now();
    let r0 = region(2, &[(10, 1, V)], 1, (1, 1));
    c.add(
        builder::add_peer("make-up-replica", OpKind::REPLICA, &r0, 4, 40).unwrap(),
        None,
    )
    .unwrap();
    let add = OpStep::AddLearner {
        store_id: 4,
        peer_id: 40,
    };
    assert_eq!(c.dispatch(&r0, now, false, &no_target), Some(add.clone()));
    // Heartbeats always get the step again; the timer only when due.
    assert_eq!(c.dispatch(&r0, now, false, &no_target), Some(add.clone()));
    assert_eq!(c.dispatch(&r0, now, true, &no_target), None);
    assert!(c.due_regions(now).is_empty());
    let later = now + RESEND_INTERVAL;
    assert_eq!(c.due_regions(later), vec![2]);
    assert_eq!(c.dispatch(&r0, later, true, &no_target), Some(add.clone()));
    let done = region(2, &[(10, 1, V), (40, 4, V)], 1, (3, 1));
    assert_eq!(c.dispatch(&done, later, false, &no_target), None);
    assert!(!c.has(2));
    assert_eq!(c.status(2).unwrap().status, pdpb::OperatorStatus::Success);
}

#[test]
fn timeout_and_gone_regions_end_operators() {
    let c = OperatorController::new();
    let r0 = region(2, &[(10, 1, V)], 1, (1, 1));
    c.add(
        builder::add_peer("make-up-replica", OpKind::REPLICA, &r0, 4, 40).unwrap(),
        None,
    )
    .unwrap();
    let late = Instant::now() + REGION_OPERATOR_TIMEOUT + Duration::from_secs(1);
    assert_eq!(c.due_regions(late), vec![2]);
    assert_eq!(c.dispatch(&r0, late, true, &no_target), None);
    assert!(!c.has(2));
    assert_eq!(c.status(2).unwrap().status, pdpb::OperatorStatus::Timeout);

    c.add(add_op(3, OpKind::REPLICA), None).unwrap();
    c.region_gone(3);
    assert!(!c.has(3));
    assert_eq!(c.status(3).unwrap().status, pdpb::OperatorStatus::Cancel);
}
