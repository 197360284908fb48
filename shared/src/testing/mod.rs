//! Test support (feature `test-support`): the run scenario harness, builders,
//! and the contract suites every adapter of a port must pass.

pub mod contract;
pub mod scenario;
