//! Implementations of the ports.
//!
//! - [`sqlite`] (feature `embedded`): event store, run read model, definition
//!   store and the durable per-cluster queue in one SQLite file.
//! - [`local`] (feature `embedded`): the local process engine and log files.
//!
//! - [`aws`] and [`dynamo`] (feature `aws`): SDK configuration, and DynamoDB
//!   storage for runs and definitions.
//!
//! The AWS adapters pass the same contract suites as the embedded ones.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod local;
#[cfg(feature = "embedded")]
pub mod sqlite;
