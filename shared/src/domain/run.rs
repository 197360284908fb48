//! The run aggregate: its state, the commands it accepts, and its rules.
//!
//! [`decide`] holds every rule and returns the events a command produces (an empty
//! list when the command is a duplicate or stale, which makes every handler an
//! idempotent reconciler). [`evolve`] only folds an event into the state.
//!
//! Status follows Flotilla's life cycle `QUEUED → PENDING → RUNNING → STOPPED`, with
//! `NEEDS_RETRY → QUEUED` when the infrastructure failed, or when the run's
//! retry policy ([`crate::domain::retry`]) names how the attempt ended. A status never moves
//! backwards; STOPPED changes only to NEEDS_RETRY (an infrastructure failure
//! reported for an attempt that has no exit code).

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::cluster::{ClusterStatus, not_active_reason};
use crate::domain::error::DomainError;
use crate::domain::event::RunEvent;
use crate::domain::limits::LaunchLimits;
use crate::domain::retry::{OUT_OF_MEMORY, RetryReason, SPOT_INTERRUPTION, Verdict};
use crate::domain::spec::{NodeLifecycle, Resources};
pub use crate::domain::spec::{RunSpec, TemplateUse};
use crate::domain::usage::{Measured, Usage};

/// Flotilla's run statuses.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Accepted, waiting in its cluster's queue.
    Queued,
    /// Handed to an engine, not running yet.
    Pending,
    /// Running.
    Running,
    /// Ended; terminal except for NEEDS_RETRY.
    Stopped,
    /// The infrastructure failed; it will be queued again.
    NeedsRetry,
}

impl RunStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [RunStatus; 5] = [
        Self::Queued,
        Self::Pending,
        Self::Running,
        Self::Stopped,
        Self::NeedsRetry,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
            Self::NeedsRetry => "NEEDS_RETRY",
        }
    }

    /// Parses a wire name (exact, upper case).
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Flotilla's precedence: a status only moves to a higher rank, except that
    /// NEEDS_RETRY may follow anything.
    pub fn rank(self) -> i8 {
        match self {
            Self::NeedsRetry => -1,
            Self::Queued => 0,
            Self::Pending => 1,
            Self::Running => 2,
            Self::Stopped => 3,
        }
    }

    /// Whether the run has not ended (it may still launch, run or be retried).
    pub fn is_active(self) -> bool {
        !matches!(self, Self::Stopped)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The run aggregate's state for one existing run, which is also its projection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// What was fixed at creation.
    pub spec: RunSpec,
    /// Current status.
    pub status: RunStatus,
    /// Current attempt, starting at 1.
    pub attempt: u32,
    /// When it was accepted.
    pub queued_at: DateTime<Utc>,
    /// When the current attempt started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Exit code of the command.
    pub exit_code: Option<i64>,
    /// Why it ended (or why it needs a retry).
    pub exit_reason: Option<String>,
    /// The engine's id for the current attempt.
    pub task_id: Option<String>,
    /// Host the current attempt runs on.
    pub host: Option<String>,
    /// Who asked to stop it, once somebody did.
    pub stop_requested_by: Option<String>,
    /// The exit reason that stop gives it, when the asker said more than who
    /// it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// The newest engine version of the current task's state applied so far.
    #[serde(default)]
    pub engine_version: Option<u64>,
    /// Why the engine has not taken the current attempt yet, while it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_deferred: Option<String>,
    /// When the current attempt's ticket was last put on the queue after the
    /// first time (a requeue or a re-enqueue); `queued_at` before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<DateTime<Utc>>,
    /// The time of the newest fact recorded about the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<DateTime<Utc>>,
    /// The time of the current attempt's newest step of preparing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared_at: Option<DateTime<Utc>>,
    /// How many steps of preparing the current attempt recorded (at most
    /// [`MAX_PREPARING_STEPS`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prepared_steps: u32,
    /// Not before when a NEEDS_RETRY run's next attempt is queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// The current attempt's resources, when they differ from the spec's
    /// (more memory after an attempt ran out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_resources: Option<Resources>,
    /// Why the current attempt's resources differ from the spec's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_note: Option<String>,
    /// When the current attempt was handed to the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<DateTime<Utc>>,
    /// The current attempt's newest step of preparing, and when its first
    /// step was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preparing: Option<(String, DateTime<Utc>)>,
    /// The capacity the current attempt runs on, when it differs from the
    /// spec's (on-demand after a spot interruption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_lifecycle: Option<NodeLifecycle>,
    /// Why the current attempt runs on that capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_note: Option<String>,
    /// The cap of its cluster the current attempt holds a slot under, from
    /// its admission until it ends, waits for a retry or is deferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
    /// What its attempts used together, and their estimated cost, once an
    /// attempt that ran has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Why the current attempt was flagged as running longer than usual,
    /// once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_long: Option<String>,
}

