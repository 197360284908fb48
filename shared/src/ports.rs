//! The ports: narrow traits the use cases need, named for what they do.
//!
//! Ports take and return domain types only; no SDK or SQL type crosses them.
//! Every storage port has an embedded adapter (`adapters::sqlite`) and an AWS
//! one (`adapters::dynamo`, `adapters::sqs`), and both pass the same contract
//! suites in `testing::contract`; the engines and log sources are
//! `adapters::local` and `adapters::{ecs, cloudwatch}`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::EnvVar;
use crate::domain::cluster::Cluster;
use crate::domain::definition::Definition;
use crate::domain::event::RunEvent;
use crate::domain::learning::{JobKey, Learned, Lesson};
use crate::domain::query::{DefinitionQuery, Page, RunQuery};
use crate::domain::run::{Run, RunCommand, RunState};
use crate::domain::schedule::Schedule;
use crate::domain::spec::{Engine, Resources};
use crate::domain::template::Template;
use crate::error::{EngineError, LogError, PublishError, StoreError};

/// One event as stored in a run's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Position in the stream, from 1.
    pub sequence: u64,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The event.
    pub event: RunEvent,
}

/// Runs: each run's event stream and its projection (the fold of the stream,
/// kept beside it for reads and lists). One port, because one write holds
/// both: an append stores the events and the new projection atomically, with
/// the stream's version as condition, so the projection can never disagree
/// with the events it was folded from.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Appends `events` to the stream of `run_id` if it holds exactly `expected`
    /// events, and stores `projection` (the fold after them) in the same atomic
    /// write. Returns the new version. `StoreError::Conflict` when another writer
    /// got there first: reload and decide again.
    async fn append(
        &self,
        run_id: &str,
        expected: u64,
        events: &[RunEvent],
        projection: &Run,
    ) -> Result<u64, StoreError>;

    /// The whole stream, in order; empty when the run does not exist.
    async fn load(&self, run_id: &str) -> Result<Vec<RecordedEvent>, StoreError>;

    /// A run's current state (version 0 and no run when it does not exist).
    async fn get(&self, run_id: &str) -> Result<RunState, StoreError>;

    /// Runs matching a query, with the total count.
    async fn list(&self, query: &RunQuery) -> Result<Page<Run>, StoreError>;

    /// [`RunStore::append`], also taking or giving back a slot of a
    /// cluster's cap in the same atomic write. Taking a slot of a cluster
    /// whose slots are all held fails with [`StoreError::AtCap`] and writes
    /// nothing.
    async fn append_with_slot(
        &self,
        run_id: &str,
        expected: u64,
        events: &[RunEvent],
        projection: &Run,
        slot: &SlotChange,
    ) -> Result<u64, StoreError> {
        match slot {
            SlotChange::Keep => self.append(run_id, expected, events, projection).await,
            _ => Err(StoreError::Backend(
                "this store keeps no cluster slots".into(),
            )),
        }
    }

    /// The daily tallies by `by` of the runs that ended on the days `from`
    /// to `to` (UTC), kept by the append that ends a run: a row per key and
    /// day, never a run.
    async fn tallies(
        &self,
        by: crate::domain::insights::Dimension,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<crate::domain::insights::DayTally>, StoreError>;

    /// How many slots of `cluster`'s cap are held.
    async fn slots_held(&self, cluster: &str) -> Result<u64, StoreError> {
        let _ = cluster;
        Ok(0)
    }

    /// Sets the slots held in `cluster` to `counted` (what the projections
    /// say) if they are still `seen`; `false` when they moved meanwhile.
    async fn repair_slots(
        &self,
        cluster: &str,
        seen: u64,
        counted: u64,
    ) -> Result<bool, StoreError> {
        let _ = (cluster, seen, counted);
        Ok(true)
    }

    /// How many QUEUED runs of `run`'s cluster had their ticket put on the
    /// queue before `run`'s (earlier, or at the same time with a smaller run
    /// id): one index range counted, no run read. `None` when the store
    /// cannot tell.
    async fn queued_ahead(&self, run: &Run) -> Result<Option<u64>, StoreError> {
        let _ = run;
        Ok(None)
    }

    /// When the newest runs of `cluster` that started at or after `since`
    /// started, newest first, at most `limit` of them: one index range
    /// read. Empty when the store cannot tell.
    async fn recent_starts(
        &self,
        cluster: &str,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let _ = (cluster, since, limit);
        Ok(Vec::new())
    }
}

