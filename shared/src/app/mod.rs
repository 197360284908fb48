//! The use cases every entry point calls, one file per family:
//!
//! - [`definitions`]: create, change, delete and read job definitions;
//! - [`execute`]: launch a run of a definition (idempotence keys, routing);
//! - [`runs`]: read runs, their timelines, and stop them;
//! - [`reports`]: hand a queued attempt to the engine, and record what the
//!   engine or the run itself reports;
//! - [`sweep`]: the retry sweep (requeues, lost enqueues, deadlines);
//! - [`clusters`] and [`templates`]: the cluster registry and v7 templates;
//! - [`logs`]: a run's output;
//! - [`insights`]: leaderboards of what runs cost and used;
//! - [`schedules`]: cron schedules, and firing the due ones.
//!
//! [`App`] holds the ports and the settings, and nothing else; it is the same
//! for `flotilla serve` and the Lambda functions and is built in one place,
//! [`App::new`]. Each run command goes through [`App::apply`]: read the
//! projection, `decide`, append with the version as condition, and on a
//! conflict read again and decide again ([`retry_on_conflict`], the one copy of
//! that loop). That loop, with `decide` returning no events for duplicates, is
//! what makes every handler idempotent.

pub mod clusters;
pub mod definitions;
pub mod execute;
pub mod insights;
pub mod logs;
pub mod reports;
pub mod runs;
pub mod schedules;
pub mod sweep;
pub mod templates;
pub mod tokens;

#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::warn;

use crate::domain::DomainError;
use crate::domain::event::RunEvent;
use crate::domain::learning::Lesson;
use crate::domain::run::{Run, RunCommand, RunState, RunStatus, decide, evolve};
use crate::domain::spec::Engine;
use crate::error::{AppError, Conflict, Contended, Missing, StoreError};
use crate::ports::{
    Clock, ClusterStore, DefinitionStore, EventPublisher, ExecutionEngine, IdempotenceKeys,
    JobLessons, LogSource, RunQueue, RunStateChange, RunStore, ScheduleStore, TemplateStore,
};

pub use definitions::DefinitionRef;
pub use reports::SubmitOutcome;
pub use sweep::TickOutcome;
pub use tokens::RunTokens;

/// How often a change is decided again after losing an optimistic-concurrency race.
pub const MAX_CONFLICT_RETRIES: usize = 8;

/// Settings of the use cases that do not depend on the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSettings {
    /// Engine recorded on runs; its name prefixes run ids.
    pub engine: Engine,
    /// Value of `FLOTILLA_SERVER_MODE` in every run.
    pub server_mode: String,
    /// Name of the owner variable.
    pub owner_var: String,
    /// Cluster used when none is named.
    pub default_cluster: String,
    /// Whether runs need a command (the local engine runs `bash -c`).
    pub requires_command: bool,
    /// Attempts allowed per run, the first included.
    pub max_attempts: u32,
    /// The most memory (MB) an attempt's memory may grow to after one ran
    /// out of memory, whatever its definition says; no cap when absent.
    pub max_memory: Option<u64>,
    /// The clusters this deployment has queues for (on AWS, the stack's
    /// `Clusters`); empty when any name will do (local queues).
    pub clusters: Vec<String>,
    /// How to add a cluster to the deployment, for the message refusing one
    /// it has no queue for (the AWS edge names the stack's parameter).
    pub add_cluster_hint: String,
    /// What the engine can take of a launch's command and env.
    pub launch_limits: crate::domain::limits::LaunchLimits,
    /// The most runs launched at once over every cluster, when the server
    /// has such a limit (the local server's `--parallelism`).
    pub parallelism: Option<usize>,
    /// Whether clusters may be Kubernetes clusters (`engine: "eks"`): only
    /// where the EKS engine is wired in (the functions).
    pub kubernetes_clusters: bool,
    /// The rates attempts' costs are estimated at.
    pub prices: crate::domain::usage::PriceTable,
    /// The region runs execute in, as the price table names it (`local`
    /// for `flotilla serve`).
    pub region: String,
    /// A run is flagged as running long only past this, whatever its job
    /// usually takes.
    pub long_run_minimum: chrono::Duration,
}

