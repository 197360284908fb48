//! A test [`App`] (feature `embedded`): the real use cases over SQLite in a
//! temporary directory, on a [`ManualClock`], with a [`RecordingEngine`] that
//! records every launch and stop and can be told how to answer (or to wait),
//! a queue that can be told to lose an enqueue, and a run store that can be
//! told to let another writer in just before the next append. No binary, no
//! network: a use case runs in milliseconds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::adapters::local::LocalLogs;
use crate::adapters::sqlite::SqliteStore;
use crate::app::{App, AppSettings, Runtime, SubmitOutcome};
use crate::domain::definition::{Definition, DefinitionInput};
use crate::domain::event::RunEvent;
use crate::domain::launch::{DEFAULT_OWNER_VAR, LaunchRequest, RunTags};
use crate::domain::query::{Page, RunQuery};
use crate::domain::run::{Run, RunCommand, RunState, decide, evolve};
use crate::domain::spec::Engine;
use crate::error::{AppError, EngineError, StoreError};
use crate::ports::{
    Clock, ExecutionEngine, LaunchSpec, Launched, ManualClock, RecordedEvent, RunQueue, RunStore,
    RunTicket, TaskLookup,
};
use crate::testing::scenario::t;

/// How the [`RecordingEngine`] answers a launch.
#[derive(Debug, Clone, PartialEq)]
pub enum LaunchAnswer {
    /// Accepted as task `task-<n>`; running on the host when given.
    Accept {
        /// The host it runs on, when the engine knows at once (as the local engine does).
        running_on: Option<String>,
    },
    /// Refused for now.
    Retryable(String),
    /// Refused for good.
    Permanent(String),
}

/// An engine that records what it is asked and answers as told.
#[derive(Default)]
pub struct RecordingEngine {
    answers: Mutex<VecDeque<LaunchAnswer>>,
    launches: Mutex<Vec<LaunchSpec>>,
    stops: Mutex<Vec<(String, String)>>,
    lookups: Mutex<std::collections::HashMap<String, TaskLookup>>,
    looked_up: Mutex<Vec<(String, usize)>>,
    hold: AtomicBool,
    entered: Notify,
    release: Notify,
}

impl RecordingEngine {
    /// Answers the next launch with `answer` (after those already queued);
    /// without any, a launch is accepted running on `host-1`.
    pub fn answer(&self, answer: LaunchAnswer) {
        lock(&self.answers).push_back(answer);
    }

    /// Makes the next launch wait inside the engine until [`Self::resume`].
    pub fn hold_next_launch(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    /// Waits until a held launch is inside the engine.
    pub async fn launch_started(&self) {
        self.entered.notified().await;
    }

    /// Lets a held launch finish.
    pub fn resume(&self) {
        self.release.notify_one();
    }

    /// Every launch asked for, in order.
    pub fn launches(&self) -> Vec<LaunchSpec> {
        lock(&self.launches).clone()
    }

    /// Answers a lookup of `task_id` with `lookup`; a task without an answer
    /// is known and says nothing new.
    pub fn on_look_up(&self, task_id: &str, lookup: TaskLookup) {
        lock(&self.lookups).insert(task_id.to_owned(), lookup);
    }

    /// Every lookup asked for: its cluster and how many tasks.
    pub fn lookups(&self) -> Vec<(String, usize)> {
        lock(&self.looked_up).clone()
    }

    /// Every `(run_id, task_id)` asked to stop, in order.
    pub fn stops(&self) -> Vec<(String, String)> {
        lock(&self.stops).clone()
    }
}

#[async_trait]
impl ExecutionEngine for RecordingEngine {
    async fn launch(&self, spec: &LaunchSpec) -> Result<Launched, EngineError> {
        if self.hold.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        let number = {
            let mut launches = lock(&self.launches);
            launches.push(spec.clone());
            launches.len()
        };
        let answer = lock(&self.answers)
            .pop_front()
            .unwrap_or(LaunchAnswer::Accept {
                running_on: Some("host-1".into()),
            });
        match answer {
            LaunchAnswer::Accept { running_on } => Ok(Launched {
                limits: None,
                task_id: format!("task-{number}"),
                running_on,
            }),
            LaunchAnswer::Retryable(message) => Err(EngineError::Retryable {
                message,
                source: None,
            }),
            LaunchAnswer::Permanent(message) => Err(EngineError::Permanent {
                message,
                source: None,
            }),
        }
    }

    async fn stop(&self, _cluster: &str, run_id: &str, task_id: &str) -> Result<(), EngineError> {
        lock(&self.stops).push((run_id.to_owned(), task_id.to_owned()));
        Ok(())
    }