impl Run {
    /// The resources of the current attempt.
    pub fn resources(&self) -> Resources {
        self.attempt_resources.unwrap_or(self.spec.resources)
    }

    /// The capacity the current attempt runs on.
    pub fn lifecycle(&self) -> NodeLifecycle {
        self.attempt_lifecycle.unwrap_or(self.spec.node_lifecycle)
    }

    /// Why a run that does not run yet waits, and since when; `None` once
    /// it runs or ended. Times are absolute, so the answer changes only
    /// when the run does.
    pub fn waiting(&self) -> Option<(String, DateTime<Utc>)> {
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let next = self.attempt + 1;
        match self.status {
            RunStatus::Running | RunStatus::Stopped => None,
            RunStatus::NeedsRetry => {
                let since = self.last_event_at();
                Some(match self.retry_at {
                    Some(retry_at) => (
                        format!(
                            "attempt {} failed; attempt {next} waits out its backoff until {}",
                            self.attempt,
                            at(retry_at)
                        ),
                        since,
                    ),
                    None => (
                        format!(
                            "attempt {} failed; the retry sweep queues attempt {next} at its next pass",
                            self.attempt
                        ),
                        since,
                    ),
                })
            }
            RunStatus::Queued => {
                let since = self.last_enqueued_at();
                Some(match &self.launch_deferred {
                    Some(reason) => (format!("the engine cannot take it yet: {reason}"), since),
                    None => (
                        format!(
                            "waiting in cluster {}'s queue for a free slot",
                            self.spec.cluster
                        ),
                        since,
                    ),
                })
            }
            RunStatus::Pending => Some(match &self.preparing {
                Some((step, since)) => (format!("preparing: {step}"), *since),
                None => {
                    let since = self.submitted_at.unwrap_or_else(|| self.last_event_at());
                    (
                        format!(
                            "handed to the engine at {}; waiting for it to start",
                            at(since)
                        ),
                        since,
                    )
                }
            }),
        }
    }

    /// [`Run::waiting`], told what else holds a QUEUED run back: its
    /// cluster not active (in maintenance, offline) or at its cap, or every
    /// slot of the server taken.
    pub fn waiting_for(&self, capacity: &Capacity) -> Option<(String, DateTime<Utc>)> {
        if self.status == RunStatus::Queued
            && let Some(status) = capacity.cluster_inactive
        {
            return Some((
                not_active_reason(&self.spec.cluster, status),
                self.last_enqueued_at(),
            ));
        }
        if self.status == RunStatus::Queued && self.slot.is_none() {
            let since = self.last_enqueued_at();
            if let Some((cap, held)) = capacity.cluster_cap
                && held >= u64::from(cap)
            {
                return Some((
                    format!(
                        "cluster {} is at its cap: {held} of {cap} running",
                        self.spec.cluster
                    ),
                    since,
                ));
            }
            if let Some((parallelism, launched)) = capacity.parallelism
                && launched >= parallelism
            {
                return Some((
                    format!(
                        "waiting for a free slot: parallelism {parallelism}, {launched} running"
                    ),
                    since,
                ));
            }
        }
        self.waiting()
    }

    /// Whether an engine report about `attempt` at `engine_version` is older
    /// than what was applied, or about another attempt: such a report changes
    /// nothing.
    pub fn is_stale_report(&self, attempt: u32, engine_version: Option<u64>) -> bool {
        self.attempt != attempt
            || matches!((self.engine_version, engine_version), (Some(last), Some(v)) if v <= last)
    }

    /// The exit reason of a run ending after a stop request, once one was made.
    pub fn stop_reason(&self) -> Option<String> {
        let by = self.stop_requested_by.as_deref()?;
        Some(
            self.stop_reason
                .clone()
                .unwrap_or_else(|| stopped_by_reason(by)),
        )
    }

    /// When the current attempt's ticket was last put on the queue.
    pub fn last_enqueued_at(&self) -> DateTime<Utc> {
        self.enqueued_at.unwrap_or(self.queued_at)
    }

    /// When the newest fact about the run happened.
    pub fn last_event_at(&self) -> DateTime<Utc> {
        self.last_event_at.unwrap_or(self.queued_at)
    }

