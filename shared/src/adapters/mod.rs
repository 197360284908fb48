//! Implementations of the ports.
//!
//! - [`sqlite`] (feature `embedded`): event store, run read model, definition
//!   store and the durable per-cluster queue in one SQLite file.
//! - [`local`] (feature `embedded`): the local process engine and log files.
//!
//! The AWS adapters (DynamoDB, SQS, ECS, EventBridge, CloudWatch Logs) join here
//! behind the `aws` feature; they pass the same contract suites.

#[cfg(feature = "embedded")]
pub mod local;
#[cfg(feature = "embedded")]
pub mod sqlite;