/// Every storage port, implemented by one backend (SQLite, DynamoDB).
pub trait Storage:
    RunStore
    + DefinitionStore
    + ClusterStore
    + IdempotenceKeys
    + TemplateStore
    + JobLessons
    + ScheduleStore
    + 'static
{
}

impl<T> Storage for T where
    T: RunStore
        + DefinitionStore
        + ClusterStore
        + IdempotenceKeys
        + TemplateStore
        + JobLessons
        + ScheduleStore
        + 'static
{
}

/// What an [`App`] runs on besides its storage.
pub struct Runtime {
    /// Per-cluster queues.
    pub queue: Arc<dyn RunQueue>,
    /// Engine.
    pub engine: Arc<dyn ExecutionEngine>,
    /// Logs.
    pub logs: Arc<dyn LogSource>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Where run state changes are published for automation, if anywhere.
    pub publisher: Option<Arc<dyn EventPublisher>>,
    /// The tokens runs report their own status with; without them a
    /// self-report needs no token.
    pub tokens: Option<RunTokens>,
}

/// The ports, built once per process.
#[derive(Clone)]
pub struct App {
    /// Runs: event streams and projections.
    pub runs: Arc<dyn RunStore>,
    /// Definitions.
    pub definitions: Arc<dyn DefinitionStore>,
    /// Registered clusters.
    pub clusters: Arc<dyn ClusterStore>,
    /// Idempotence keys.
    pub idempotence: Arc<dyn IdempotenceKeys>,
    /// Job templates.
    pub templates: Arc<dyn TemplateStore>,
    /// What each job's runs taught its next ones.
    pub lessons: Arc<dyn JobLessons>,
    /// Schedules.
    pub schedules: Arc<dyn ScheduleStore>,
    /// Per-cluster queues.
    pub queue: Arc<dyn RunQueue>,
    /// Engine.
    pub engine: Arc<dyn ExecutionEngine>,
    /// Logs.
    pub logs: Arc<dyn LogSource>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Where run state changes are published for automation, if anywhere.
    pub publisher: Option<Arc<dyn EventPublisher>>,
    /// The tokens runs report their own status with, if required.
    pub tokens: Option<RunTokens>,
    /// Settings.
    pub settings: AppSettings,
}

/// One try of a change that may lose an optimistic-concurrency race.
pub enum Step<T> {
    /// The change is made (or needs making no more).
    Done(T),
    /// Another writer got there first: read again and decide again.
    Again,
}

/// Runs `step` until it is done, deciding again after each lost race, at most
/// [`MAX_CONFLICT_RETRIES`] times; then gives up with a conflict naming `what`.
pub async fn retry_on_conflict<T, F, Fut>(what: Contended, mut step: F) -> Result<T, AppError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Step<T>, AppError>>,
{
    for _ in 0..MAX_CONFLICT_RETRIES {
        if let Step::Done(value) = step().await? {
            return Ok(value);
        }
    }
    Err(AppError::Conflict(Conflict::Contended(what)))
}

impl App {
    /// The use cases over `storage` (every storage port) and `runtime`.
    pub fn new(storage: Arc<impl Storage>, runtime: Runtime, settings: AppSettings) -> Self {
        let Runtime {
            queue,
            engine,
            logs,
            clock,
            publisher,
            tokens,
        } = runtime;
        Self {
            runs: storage.clone(),
            definitions: storage.clone(),
            clusters: storage.clone(),
            idempotence: storage.clone(),
            templates: storage.clone(),
            schedules: storage.clone(),
            lessons: storage,
            queue,
            engine,
            logs,
            clock,
            publisher,
            tokens,
            settings,
        }
    }

    /// Now, by the app's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Runs one command against a run's stream: read, decide, append with the
    /// version as condition; on a conflict, read and decide again. Returns the
    /// run as it is afterwards.
    pub async fn apply(&self, run_id: &str, command: RunCommand) -> Result<Run, AppError> {
        self.apply_from(run_id, command, None).await
    }