    /// Whether the run may be handed to an engine for `attempt` now.
    pub fn is_launchable(&self, attempt: u32) -> bool {
        self.status == RunStatus::Queued
            && self.attempt == attempt
            && self.stop_requested_by.is_none()
    }
}

/// What holds QUEUED runs back besides their own state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    /// The run's cluster's status, when it is not active (its runs wait).
    pub cluster_inactive: Option<ClusterStatus>,
    /// The run's cluster's cap and how many of its slots are held, when it
    /// has a cap.
    pub cluster_cap: Option<(u32, u64)>,
    /// The server's parallelism and how many runs it has launched, when it
    /// has one (the local server).
    pub parallelism: Option<(u64, u64)>,
}

/// How far back a cluster's starts count towards its start rate.
pub const START_RATE_WINDOW_MINUTES: i64 = 60;

/// The most steps of preparing (image pulls, a cluster's scheduling and
/// pull events) one attempt records; later ones are dropped.
pub const MAX_PREPARING_STEPS: u32 = 100;

fn is_zero(n: &u32) -> bool {
    *n == 0
}
/// How many of a cluster's newest starts its start rate is taken from.
pub const START_RATE_SAMPLE: u32 = 20;

/// When the QUEUED run at `position` (1 is next) in its cluster's queue
/// may start, at the cluster's recent start rate: `starts` (newest first,
/// within [`START_RATE_WINDOW_MINUTES`]) spaced evenly, the next one
/// `position` spaces after the newest. `None` with fewer than two starts
/// to tell a rate by, or when that time is already past at `now` (the
/// cluster no longer starts runs at that rate).
pub fn estimated_start(
    position: u64,
    starts: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let (newest, oldest) = (*starts.first()?, *starts.last()?);
    let gaps = i64::try_from(starts.len())
        .ok()?
        .checked_sub(1)
        .filter(|g| *g > 0)?;
    let spacing = (newest - oldest).num_milliseconds().max(0) / gaps;
    let wait = spacing.checked_mul(i64::try_from(position).ok()?)?;
    let at = newest.checked_add_signed(Duration::try_milliseconds(wait)?)?;
    (at >= now).then_some(at)
}

/// A stream's state: how many events it holds and the run they fold into.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunState {
    /// Number of events in the stream; the expected version for the next append.
    pub version: u64,
    /// The run, once queued.
    pub run: Option<Run>,
}