/// What an append does to the slots of its run's cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotChange {
    /// Nothing.
    Keep,
    /// Takes one, if fewer than `cap` are held.
    Take {
        /// The cluster.
        cluster: String,
        /// Its cap.
        cap: u32,
    },
    /// Gives one back.
    Release {
        /// The cluster.
        cluster: String,
    },
}

impl SlotChange {
    /// The change from `before` to `after`, by the slot each holds.
    pub fn between(before: Option<&Run>, after: &Run) -> Self {
        let held = before.and_then(|r| r.slot);
        match (held, after.slot) {
            (None, Some(cap)) => Self::Take {
                cluster: after.spec.cluster.clone(),
                cap,
            },
            (Some(_), None) => Self::Release {
                cluster: after.spec.cluster.clone(),
            },
            _ => Self::Keep,
        }
    }
}

/// Job definitions, with alias uniqueness.
#[async_trait]
pub trait DefinitionStore: Send + Sync {
    /// Stores a new definition; `StoreError::Duplicate` when the alias is taken.
    async fn create(&self, definition: &Definition) -> Result<(), StoreError>;
    /// Replaces a definition; `Duplicate` when its new alias is taken by another,
    /// `NotFound` when it does not exist.
    async fn update(&self, definition: &Definition) -> Result<(), StoreError>;
    /// Deletes a definition; `false` when it did not exist.
    async fn delete(&self, definition_id: &str) -> Result<bool, StoreError>;
    /// By id.
    async fn get(&self, definition_id: &str) -> Result<Option<Definition>, StoreError>;
    /// By alias.
    async fn get_by_alias(&self, alias: &str) -> Result<Option<Definition>, StoreError>;
    /// Definitions matching a query, with the total count.
    async fn list(&self, query: &DefinitionQuery) -> Result<Page<Definition>, StoreError>;
}

/// The registered clusters. Clusters are few; the whole registry is read and
/// written at once, with a version for optimistic concurrency.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Every registered cluster, by name, and the registry's version (0 when
    /// nothing was ever registered).
    async fn clusters(&self) -> Result<(Vec<Cluster>, u64), StoreError>;

    /// Replaces the registry if its version is still `expected`, else
    /// [`StoreError::Conflict`].
    async fn save_clusters(&self, clusters: &[Cluster], expected: u64) -> Result<(), StoreError>;
}

/// What an idempotence key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    /// The run.
    pub run_id: String,
    /// Until when (the claim's time plus the idempotence window).
    pub expires_at: DateTime<Utc>,
}

/// Idempotence keys: which run a key names, for a while.
#[async_trait]
pub trait IdempotenceKeys: Send + Sync {
    /// What `key` names, unless it expired before `now`.
    async fn find(&self, key: &str, now: DateTime<Utc>) -> Result<Option<KeyClaim>, StoreError>;

