//! Implementations of the ports.
//!
//! - [`sqlite`] (feature `embedded`): every storage port (runs, definitions,
//!   clusters, idempotence keys, templates) and the durable per-cluster queue
//!   in one SQLite file, a file per port.
//! - [`local`] (feature `embedded`): the local process engine and log files.
//!
//! - [`aws`], [`dynamo`] and [`sqs`] (feature `aws`): SDK configuration,
//!   every storage port on one DynamoDB table (a file per port), and one SQS
//!   queue per cluster.
//! - [`ecs`] and [`ecs_events`] (feature `aws`): the ECS engine, and ECS task
//!   state changes as engine updates.
//! - [`cloudwatch`] and [`eventbridge`] (feature `aws`): run logs from
//!   CloudWatch Logs, and run state changes published on an EventBridge bus.
//!
//! - [`eks`] (feature `eks`): the EKS engine, Kubernetes Jobs through
//!   `kube`, a Job's pod read back as engine updates, and the IAM bearer
//!   token EKS takes.
//!
//! The AWS adapters pass the same contract suites as the embedded ones.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod cloudwatch;
#[cfg(feature = "aws")]
pub mod dynamo;
#[cfg(feature = "aws")]
pub mod ecs;
#[cfg(feature = "aws")]
pub mod ecs_events;
#[cfg(feature = "eks")]
pub mod eks;
#[cfg(feature = "aws")]
pub mod eventbridge;
#[cfg(feature = "embedded")]
pub mod local;
#[cfg(feature = "embedded")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod sqs;

pub use crate::domain::query::time_key;