    async fn look_up(
        &self,
        cluster: &str,
        task_ids: &[String],
        _seen: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Vec<TaskLookup>>, EngineError> {
        lock(&self.looked_up).push((cluster.to_owned(), task_ids.len()));
        let answers = lock(&self.lookups);
        Ok(Some(
            task_ids
                .iter()
                .map(|task_id| {
                    answers
                        .get(task_id)
                        .cloned()
                        .unwrap_or_else(|| TaskLookup::Known {
                            task_id: task_id.clone(),
                            update: None,
                        })
                })
                .collect(),
        ))
    }
}

/// The SQLite queue, which can be told to lose the next enqueue (as an SQS
/// call that fails after the run was recorded).
pub struct FlakyQueue {
    inner: SqliteStore,
    lose_next: AtomicBool,
}

impl FlakyQueue {
    /// Makes the next enqueue fail.
    pub fn lose_next_enqueue(&self) {
        self.lose_next.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl RunQueue for FlakyQueue {
    async fn enqueue_after(
        &self,
        ticket: &RunTicket,
        delay: std::time::Duration,
    ) -> Result<(), StoreError> {
        if self.lose_next.swap(false, Ordering::SeqCst) {
            return Err(StoreError::backend("the queue is unreachable (as told)"));
        }
        self.inner.enqueue_after(ticket, delay).await
    }
}

/// The SQLite run store, counting appends, which can be told to let another
/// writer's command in just before the next append (so that append loses
/// the race).
pub struct RacingStore {
    inner: SqliteStore,
    appends: AtomicUsize,
    cut_in: Mutex<Option<RunCommand>>,
}

impl RacingStore {
    /// Before the next append to a run, `command` is decided and appended to
    /// that run by another writer.
    pub fn cut_in_before_next_append(&self, command: RunCommand) {
        *lock(&self.cut_in) = Some(command);
    }

    /// Appends made so far (the cut-in's included).
    pub fn appends(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl RunStore for RacingStore {
    async fn append(
        &self,
        run_id: &str,
        expected: u64,
        events: &[RunEvent],
        projection: &Run,
    ) -> Result<u64, StoreError> {
        let cut_in = lock(&self.cut_in).take();
        if let Some(command) = cut_in {
            let state = self.inner.get(run_id).await?;
            let theirs = decide(&state, command)
                .unwrap_or_else(|e| panic!("the cut-in command is refused: {e}"));
            let version = state.version;
            let run = theirs
                .iter()
                .fold(state, evolve)
                .run
                .unwrap_or_else(|| panic!("the cut-in needs an existing run"));
            self.inner.append(run_id, version, &theirs, &run).await?;
            self.appends.fetch_add(1, Ordering::SeqCst);
        }
        let version = self
            .inner
            .append(run_id, expected, events, projection)
            .await?;
        self.appends.fetch_add(1, Ordering::SeqCst);
        Ok(version)
    }

    async fn tallies(
        &self,
        by: crate::domain::insights::Dimension,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<crate::domain::insights::DayTally>, StoreError> {
        self.inner.tallies(by, from, to).await
    }

    async fn load(&self, run_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.load(run_id).await
    }

    async fn get(&self, run_id: &str) -> Result<RunState, StoreError> {
        self.inner.get(run_id).await
    }

    async fn list(&self, query: &RunQuery) -> Result<Page<Run>, StoreError> {
        self.inner.list(query).await
    }

    async fn queued_ahead(&self, run: &Run) -> Result<Option<u64>, StoreError> {
        self.inner.queued_ahead(run).await
    }

    async fn recent_starts(
        &self,
        cluster: &str,
        since: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<chrono::DateTime<chrono::Utc>>, StoreError> {
        self.inner.recent_starts(cluster, since, limit).await
    }
}

/// An [`App`] over SQLite in a temporary directory, with its doubles at hand.
pub struct TestApp {
    /// The use cases.
    pub app: Arc<App>,
    /// The SQLite store behind every port (and its queue).
    pub store: SqliteStore,
    /// The clock every "now" comes from; it starts at [`t`]`(0)`.
    pub clock: Arc<ManualClock>,
    /// The engine.
    pub engine: Arc<RecordingEngine>,
    /// The queue.
    pub queue: Arc<FlakyQueue>,
    /// The run store.
    pub runs: Arc<RacingStore>,
    _dir: tempfile::TempDir,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn must<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

impl TestApp {
    /// A fresh app allowing 3 attempts per run.
    pub fn new() -> Self {
        Self::with_max_attempts(3)
    }

    /// A fresh app allowing `max_attempts` attempts per run.
    pub fn with_max_attempts(max_attempts: u32) -> Self {
        let dir = must(tempfile::tempdir(), "temporary directory");
        let clock = Arc::new(ManualClock::at(t(0)));
        let store = must(
            SqliteStore::open(&dir.path().join("flotilla.db"), clock.clone()),
            "open SQLite",
        );
        let engine = Arc::new(RecordingEngine::default());
        let queue = Arc::new(FlakyQueue {
            inner: store.clone(),
            lose_next: AtomicBool::new(false),
        });
        let runs = Arc::new(RacingStore {
            inner: store.clone(),
            appends: AtomicUsize::new(0),
            cut_in: Mutex::new(None),
        });
        let runtime = Runtime {
            queue: queue.clone(),
            engine: engine.clone(),
            logs: Arc::new(LocalLogs::new(dir.path().join("runs"))),
            clock: clock.clone(),
            publisher: None,
            tokens: None,
        };
        let settings = AppSettings {
            engine: Engine::Local,
            server_mode: "test".into(),
            owner_var: DEFAULT_OWNER_VAR.into(),
            default_cluster: "default".into(),
            requires_command: true,
            max_attempts,
            max_memory: Some(4096),
            clusters: vec![],
            add_cluster_hint: String::new(),
            launch_limits: crate::domain::limits::LaunchLimits::Local,
            parallelism: None,
            kubernetes_clusters: false,
            prices: crate::domain::usage::PriceTable::fargate(),
            region: "us-east-1".into(),
            long_run_minimum: chrono::Duration::minutes(5),
        };
        let mut app = App::new(Arc::new(store.clone()), runtime, settings);
        app.runs = runs.clone();
        Self {
            app: Arc::new(app),
            store,
            clock,
            engine,
            queue,
            runs,
            _dir: dir,
        }
    }

    /// Defines `alias`, running `command`.
    pub async fn define(&self, alias: &str, command: &str) -> Definition {
        let input = DefinitionInput {
            alias: Some(alias.into()),
            group_name: Some("tests".into()),
            image: Some("ubuntu:latest".into()),
            command: Some(command.into()),
            ..DefinitionInput::default()
        };
        must(
            self.app
                .create_definition(input, &crate::domain::identity::Caller::Anyone)
                .await,
            "define",
        )
    }

    /// An execute request owned by `owner`.
    pub fn request(owner: &str) -> LaunchRequest {
        LaunchRequest {
            run_tags: Some(RunTags {
                owner_id: Some(owner.into()),
                ..RunTags::default()
            }),
            ..LaunchRequest::default()
        }
    }

    /// Executes `alias` with `request`.
    pub async fn execute_with(&self, alias: &str, request: LaunchRequest) -> Result<Run, AppError> {
        self.app
            .execute(
                crate::app::DefinitionRef::Alias(alias),
                crate::domain::launch::OwnerRule::OwnerId,
                request,
                &crate::domain::identity::Caller::Anyone,
            )
            .await
    }

    /// Executes `alias` as `tester`.
    pub async fn execute(&self, alias: &str) -> Run {
        must(
            self.execute_with(alias, Self::request("tester")).await,
            "execute",
        )
    }

    /// Takes the next ticket off the queue and submits it, as the local
    /// driver or the submit function does; `None` when the queue is empty.
    pub async fn submit_next(&self) -> Option<SubmitOutcome> {
        let claimed = must(self.store.claim(None, self.clock.now(), &[]).await, "claim")?;
        let outcome = must(self.app.submit(&claimed.ticket).await, "submit");
        must(self.store.ack(claimed.seq).await, "ack");
        Some(outcome)
    }

    /// Tickets on the queue.
    pub async fn queued_tickets(&self) -> u64 {
        must(self.store.queue_len().await, "queue length")
    }

    /// The run now.
    pub async fn run(&self, run_id: &str) -> Run {
        must(self.app.run(run_id).await, "read the run")
    }

    /// The run's stored event names, in order.
    pub async fn event_names(&self, run_id: &str) -> Vec<&'static str> {
        must(self.app.run_events(run_id).await, "read the events")
            .iter()
            .map(|e| e.event.name())
            .collect()
    }

    /// Every run stored.
    pub async fn all_runs(&self) -> Vec<Run> {
        let query = RunQuery::default();
        must(self.app.list_runs(&query).await, "list runs").items
    }
}

impl Default for TestApp {
    fn default() -> Self {
        Self::new()
    }
}
