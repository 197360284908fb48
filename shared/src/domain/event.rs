//! The facts recorded in a run's event stream.
//!
//! A run's stream is named by its run id; its state is the fold of these events
//! ([`crate::domain::run::evolve`]). Event names (`type`) and field names are
//! stored forever: renaming one orphans history already written, so add a new
//! variant or a new optional field instead, and raise [`EVENT_SCHEMA_VERSION`]
//! when an upcaster becomes necessary.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::run::RunSpec;

/// Schema version written beside every stored event.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// One fact about a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RunEvent {
    /// An execute request was accepted: the run exists and waits in its cluster's queue.
    RunQueued {
        /// Everything fixed at creation.
        spec: Box<RunSpec>,
        /// When it was accepted.
        at: DateTime<Utc>,
    },
    /// An engine accepted the run's current attempt (ECS RunTask answered, or a local
    /// process was spawned); it is PENDING until the engine says it runs.
    RunSubmitted {
        /// The attempt handed over.
        attempt: u32,
        /// The engine's id for it (ECS task ARN, local process id).
        task_id: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The engine reports the attempt's container or process running.
    RunStarted {
        /// The attempt.
        attempt: u32,
        /// Engine task id, when the engine reports it here first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        /// Host it runs on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// The engine's version of the task state this reports, when it has one
        /// (ECS `detail.version`); a report not newer than the last is ignored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        engine_version: Option<u64>,
        /// How the engine holds the attempt to its resources (e.g. "memory
        /// limited to 64 MB by a cgroup"), when it says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limits: Option<String>,
        /// When it started.
        at: DateTime<Utc>,
    },
    /// Somebody asked to stop the run; the engine is told and the stop follows.
    RunStopRequested {
        /// Who asked ("user" when unknown).
        by: String,
        /// The exit reason the stop gives the run, when the asker said more
        /// than who it is (a run reporting its own end says why).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The run ended: its command exited, or it was stopped, or it was given up.
    RunStopped {
        /// The attempt that ended.
        attempt: u32,
        /// The command's exit code, when it ran.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
        /// Why it ended, when there is more to say than the exit code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The engine's version of the task state this reports, when it has one
        /// (ECS `detail.version`); a report not newer than the last is ignored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        engine_version: Option<u64>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The attempt failed in a way that is tried again (the infrastructure
    /// failed, or the run's retry policy names its exit code or failure);
    /// the retry sweep will queue the run again.
    RunNeedsRetry {
        /// The attempt that failed.
        attempt: u32,
        /// What failed.
        reason: String,
        /// The attempt's exit code, when its command ran and exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
        /// Not before when the next attempt is queued (the policy's
        /// backoff), when it waits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<DateTime<Utc>>,
        /// The engine's version of the task state this reports, when it has one
        /// (ECS `detail.version`); a report not newer than the last is ignored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        engine_version: Option<u64>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The engine could not take the queued attempt yet (no capacity, throttled)
    /// and the ticket waits to be tried again. Recorded once per distinct reason.
    RunLaunchDeferred {
        /// The attempt that waits.
        attempt: u32,
        /// What the engine said.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A step of getting a PENDING attempt ready, as its engine reports it
    /// (a local container runtime: the image looked for, pulled, and the
    /// pull's progress).
    RunPreparing {
        /// The attempt.
        attempt: u32,
        /// What happens.
        message: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A NEEDS_RETRY run was queued again as a new attempt.
    RunRequeued {
        /// The new attempt number.
        attempt: u32,
        /// The new attempt's memory and cpu, when they differ from the last
        /// one's (more memory after it ran out).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resources: Option<crate::domain::spec::Resources>,
        /// Why its resources differ.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resources_note: Option<String>,
        /// The capacity the new attempt runs on, when it differs from the
        /// last one's (on-demand after a spot interruption).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node_lifecycle: Option<crate::domain::spec::NodeLifecycle>,
        /// Why it runs there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lifecycle_note: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The retry sweep put a QUEUED run's ticket on the queue again, because
    /// none was taken for longer than it waits (the first enqueue may have
    /// been lost). Recorded before the enqueue, at most once per interval.
    RunReenqueued {
        /// The attempt the ticket is for.
        attempt: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// What the attempt that ends in the same append used, and what that is
    /// estimated to cost (recorded just before its `RunStopped` or
    /// `RunNeedsRetry`, for an attempt that ran).
    RunUsageRecorded {
        /// The attempt.
        attempt: u32,
        /// Its usage and estimated cost.
        usage: crate::domain::usage::Usage,
        /// When the attempt ended.
        at: DateTime<Utc>,
    },
    /// The running attempt has run longer than its job's successful runs
    /// usually take (past 1.5 times their 90th percentile, and past a
    /// minimum). Recorded at most once per attempt.
    RunRunningLong {
        /// The attempt.
        attempt: u32,
        /// Seconds it had run.
        running_s: u64,
        /// Seconds the job's successful runs usually take.
        usual_s: u64,
        /// How many successful runs that is taken over.
        usual_of_runs: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// The run's attempt took one of its cluster's `cap` slots, before it
    /// is handed to the engine; the slot is given back when the attempt
    /// ends, waits for a retry, or cannot be launched yet.
    RunAdmitted {
        /// The attempt.
        attempt: u32,
        /// The cluster's cap it was admitted under.
        cap: u32,
        /// When.
        at: DateTime<Utc>,
    },
}

impl RunEvent {
    /// The stored name of the event.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RunQueued { .. } => "RunQueued",
            Self::RunSubmitted { .. } => "RunSubmitted",
            Self::RunStarted { .. } => "RunStarted",
            Self::RunStopRequested { .. } => "RunStopRequested",
            Self::RunStopped { .. } => "RunStopped",
            Self::RunNeedsRetry { .. } => "RunNeedsRetry",
            Self::RunLaunchDeferred { .. } => "RunLaunchDeferred",
            Self::RunPreparing { .. } => "RunPreparing",
            Self::RunRequeued { .. } => "RunRequeued",
            Self::RunReenqueued { .. } => "RunReenqueued",
            Self::RunAdmitted { .. } => "RunAdmitted",
            Self::RunUsageRecorded { .. } => "RunUsageRecorded",
            Self::RunRunningLong { .. } => "RunRunningLong",
        }
    }

    /// When the fact happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::RunQueued { at, .. }
            | Self::RunSubmitted { at, .. }
            | Self::RunStarted { at, .. }
            | Self::RunStopRequested { at, .. }
            | Self::RunStopped { at, .. }
            | Self::RunNeedsRetry { at, .. }
            | Self::RunLaunchDeferred { at, .. }
            | Self::RunPreparing { at, .. }
            | Self::RunRequeued { at, .. }
            | Self::RunReenqueued { at, .. }
            | Self::RunAdmitted { at, .. }
            | Self::RunUsageRecorded { at, .. }
            | Self::RunRunningLong { at, .. } => *at,
        }
    }
}
