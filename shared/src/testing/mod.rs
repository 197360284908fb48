//! Test support (feature `test-support`): the run scenario harness, builders,
//! the contract suites every adapter of a port must pass, a test [`App`] over
//! SQLite with a recording engine and a manual clock (with `embedded`), and
//! (with `aws`) a moto server for the AWS adapters; SigV4 checked as AWS
//! checks it.
//!
//! [`App`]: crate::app::App

#[cfg(feature = "embedded")]
pub mod app;
pub mod contract;
#[cfg(feature = "aws")]
pub mod counting;
#[cfg(feature = "aws")]
pub mod moto;
pub mod scenario;
pub mod sigv4;
#[cfg(test)]
pub mod strategy;