    /// Points `key` at `run_id` until `expires_at`, if the key names nothing
    /// (or has expired), or names `replacing`. `false`: another request got it first.
    async fn claim(
        &self,
        key: &str,
        run_id: &str,
        replacing: Option<&str>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// What the runs of each job taught its next ones
/// ([`crate::domain::learning`]): one record per job, merged into.
#[async_trait]
pub trait JobLessons: Send + Sync {
    /// What `job`'s runs taught so far (nothing, when none did).
    async fn learned(&self, job: &JobKey) -> Result<Learned, StoreError>;

    /// Merges `lesson` into what `job` learned, as [`Learned::merged`]
    /// does, with no lost update when two writers race: recording a lesson
    /// again changes nothing.
    async fn learn(&self, job: &JobKey, lesson: &Lesson) -> Result<(), StoreError>;
}

/// Job templates, one item per version.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Stores a new version; [`StoreError::Duplicate`] when that name and
    /// version exist.
    async fn create(&self, template: &Template) -> Result<(), StoreError>;
    /// One version by id.
    async fn get(&self, template_id: &str) -> Result<Option<Template>, StoreError>;
    /// Every version of a name, oldest first.
    async fn versions(&self, name: &str) -> Result<Vec<Template>, StoreError>;
    /// Every version of every template.
    async fn all(&self) -> Result<Vec<Template>, StoreError>;
}

/// Schedules, each written with its stored version as condition.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Saves a new schedule (its `version` 1).
    async fn create_schedule(&self, schedule: &Schedule) -> Result<(), StoreError>;
    /// A schedule.
    async fn schedule(&self, schedule_id: &str) -> Result<Option<Schedule>, StoreError>;
    /// Every schedule, oldest first.
    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError>;
    /// Replaces the schedule if its stored version is `expected` (the new
    /// one carries `expected + 1`); `false` when it moved or is gone.
    async fn save_schedule(&self, schedule: &Schedule, expected: u64) -> Result<bool, StoreError>;
    /// Deletes a schedule; `false` when there was none.
    async fn delete_schedule(&self, schedule_id: &str) -> Result<bool, StoreError>;
}

/// A request to launch one attempt of a run, as carried by a cluster's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTicket {
    /// The run.
    pub run_id: String,
    /// The attempt to launch.
    pub attempt: u32,
    /// The cluster whose queue carries it.
    pub cluster: String,
}

impl RunTicket {
    /// The ticket of `run`'s current attempt.
    pub fn of(run: &Run) -> Self {
        Self {
            run_id: run.spec.run_id.clone(),
            attempt: run.attempt,
            cluster: run.spec.cluster.clone(),
        }
    }
}

/// One queue per cluster. Delivery is at least once: consumers must check the
/// run's state before launching, so a duplicate ticket is harmless.
#[async_trait]
pub trait RunQueue: Send + Sync {
    /// Puts a ticket on its cluster's queue.
    async fn enqueue(&self, ticket: &RunTicket) -> Result<(), StoreError> {
        self.enqueue_after(ticket, std::time::Duration::ZERO).await
    }

    /// Puts a ticket on its cluster's queue, to be taken no sooner than
    /// `delay` from now (SQS: at most 15 minutes).
    async fn enqueue_after(
        &self,
        ticket: &RunTicket,
        delay: std::time::Duration,
    ) -> Result<(), StoreError>;
}

/// What an engine needs to launch one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    /// The run.
    pub run_id: String,
    /// The attempt.
    pub attempt: u32,
    /// The definition it runs.
    pub definition_id: String,
    /// Cluster.
    pub cluster: String,
    /// Image.
    pub image: String,
    /// Shell command (`bash -c`).
    pub command: Option<String>,
    /// Environment in the order it applies: definition env, then the run's env
    /// (reserved variables and the request's); a later entry wins.
    pub env: Vec<EnvVar>,
    /// Memory, cpu, gpu and ephemeral storage.
    pub resources: Resources,
    /// Timeout.
    pub active_deadline_seconds: Option<u64>,
    /// Variables whose values the engine fetches from where they are kept.
    pub secrets: Vec<crate::domain::SecretRef>,
    /// Spot or on-demand capacity (ECS: Fargate Spot or Fargate).
    pub node_lifecycle: crate::domain::spec::NodeLifecycle,
    /// Container ports the definition names.
    pub ports: Vec<u16>,
    /// The registry credentials' Secrets Manager ARN, for an image from a
    /// private registry (ECS passes it to the container; a local process,
    /// which runs no image, ignores it).
    pub repository_credentials: Option<String>,
    /// The CPU architecture asked for (Kubernetes: the nodes' `kubernetes.io/arch`).
    pub arch: Option<String>,
    /// The service account asked for (Kubernetes: the pod's).
    pub service_account: Option<String>,
    /// The engine the run is for (its cluster's when it was launched).
    pub engine: crate::domain::spec::Engine,
}