    /// [`App::apply`], starting from a state the caller has just read (or, for
    /// a new run, the empty state), which saves one read. A stale state costs
    /// nothing but a conflict and a fresh read.
    pub(crate) async fn apply_from(
        &self,
        run_id: &str,
        command: RunCommand,
        known: Option<RunState>,
    ) -> Result<Run, AppError> {
        Ok(self.apply_reporting(run_id, command, known).await?.0)
    }

    /// [`App::apply_from`], also saying whether this call appended events
    /// (`false` when the command changed nothing, also after a conflict with
    /// a writer that got there first).
    pub(crate) async fn apply_reporting(
        &self,
        run_id: &str,
        command: RunCommand,
        mut known: Option<RunState>,
    ) -> Result<(Run, bool), AppError> {
        retry_on_conflict(Contended::Run(run_id.to_owned()), || {
            let known = known.take();
            let command = command.clone();
            async move {
                let state = match known {
                    Some(state) => state,
                    None => self.runs.get(run_id).await?,
                };
                let events = decide(&state, command).map_err(|e| match e {
                    DomainError::RunNotFound => AppError::NotFound(Missing::Run(run_id.to_owned())),
                    other => other.into(),
                })?;
                let events = self.priced(state.run.as_ref(), events);
                let version = state.version;
                let before = state.run.clone();
                let previous = before.as_ref().map(|r| r.status);
                let next = events.iter().fold(state, evolve);
                let Some(run) = next.run else {
                    return Err(AppError::NotFound(Missing::Run(run_id.to_owned())));
                };
                if events.is_empty() {
                    return Ok(Step::Done((run, false)));
                }
                let slot = crate::ports::SlotChange::between(before.as_ref(), &run);
                match self
                    .runs
                    .append_with_slot(run_id, version, &events, &run, &slot)
                    .await
                {
                    Ok(_) => {
                        if previous != Some(run.status) {
                            self.publish(&run, previous).await;
                        }
                        self.learn(&run, &events).await;
                        Ok(Step::Done((run, true)))
                    }
                    Err(StoreError::Conflict { .. }) => Ok(Step::Again),
                    Err(other) => Err(other.into()),
                }
            }
        })
        .await
    }

    /// `events` with the usage of each attempt they end priced at the
    /// settings' table (the attempt's size, region, architecture and
    /// capacity), so the estimate is fixed when the attempt ends.
    fn priced(&self, run: Option<&Run>, mut events: Vec<RunEvent>) -> Vec<RunEvent> {
        let Some(run) = run else {
            return events;
        };
        for event in &mut events {
            if let RunEvent::RunUsageRecorded { usage, .. } = event {
                usage.cost_usd = self.settings.prices.cost(
                    usage,
                    run.resources(),
                    &self.settings.region,
                    run.spec.arch.as_deref(),
                    run.lifecycle(),
                );
            }
        }
        events
    }

    /// Records what `events`, just appended, teach the run's job (an
    /// attempt out of memory, or off its spot capacity). The events are
    /// already recorded; a lesson that cannot be written is logged, and
    /// costs only the next runs' head start.
    async fn learn(&self, run: &Run, events: &[RunEvent]) {
        if let Some((job, lesson)) = Lesson::of(run, events)
            && let Err(error) = self.lessons.learn(&job, &lesson).await
        {
            warn!(run_id = %run.spec.run_id, error = %error, "could not record what the run teaches its job");
        }
    }

    /// Publishes a status change. The change is already recorded; a failure to
    /// publish is logged, not returned, so it never undoes or repeats a command.
    async fn publish(&self, run: &Run, previous: Option<RunStatus>) {
        if let Some(publisher) = &self.publisher
            && let Err(error) = publisher
                .publish(&[RunStateChange::of(run, previous)])
                .await
        {
            warn!(run_id = %run.spec.run_id, error = %error, "could not publish a run state change");
        }
    }
}
