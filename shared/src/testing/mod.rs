//! Test support (feature `test-support`): the run scenario harness, builders,
//! the contract suites every adapter of a port must pass, and (with `aws`) a
//! moto server for the AWS adapters.

pub mod contract;
#[cfg(feature = "aws")]
pub mod counting;
#[cfg(feature = "aws")]
pub mod moto;
pub mod scenario;