impl LaunchSpec {
    /// The launch of `run`'s current attempt.
    pub fn for_run(run: &Run) -> Self {
        let spec = &run.spec;
        // The run's env (reserved variables and the request's, which never share a
        // name) comes after the definition's, so it wins.
        let mut env = spec.definition_env.clone();
        env.extend(spec.env.iter().cloned());
        Self {
            run_id: spec.run_id.clone(),
            attempt: run.attempt,
            definition_id: spec.definition_id.clone(),
            cluster: spec.cluster.clone(),
            image: spec.image.clone(),
            command: spec.command.clone(),
            env,
            resources: run.resources(),
            active_deadline_seconds: spec.active_deadline_seconds,
            secrets: spec.secrets.clone(),
            node_lifecycle: run.lifecycle(),
            repository_credentials: spec.repository_credentials.clone(),
            ports: spec.ports.clone(),
            arch: spec.arch.clone(),
            service_account: spec.service_account.clone(),
            engine: spec.engine,
        }
    }
}

/// What an engine says right after accepting a launch.
#[derive(Debug, Clone, PartialEq)]
pub struct Launched {
    /// The engine's id for the attempt.
    pub task_id: String,
    /// Set when the engine knows the attempt is already running (a local
    /// process), with its host.
    pub running_on: Option<String>,
    /// How the engine holds the attempt to its resources, when it says
    /// (the local engine: a cgroup, or an address-space limit).
    pub limits: Option<String>,
}

/// Starts and stops tasks; nothing more. State changes come back as
/// [`EngineUpdate`]s through the engine's own channel (EventBridge, or the local
/// engine's update stream).
#[async_trait]
pub trait ExecutionEngine: Send + Sync {
    /// Launches one attempt.
    async fn launch(&self, spec: &LaunchSpec) -> Result<Launched, EngineError>;
    /// Asks the engine to stop a task of `cluster`; the stop is reported as
    /// an update.
    async fn stop(&self, cluster: &str, run_id: &str, task_id: &str) -> Result<(), EngineError>;
    /// What the engine would be given to launch `spec`, for a dry run to
    /// show (the EKS engine: the Job manifest); `None` from an engine with
    /// nothing to show, which the default is.
    async fn manifest(&self, spec: &LaunchSpec) -> Result<Option<serde_json::Value>, EngineError> {
        let _ = spec;
        Ok(None)
    }
    /// What the engine knows now of at most [`MAX_TASKS_PER_LOOKUP`] tasks of
    /// `cluster`, for runs whose state change reports may have been lost;
    /// `seen` is now, the time of a state that carries none. `None` from an
    /// engine that reports every change itself (the local engine), which the
    /// default does.
    async fn look_up(
        &self,
        _cluster: &str,
        _task_ids: &[String],
        _seen: DateTime<Utc>,
    ) -> Result<Option<Vec<TaskLookup>>, EngineError> {
        Ok(None)
    }
}

/// Most tasks one [`ExecutionEngine::look_up`] takes (ECS `DescribeTasks`'s
/// limit).
pub const MAX_TASKS_PER_LOOKUP: usize = 100;

/// What an engine knows of one task asked about.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskLookup {
    /// The engine knows the task: its state as an update (`None` when the
    /// state says nothing a run records, such as STOPPING).
    Known {
        /// The task.
        task_id: String,
        /// Its state.
        update: Option<EngineUpdate>,
    },
    /// The engine does not know the task (ECS forgets a stopped task after
    /// about an hour).
    Unknown {
        /// The task.
        task_id: String,
        /// What the engine said.
        reason: String,
    },
}