/// What can be asked of a run. "Now" always arrives in the command.
#[derive(Debug, Clone, PartialEq)]
pub enum RunCommand {
    /// Create the run.
    Queue {
        /// The validated spec.
        spec: Box<RunSpec>,
        /// Now.
        now: DateTime<Utc>,
    },
    /// An engine accepted `attempt` under `task_id`, and says it already runs
    /// on `running_on` when it knows (a local process): one launch, recorded in
    /// one append.
    RecordLaunched {
        /// The attempt launched.
        attempt: u32,
        /// Engine task id.
        task_id: String,
        /// Host, when the engine knows the attempt is already running.
        running_on: Option<String>,
        /// How the engine holds the attempt to its resources, when it says.
        limits: Option<String>,
        /// Now.
        now: DateTime<Utc>,
    },
    /// The engine reports a step of getting `attempt` ready.
    RecordProgress {
        /// The attempt.
        attempt: u32,
        /// What happens.
        message: String,
        /// When.
        now: DateTime<Utc>,
    },
    /// The engine reports `attempt` running.
    RecordStarted {
        /// The attempt.
        attempt: u32,
        /// The engine's version of the state reported, when it has one.
        engine_version: Option<u64>,
        /// Engine task id, if known.
        task_id: Option<String>,
        /// Host, if known.
        host: Option<String>,
        /// When it started.
        now: DateTime<Utc>,
    },
    /// The engine reports `attempt` ended with an exit code (or with none, when the
    /// engine could not tell) and maybe a reason.
    RecordExited {
        /// The attempt.
        attempt: u32,
        /// The engine's version of the state reported, when it has one.
        engine_version: Option<u64>,
        /// Exit code, if the command ran.
        exit_code: Option<i64>,
        /// Reason, if the engine has one.
        reason: Option<String>,
        /// What the engine measured of the attempt's processes, when it
        /// measures them (else its reserved size is recorded).
        usage: Option<Measured>,
        /// When it ended.
        now: DateTime<Utc>,
    },
    /// The infrastructure failed `attempt` before the user's code could run
    /// (image pull, container start, capacity, spot reclaim).
    RecordInfrastructureFailure {
        /// The attempt.
        attempt: u32,
        /// The engine's version of the state reported, when it has one.
        engine_version: Option<u64>,
        /// What failed.
        reason: String,
        /// Now.
        now: DateTime<Utc>,
    },
    /// The engine could not take `attempt` yet; the ticket will be tried again.
    RecordLaunchDeferred {
        /// The attempt.
        attempt: u32,
        /// What the engine said.
        reason: String,
        /// Now.
        now: DateTime<Utc>,
    },
    /// The attempt takes a slot of its cluster, whose cap is `cap`, before
    /// it is handed to the engine (only clusters with a cap have slots).
    Admit {
        /// The attempt.
        attempt: u32,
        /// The cluster's cap.
        cap: u32,
        /// Now.
        now: DateTime<Utc>,
    },
    /// Somebody asks to stop the run.
    RequestStop {
        /// Who.
        by: String,
        /// The exit reason the stop gives the run, when there is more to say
        /// than who asked.
        reason: Option<String>,
        /// Now.
        now: DateTime<Utc>,
    },
    /// The retry sweep queues a NEEDS_RETRY run again once its wait is
    /// over (with more memory, when it ran out and its policy says so), or
    /// gives up once its attempts are used.
    Requeue {
        /// Attempts allowed in all, for a run whose spec has no policy.
        max_attempts: u32,
        /// The sizes the engine takes, which a grown memory is fitted to.
        limits: LaunchLimits,
        /// Now.
        now: DateTime<Utc>,
    },
    /// The retry sweep puts the ticket of a QUEUED run's `attempt` on the
    /// queue again, if none was put there since `stale_before`.
    Reenqueue {
        /// The attempt of the ticket.
        attempt: u32,
        /// A ticket put on the queue before this is presumed lost.
        stale_before: DateTime<Utc>,
        /// Now.
        now: DateTime<Utc>,
    },
    /// The running `attempt` has run longer than its job usually takes
    /// (the sweep found it past its threshold): flag it, once.
    FlagRunningLong {
        /// The attempt.
        attempt: u32,
        /// How long the job's successful runs usually take.
        usual: crate::domain::learning::UsualDuration,
        /// Now.
        now: DateTime<Utc>,
    },
    /// The run's engine lost track of it (the local server restarted mid-run,
    /// or ECS no longer knows its task): end it with `reason`.
    Abandon {
        /// Why.
        reason: String,
        /// Now.
        now: DateTime<Utc>,
    },
}

/// Every rule of the run life cycle. Returns the events the command produces; an
/// empty list means the command changes nothing (a duplicate or stale report).
///
/// An attempt that ran and ends here has its usage recorded just before its
/// end ([`RunEvent::RunUsageRecorded`]): what the engine measured, else its
/// reserved size for the time it ran.
pub fn decide(state: &RunState, command: RunCommand) -> Result<Vec<RunEvent>, DomainError> {
    let measured = match &command {
        RunCommand::RecordExited { usage, .. } => *usage,
        _ => None,
    };
    let events = decide_ending(state, command)?;
    Ok(match &state.run {
        Some(run) => with_usage(run, events, measured),
        None => events,
    })
}

/// `events` with the usage of `run`'s current attempt recorded before the
/// event that ends it, when it ran and this is where it ends.
fn with_usage(run: &Run, mut events: Vec<RunEvent>, measured: Option<Measured>) -> Vec<RunEvent> {
    let in_flight = matches!(run.status, RunStatus::Pending | RunStatus::Running);
    let Some(started) = run.started_at.filter(|_| in_flight) else {
        return events;
    };
    let end = events.iter().position(|e| {
        matches!(
            e,
            RunEvent::RunStopped { .. } | RunEvent::RunNeedsRetry { .. }
        )
    });
    if let Some(i) = end {
        let at = events[i].at();
        events.insert(
            i,
            RunEvent::RunUsageRecorded {
                attempt: run.attempt,
                usage: Usage::of_attempt(run.resources(), started, at, measured),
                at,
            },
        );
    }
    events
}

