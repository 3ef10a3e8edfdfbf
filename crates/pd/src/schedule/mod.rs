//! Scheduling: keeping every region replicated `max-replicas` times, well placed, and the
//! stores balanced.
//!
//! * [`operator`] — an operator: ordered steps for one region, and their wire form;
//! * [`builder`] — operators from a wish (add, remove, move a peer; transfer leadership);
//! * [`view`] — the snapshot of stores and regions that schedulers and checkers read;
//! * [`replica_checker`] — a pure function from a region and the stores to an operator;
//! * [`placement`] — location labels: distinct score and isolation;
//! * [`score`] — PD's store scores and balance tolerances;
//! * [`balance_leader`], [`balance_region`], [`hot_region`] — schedulers: pure functions from
//!   a view to operators; [`hot_cache`] — the region load they read;
//! * [`store_limit`] — per-store add/remove-peer rate limits;
//! * [`schedulers`] — which schedulers run, and when; [`runner`] — runs them on the tick;
//! * [`controller`] — the running operators, at most one per region, per-kind limits;
//! * [`coordinator`] — heartbeats and the patrol driving the above, steps sent to leaders.
//!
//! PD decides, nodes execute: PD only ever sends the current step of a region's operator to
//! the region's leader, in a `RegionHeartbeatResponse`, and learns that it is done from the
//! region's later heartbeats.

pub mod balance_leader;
pub mod balance_region;
pub mod builder;
pub mod controller;
pub mod coordinator;
pub mod hot_cache;
pub mod hot_region;
pub mod merge_checker;
pub mod operator;
pub mod placement;
pub mod replica_checker;
pub mod runner;
pub mod scatter;
pub mod schedulers;
pub mod score;
pub mod splitter;
pub mod store_limit;
pub mod view;

pub use controller::{AddError, OperatorController};
pub use coordinator::Coordinator;
pub use operator::{OpKind, OpStep, Operator};

#[cfg(test)]
mod test_util;
