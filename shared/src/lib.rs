//! Flotilla's core: everything the `flotilla` command and the Lambda functions
//! share.
//!
//! # Layout
//!
//! - [`domain`]: pure rules. The run aggregate (`decide`/`evolve` over versioned
//!   events), run specs and their resources, definitions, launch validation,
//!   list queries. No IO, no clock, no async, no AWS.
//! - [`ports`]: the narrow traits the use cases need (the run store of event
//!   streams and projections, definitions, clusters, idempotence keys,
//!   templates, run queue, execution engine, log source, publisher, clock).
//! - [`error`]: typed errors of the ports and use cases.
//! - [`app`]: the use cases over the ports, a file per family.
//! - [`http`]: the axum router serving Flotilla's REST API, a file per
//!   resource; errors become responses there and nowhere else.
//! - [`adapters`]: implementations of the ports, a file per port. `embedded`
//!   (default feature): SQLite storage, the local process engine and local log
//!   files; `aws` (default feature): DynamoDB, SQS, ECS, CloudWatch Logs,
//!   EventBridge.
//! - [`lambda`] (feature `aws`): configuration, clients and handlers of the
//!   four Lambda functions (api, submit, status, retry).
//! - [`local`]: the `flotilla serve` runtime that wires the embedded adapters to
//!   the router, the queue consumer and the retry sweep.
//! - [`telemetry`]: tracing set-up, in one place.
//! - `testing` (feature `test-support`): scenario harness, port contract
//!   suites and a test `App`, shared by this crate's tests and `tests/`.

#![warn(missing_docs)]

pub mod adapters;
pub mod app;
pub mod domain;
pub mod error;
pub mod http;
#[cfg(feature = "aws")]
pub mod lambda;
#[cfg(feature = "embedded")]
pub mod local;
pub mod ports;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