/// [`decide`], without the usage of the attempt that ends.
fn decide_ending(state: &RunState, command: RunCommand) -> Result<Vec<RunEvent>, DomainError> {
    let Some(run) = &state.run else {
        return match command {
            RunCommand::Queue { spec, now } => Ok(vec![RunEvent::RunQueued { spec, at: now }]),
            _ => Err(DomainError::RunNotFound),
        };
    };
    Ok(match command {
        RunCommand::Queue { .. } => {
            return Err(DomainError::RunAlreadyExists {
                run_id: run.spec.run_id.clone(),
            });
        }
        RunCommand::RecordLaunched {
            attempt,
            task_id,
            running_on,
            limits,
            now,
        } => {
            if run.attempt != attempt || run.status != RunStatus::Queued {
                vec![]
            } else {
                let mut events = vec![RunEvent::RunSubmitted {
                    attempt,
                    task_id,
                    at: now,
                }];
                if let Some(host) = running_on {
                    events.push(RunEvent::RunStarted {
                        attempt,
                        engine_version: None,
                        task_id: None,
                        host: Some(host),
                        limits,
                        at: now,
                    });
                }
                events
            }
        }
        RunCommand::RecordProgress {
            attempt,
            message,
            now,
        } => {
            // A step no newer than the attempt's last one was recorded already
            // (an engine that re-reads its notes after a restart says it again).
            // Past the cap, an attempt's steps are dropped: a cluster that
            // reports a pod's scheduling failure again and again (or a pull
            // that prints without end) cannot grow the run's stream.
            if run.attempt == attempt
                && run.status == RunStatus::Pending
                && run.prepared_at.is_none_or(|last| now > last)
                && run.prepared_steps < MAX_PREPARING_STEPS
            {
                vec![RunEvent::RunPreparing {
                    attempt,
                    message,
                    at: now,
                }]
            } else {
                vec![]
            }
        }
        RunCommand::RecordStarted {
            attempt,
            engine_version,
            task_id,
            host,
            now,
        } => {
            let advances = run.status.rank() < RunStatus::Running.rank()
                && run.status != RunStatus::NeedsRetry;
            if !run.is_stale_report(attempt, engine_version) && advances {
                vec![RunEvent::RunStarted {
                    attempt,
                    engine_version,
                    task_id: task_id.filter(|_| run.task_id.is_none()),
                    host,
                    limits: None,
                    at: now,
                }]
            } else {
                vec![]
            }
        }
        RunCommand::RecordExited {
            attempt,
            engine_version,
            exit_code,
            reason,
            now,
            ..
        } => {
            if !run.is_stale_report(attempt, engine_version)
                && run.status.is_active()
                && run.status != RunStatus::NeedsRetry
            {
                let stopped = run.stop_reason();
                let verdict = match (&run.spec.retry, &stopped) {
                    (Some(retry), None) => retry.verdict(
                        attempt,
                        exit_code,
                        reason.as_deref(),
                        run.resources().memory,
                    ),
                    _ => Verdict::Stands(None),
                };
                let joined = |note: String| match &reason {
                    Some(reason) => format!("{reason}; {note}"),
                    None => note,
                };
                match verdict {
                    Verdict::Retry(why) => vec![RunEvent::RunNeedsRetry {
                        attempt,
                        engine_version,
                        reason: joined(why),
                        exit_code,
                        retry_at: retry_at(run, attempt, now),
                        at: now,
                    }],
                    Verdict::Stands(note) => vec![RunEvent::RunStopped {
                        attempt,
                        engine_version,
                        exit_code,
                        reason: stopped.or_else(|| note.map(joined)).or(reason.clone()),
                        at: now,
                    }],
                }
            } else {
                vec![]
            }
        }
        RunCommand::RecordInfrastructureFailure {
            attempt,
            engine_version,
            reason,
            now,
        } => {
            if run.is_stale_report(attempt, engine_version) || run.status == RunStatus::NeedsRetry {
                vec![]
            } else if let Some(stopped) = run.stop_reason() {
                // The user asked for a stop: the run ends, it is not retried.
                if run.status == RunStatus::Stopped {
                    vec![]
                } else {
                    vec![RunEvent::RunStopped {
                        attempt,
                        engine_version,
                        exit_code: None,
                        reason: Some(stopped),
                        at: now,
                    }]
                }
            } else if run.status == RunStatus::Stopped && run.exit_code.is_some() {
                // The user's code ran and exited: that outcome stands.
                vec![]
            } else {
                vec![RunEvent::RunNeedsRetry {
                    attempt,
                    engine_version,
                    reason,
                    exit_code: None,
                    retry_at: retry_at(run, attempt, now),
                    at: now,
                }]
            }
        }
        RunCommand::RecordLaunchDeferred {
            attempt,
            reason,
            now,
        } => {
            // A deferral gives back the slot the attempt holds, even when its
            // reason was recorded already.
            if run.is_launchable(attempt)
                && (run.launch_deferred.as_deref() != Some(reason.as_str()) || run.slot.is_some())
            {
                vec![RunEvent::RunLaunchDeferred {
                    attempt,
                    reason,
                    at: now,
                }]
            } else {
                vec![]
            }
        }
        RunCommand::Admit { attempt, cap, now } => {
            if run.is_launchable(attempt) && run.slot.is_none() {
                vec![RunEvent::RunAdmitted {
                    attempt,
                    cap,
                    at: now,
                }]
            } else {
                vec![]
            }
        }
        RunCommand::RequestStop { by, reason, now } => match run.status {
            RunStatus::Stopped => vec![],
            RunStatus::Queued | RunStatus::NeedsRetry => vec![
                RunEvent::RunStopRequested {
                    by: by.clone(),
                    reason: None,
                    at: now,
                },
                RunEvent::RunStopped {
                    attempt: run.attempt,
                    engine_version: None,
                    exit_code: None,
                    reason: Some(format!("{} before it was launched", stopped_by_reason(&by))),
                    at: now,
                },
            ],
            RunStatus::Pending | RunStatus::Running => {
                if run.stop_requested_by.is_some() {
                    vec![]
                } else {
                    vec![RunEvent::RunStopRequested {
                        by,
                        reason,
                        at: now,
                    }]
                }
            }
        },
        RunCommand::Requeue {
            max_attempts,
            limits,
            now,
        } => {
            let allowed = run.spec.retry.as_ref().map_or(max_attempts, |r| r.attempts);
            let fallback = spot_fallback(run);
            if run.status != RunStatus::NeedsRetry || run.retry_at.is_some_and(|at| now < at) {
                vec![]
            } else if run.attempt >= allowed && fallback.is_none() {
                let last = run
                    .exit_reason
                    .as_deref()
                    .unwrap_or("infrastructure failure");
                vec![RunEvent::RunStopped {
                    attempt: run.attempt,
                    engine_version: None,
                    exit_code: None,
                    reason: Some(format!(
                        "gave up after {} attempts; the last one failed with: {last}",
                        run.attempt
                    )),
                    at: now,
                }]
            } else {
                match next_resources(run, limits) {
                    Ok(grown) => {
                        let (resources, resources_note) = grown.unzip();
                        let (node_lifecycle, lifecycle_note) = fallback.unzip();
                        vec![RunEvent::RunRequeued {
                            attempt: run.attempt + 1,
                            resources,
                            resources_note,
                            node_lifecycle,
                            lifecycle_note,
                            at: now,
                        }]
                    }
                    Err(reason) => vec![RunEvent::RunStopped {
                        attempt: run.attempt,
                        engine_version: None,
                        exit_code: run.exit_code,
                        reason: Some(reason),
                        at: now,
                    }],
                }
            }
        }
        RunCommand::Reenqueue {
            attempt,
            stale_before,
            now,
        } => {
            if run.is_launchable(attempt) && run.last_enqueued_at() < stale_before {
                vec![RunEvent::RunReenqueued { attempt, at: now }]
            } else {
                vec![]
            }
        }
        RunCommand::FlagRunningLong {
            attempt,
            usual,
            now,
        } => match run.started_at {
            Some(started)
                if run.status == RunStatus::Running
                    && run.attempt == attempt
                    && run.running_long.is_none() =>
            {
                vec![RunEvent::RunRunningLong {
                    attempt,
                    running_s: (now - started).num_seconds().max(0) as u64,
                    usual_s: usual.p90_s.round().max(0.0) as u64,
                    usual_of_runs: u32::try_from(usual.runs).unwrap_or(u32::MAX),
                    at: now,
                }]
            }
            _ => vec![],
        },
        RunCommand::Abandon { reason, now } => {
            if run.status == RunStatus::Stopped {
                vec![]
            } else {
                vec![RunEvent::RunStopped {
                    attempt: run.attempt,
                    engine_version: None,
                    exit_code: None,
                    reason: Some(reason),
                    at: now,
                }]
            }
        }
    })
}

