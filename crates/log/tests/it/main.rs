//! Integration tests of `runnel-log` through its public API, one binary with a module per
//! concern.

mod api;
mod common;
mod compaction;
mod conformance;
mod faults;
mod lifecycle;
mod memory_only;
mod model;
mod power_loss;
mod producer;
mod producer_model;
mod recovery;
mod transactions;
