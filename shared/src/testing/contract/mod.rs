//! Contract suites: what every adapter of a port must do, written once and run
//! against each adapter (SQLite, and DynamoDB and SQS on moto). Each suite
//! takes a fresh, empty store and panics with a sentence on the first breach.
//!
//! - [`runs`]: the run store (appends and their version check, the projection
//!   beside the events, lists);
//! - [`definitions`]: definitions and alias uniqueness;
//! - [`registry`]: queues, the cluster registry, idempotence keys, templates,
//!   job lessons, schedules.

mod definitions;
mod registry;
mod runs;

pub use definitions::definition_store_contract;
pub use registry::{
    cluster_store_contract, idempotence_contract, job_lessons_contract, run_queue_contract,
    schedule_store_contract, template_store_contract,
};
pub use runs::{
    cluster_slots_contract, concurrent_append_contract, event_store_contract,
    projection_is_the_replay_of_the_events, queue_position_contract, recent_starts_contract,
    run_read_model_contract, tallies_contract,
};