/// Where the attempt after `run`'s runs when the spot capacity it ran on was
/// reclaimed: on on-demand, with why. That attempt is given even when the
/// policy's attempts are used, and only once: it no longer runs on spot.
fn spot_fallback(run: &Run) -> Option<(NodeLifecycle, String)> {
    let interrupted = run
        .exit_reason
        .as_deref()
        .is_some_and(|r| r.starts_with(SPOT_INTERRUPTION));
    (interrupted && run.lifecycle() == NodeLifecycle::Spot).then(|| {
        (
            NodeLifecycle::Ondemand,
            format!(
                "attempt {} lost its spot capacity; attempt {} runs on on-demand capacity",
                run.attempt,
                run.attempt + 1
            ),
        )
    })
}

/// When the attempt after `attempt` of `run`, which failed `now`, may be
/// queued: after its policy's backoff, when it has one.
fn retry_at(run: &Run, attempt: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let wait = run
        .spec
        .retry
        .as_ref()
        .map_or(Duration::zero(), |r| r.wait_after(attempt));
    (wait > Duration::zero()).then(|| now + wait)
}

/// The resources of the attempt after `run`'s, when they differ (with why):
/// more memory when the attempt ran out and its policy grows it, fitted to
/// what the engine takes within the policy's cap. The reason to give up
/// when the memory should grow and no size the engine takes can.
fn next_resources(run: &Run, limits: LaunchLimits) -> Result<Option<(Resources, String)>, String> {
    let Some(retry) = &run.spec.retry else {
        return Ok(None);
    };
    let ran_out = run
        .exit_reason
        .as_deref()
        .is_some_and(|r| r.starts_with(OUT_OF_MEMORY));
    let current = run.resources();
    let Some(memory) = current
        .memory
        .filter(|_| ran_out && retry.names(RetryReason::OutOfMemory))
    else {
        return Ok(None);
    };
    let cap = retry.max_memory.unwrap_or(u64::MAX);
    let grown = retry
        .grown_memory(memory)
        .and_then(|target| limits.grown(current, target, cap));
    match grown {
        Some(next) => {
            let to = next.memory.unwrap_or(memory);
            let cap_text = retry
                .max_memory
                .map_or_else(String::new, |cap| format!(", up to {cap} MB"));
            Ok(Some((
                next,
                format!(
                    "memory {to} MB, up from {memory} MB: attempt {} ran out of memory, and the retry policy grows it {} times{cap_text}",
                    run.attempt, retry.memory_multiplier
                ),
            )))
        }
        None => Err(format!(
            "gave up after attempt {} ran out of memory with {memory} MB: no larger size the engine takes is within max_memory{}",
            run.attempt,
            retry
                .max_memory
                .map_or_else(String::new, |cap| format!(" ({cap} MB)"))
        )),
    }
}