/// A state change an engine reports for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineUpdate {
    /// The run.
    pub run_id: String,
    /// The attempt.
    pub attempt: u32,
    /// What happened.
    pub change: EngineChange,
    /// The engine's version of the state reported (ECS `detail.version`), if any.
    pub engine_version: Option<u64>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl EngineUpdate {
    /// The run command that records this update.
    pub fn into_command(self) -> RunCommand {
        let Self {
            attempt,
            change,
            at,
            engine_version,
            ..
        } = self;
        match change {
            EngineChange::Submitted { task_id } => RunCommand::RecordLaunched {
                attempt,
                task_id,
                running_on: None,
                limits: None,
                now: at,
            },
            EngineChange::Started { task_id, host } => RunCommand::RecordStarted {
                attempt,
                engine_version,
                task_id,
                host,
                now: at,
            },
            EngineChange::Exited {
                exit_code,
                reason,
                usage,
            } => RunCommand::RecordExited {
                attempt,
                engine_version,
                exit_code,
                reason,
                usage,
                now: at,
            },
            EngineChange::InfrastructureFailure { reason } => {
                RunCommand::RecordInfrastructureFailure {
                    attempt,
                    engine_version,
                    reason,
                    now: at,
                }
            }
            EngineChange::Progress { message } => RunCommand::RecordProgress {
                attempt,
                message,
                now: at,
            },
        }
    }
}

/// The kinds of [`EngineUpdate`].
#[derive(Debug, Clone, PartialEq)]
pub enum EngineChange {
    /// Accepted by the engine, not running yet (PENDING).
    Submitted {
        /// Engine task id.
        task_id: String,
    },
    /// Running.
    Started {
        /// Engine task id.
        task_id: Option<String>,
        /// Host.
        host: Option<String>,
    },
    /// Ended, with the exit code when the command ran.
    Exited {
        /// Exit code.
        exit_code: Option<i64>,
        /// Reason, when there is more to say.
        reason: Option<String>,
        /// What the engine measured of the attempt's processes, when it
        /// measures them.
        usage: Option<crate::domain::usage::Measured>,
    },
    /// The infrastructure failed before the command could run.
    InfrastructureFailure {
        /// What failed.
        reason: String,
    },
    /// A step of getting the attempt ready, while it is PENDING (the image
    /// looked for or pulled, a pull's progress), for the run's timeline.
    Progress {
        /// What happens.
        message: String,
    },
}

/// One page of a run's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// The text.
    pub log: String,
    /// Opaque cursor: pass it back as `last_seen` for the next page.
    pub last_seen: String,
}

/// A log read as it is sent.
pub type LogStream = std::pin::Pin<
    Box<dyn futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>,
>;

/// Which log to read: one attempt of a run (each attempt has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLog<'a> {
    /// The run.
    pub run_id: &'a str,
    /// Its cluster.
    pub cluster: &'a str,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The engine's task of that attempt, once it had one.
    pub task_id: Option<&'a str>,
}

