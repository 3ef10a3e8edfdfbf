//! Scheduling: keeping every region replicated `max-replicas` times.
//!
//! * [`operator`] — an operator: ordered steps for one region, and their wire form;
//! * [`builder`] — operators from a wish (add, remove, move a peer; transfer leadership);
//! * [`replica_checker`] — a pure function from a region and the stores to an operator;
//! * [`controller`] — the running operators, at most one per region;
//! * [`coordinator`] — heartbeats and the patrol driving the above, steps sent to leaders.
//!
//! PD decides, nodes execute: PD only ever sends the current step of a region's operator to
//! the region's leader, in a `RegionHeartbeatResponse`, and learns that it is done from the
//! region's later heartbeats.

pub mod builder;
pub mod controller;
pub mod coordinator;
pub mod operator;
pub mod replica_checker;

pub use controller::{AddError, OperatorController};
pub use coordinator::Coordinator;
pub use operator::{OpKind, OpStep, Operator};

#[cfg(test)]
mod test_util;