/// The exit reason of a run stopped on request.
pub fn stopped_by_reason(by: &str) -> String {
    format!("stopped by {by}")
}

/// Folds one event into the state. Never fails and never panics: an event that
/// does not fit (which `decide` never produces) leaves the run as it was, apart
/// from the version.
pub fn evolve(mut state: RunState, event: &RunEvent) -> RunState {
    state.version += 1;
    if let Some(run) = state.run.as_mut() {
        let at = event.at();
        run.last_event_at = Some(run.last_event_at.map_or(at, |last| last.max(at)));
    }
    match (state.run.as_mut(), event) {
        (None, RunEvent::RunQueued { spec, at }) => {
            state.run = Some(Run {
                spec: (**spec).clone(),
                status: RunStatus::Queued,
                attempt: 1,
                queued_at: *at,
                started_at: None,
                finished_at: None,
                exit_code: None,
                exit_reason: None,
                task_id: None,
                host: None,
                stop_requested_by: None,
                stop_reason: None,
                engine_version: None,
                launch_deferred: None,
                enqueued_at: None,
                last_event_at: None,
                prepared_at: None,
                prepared_steps: 0,
                retry_at: None,
                attempt_resources: None,
                resources_note: spec.resources_note.clone(),
                submitted_at: None,
                preparing: None,
                attempt_lifecycle: None,
                lifecycle_note: spec.lifecycle_note.clone(),
                slot: None,
                usage: None,
                running_long: None,
            });
        }
        (None, _) | (Some(_), RunEvent::RunQueued { .. }) => {}
        (Some(run), RunEvent::RunSubmitted { task_id, at, .. }) => {
            run.submitted_at = Some(*at);
            run.status = RunStatus::Pending;
            run.task_id = Some(task_id.clone());
            run.launch_deferred = None;
        }
        (Some(run), RunEvent::RunLaunchDeferred { reason, .. }) => {
            run.launch_deferred = Some(reason.clone());
            run.slot = None;
        }
        (Some(run), RunEvent::RunAdmitted { cap, .. }) => {
            run.slot = Some(*cap);
        }
        (
            Some(run),
            RunEvent::RunStarted {
                task_id,
                host,
                at,
                engine_version,
                ..
            },
        ) => {
            note_engine_version(run, *engine_version);
            run.status = RunStatus::Running;
            run.started_at = Some(*at);
            if let Some(task_id) = task_id {
                run.task_id = Some(task_id.clone());
            }
            if host.is_some() {
                run.host = host.clone();
            }
        }
        (Some(run), RunEvent::RunStopRequested { by, reason, .. }) => {
            run.stop_requested_by = Some(by.clone());
            run.stop_reason = reason.clone();
        }
        (
            Some(run),
            RunEvent::RunStopped {
                exit_code,
                reason,
                at,
                engine_version,
                ..
            },
        ) => {
            note_engine_version(run, *engine_version);
            run.status = RunStatus::Stopped;
            run.exit_code = *exit_code;
            run.exit_reason = reason.clone();
            run.finished_at = Some(*at);
            run.slot = None;
        }
        (
            Some(run),
            RunEvent::RunNeedsRetry {
                reason,
                engine_version,
                exit_code,
                retry_at,
                ..
            },
        ) => {
            note_engine_version(run, *engine_version);
            run.status = RunStatus::NeedsRetry;
            run.exit_code = *exit_code;
            run.exit_reason = Some(reason.clone());
            run.finished_at = None;
            run.retry_at = *retry_at;
            run.slot = None;
        }
        (Some(run), RunEvent::RunPreparing { at, message, .. }) => {
            run.prepared_at = Some(run.prepared_at.map_or(*at, |last| last.max(*at)));
            run.prepared_steps = run.prepared_steps.saturating_add(1);
            let since = run
                .preparing
                .as_ref()
                .map_or(*at, |(_, since)| (*since).min(*at));
            run.preparing = Some((message.clone(), since));
        }
        (Some(run), RunEvent::RunReenqueued { at, .. }) => {
            run.enqueued_at = Some(*at);
        }
        (
            Some(run),
            RunEvent::RunRunningLong {
                running_s,
                usual_s,
                usual_of_runs,
                ..
            },
        ) => {
            run.running_long = Some(running_long_text(*running_s, *usual_s, *usual_of_runs));
        }
        (Some(run), RunEvent::RunUsageRecorded { usage, .. }) => {
            run.usage = Some(run.usage.map_or(*usage, |sum| sum.plus(*usage)));
        }
        (
            Some(run),
            RunEvent::RunRequeued {
                attempt,
                at,
                resources,
                resources_note,
                node_lifecycle,
                lifecycle_note,
            },
        ) => {
            if let Some(resources) = resources {
                run.attempt_resources = Some(*resources);
                run.resources_note = resources_note.clone();
            }
            if let Some(lifecycle) = node_lifecycle {
                run.attempt_lifecycle = Some(*lifecycle);
                run.lifecycle_note = lifecycle_note.clone();
            }
            run.slot = None;
            run.retry_at = None;
            run.submitted_at = None;
            run.preparing = None;
            run.enqueued_at = Some(*at);
            run.status = RunStatus::Queued;
            run.attempt = *attempt;
            run.started_at = None;
            run.finished_at = None;
            run.exit_code = None;
            run.exit_reason = None;
            run.task_id = None;
            run.host = None;
            run.engine_version = None;
            run.launch_deferred = None;
            run.prepared_at = None;
            run.prepared_steps = 0;
            run.running_long = None;
        }
    }
    state
}