/// Where runs' output can be read.
#[async_trait]
pub trait LogSource: Send + Sync {
    /// The page of `log` after `last_seen` (from the start when `None`).
    async fn page(
        &self,
        log: &AttemptLog<'_>,
        last_seen: Option<&str>,
    ) -> Result<LogPage, LogError>;
    /// The whole of `log`, as chunks of bytes read one after the other, so
    /// that a log of any size is sent in constant memory.
    async fn stream(&self, log: &AttemptLog<'_>) -> Result<LogStream, LogError>;
    /// Where a person can read the run's log in a browser outside Flotilla
    /// (a cloud console), when there is such a place.
    fn link(&self, _run: &Run) -> Option<String> {
        None
    }
}

/// A run's status changed: the event automation subscribes to. Its JSON is
/// the `detail` of "Flotilla Run State Change" events, and its field names are
/// a published schema: add fields, never rename them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunStateChange {
    /// The run.
    pub run_id: String,
    /// Its definition.
    pub definition_id: String,
    /// The definition's alias.
    pub alias: String,
    /// Cluster.
    pub cluster: String,
    /// Owner.
    pub owner: String,
    /// Engine.
    pub engine: Engine,
    /// Status now.
    pub status: crate::domain::run::RunStatus,
    /// Status before the change.
    pub previous_status: Option<crate::domain::run::RunStatus>,
    /// Attempt.
    pub attempt: u32,
    /// Exit code, when ended with one.
    pub exit_code: Option<i64>,
    /// Why it ended or needs a retry.
    pub exit_reason: Option<String>,
    /// Accepted.
    pub queued_at: DateTime<Utc>,
    /// Started.
    pub started_at: Option<DateTime<Utc>>,
    /// Ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The engine's task id.
    pub task_id: Option<String>,
}

impl RunStateChange {
    /// The change that brought `run` to its status from `previous`.
    pub fn of(run: &Run, previous: Option<crate::domain::run::RunStatus>) -> Self {
        Self {
            run_id: run.spec.run_id.clone(),
            definition_id: run.spec.definition_id.clone(),
            alias: run.spec.alias.clone(),
            cluster: run.spec.cluster.clone(),
            owner: run.spec.owner.clone(),
            engine: run.spec.engine,
            status: run.status,
            previous_status: previous,
            attempt: run.attempt,
            exit_code: run.exit_code,
            exit_reason: run.exit_reason.clone(),
            queued_at: run.queued_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            task_id: run.task_id.clone(),
        }
    }
}

/// `source` of every event Flotilla publishes.
pub const EVENT_SOURCE: &str = "flotilla";
/// `detail-type` of a run's state change.
pub const STATE_CHANGE_DETAIL_TYPE: &str = "Flotilla Run State Change";
/// `detail-type` of the event saying a run runs longer than usual.
pub const RUNNING_LONG_DETAIL_TYPE: &str = "Flotilla Run Running Long";

/// A run has run longer than its job usually takes: the event automation
/// and people subscribe to. Its JSON is the `detail` of "Flotilla Run
/// Running Long" events (and the body of `flotilla serve`'s alert webhook);
/// its field names are a published schema: add fields, never rename them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunningLongAlert {
    /// The run.
    pub run_id: String,
    /// Its definition.
    pub definition_id: String,
    /// The definition's alias.
    pub alias: String,
    /// Cluster.
    pub cluster: String,
    /// Owner.
    pub owner: String,
    /// The attempt running long.
    pub attempt: u32,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// Seconds it had run when flagged.
    pub running_s: u64,
    /// Seconds its job's successful runs usually take (their 90th
    /// percentile).
    pub usual_s: u64,
    /// How many successful runs that is taken over.
    pub usual_of_runs: u32,
    /// The sentence its timeline shows.
    pub message: String,
}

/// Publishes run state changes and alerts for automation (an EventBridge
/// bus on AWS; `flotilla serve`'s alert webhook).
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes every change; an error when any was not accepted.
    async fn publish(&self, changes: &[RunStateChange]) -> Result<(), PublishError>;

    /// Publishes that a run runs long; a publisher that carries no alerts
    /// drops it.
    async fn alert(&self, alert: &RunningLongAlert) -> Result<(), PublishError> {
        let _ = alert;
        Ok(())
    }
}

/// Time, injected so tests control it.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told, for tests: every "now" of an [`App`]
/// built with it (and of the adapters sharing it) is this clock's reading.
///
/// [`App`]: crate::app::App
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

#[cfg(any(test, feature = "test-support"))]
impl ManualClock {
    /// A clock reading `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(at))
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