/// "12m 05s" for a number of seconds.
fn span(seconds: u64) -> String {
    match (seconds / 3600, seconds % 3600 / 60, seconds % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

/// Why an attempt was flagged as running long, as its timeline and view say.
pub fn running_long_text(running_s: u64, usual_s: u64, runs: u32) -> String {
    format!(
        "running for {}, longer than usual: its job's last {runs} successful runs took up to {} (90th percentile)",
        span(running_s),
        span(usual_s)
    )
}

/// Whether `run` is due to be flagged as running long at `now`: it runs,
/// was not flagged yet, and has run past 1.5 times its job's `usual`
/// duration and past `minimum`.
pub fn runs_long(
    run: &Run,
    usual: crate::domain::learning::UsualDuration,
    minimum: Duration,
    now: DateTime<Utc>,
) -> bool {
    let Some(started) = run.started_at else {
        return false;
    };
    let threshold_ms = ((usual.p90_s * 1500.0).round() as i64).max(minimum.num_milliseconds());
    run.status == RunStatus::Running
        && run.running_long.is_none()
        && (now - started).num_milliseconds() > threshold_ms
}

fn note_engine_version(run: &mut Run, version: Option<u64>) {
    if let Some(v) = version {
        run.engine_version = Some(run.engine_version.map_or(v, |last| last.max(v)));
    }
}

/// Folds a whole stream from scratch.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a RunEvent>) -> RunState {
    events.into_iter().fold(RunState::default(), evolve)
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
