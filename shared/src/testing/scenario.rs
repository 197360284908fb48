//! Given/when/then scenarios over the run aggregate, and builders for its inputs.
//!
//! ```ignore
//! RunScenario::given([queued()])
//!     .when(RunCommand::RequestStop { by: "me".into(), reason: None, now: t(1) })
//!     .then_statuses(RunStatus::Stopped);
//! ```

use chrono::{DateTime, TimeZone, Utc};

use crate::domain::DomainError;
use crate::domain::EnvVar;
use crate::domain::event::RunEvent;
use crate::domain::run::{Run, RunCommand, RunStatus, decide, replay};
use crate::domain::spec::{Engine, NodeLifecycle, Resources, RunSpec};

/// A fixed instant `seconds` after a fixed origin, for repeatable scenarios.
pub fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0)
        .single()
        .unwrap_or_default()
}

/// A run spec with plausible values.
pub fn spec(run_id: &str) -> RunSpec {
    RunSpec {
        run_id: run_id.to_owned(),
        definition_id: "examples-1".into(),
        alias: "hello".into(),
        group_name: "examples".into(),
        image: "ubuntu:latest".into(),
        repository_credentials: None,
        ports: vec![],
        cluster: "default".into(),
        engine: Engine::Local,
        owner: "tester".into(),
        command: Some("echo hello".into()),
        resources: Resources {
            memory: Some(512),
            ..Resources::default()
        },
        active_deadline_seconds: Some(60),
        env: vec![EnvVar::new("FLOTILLA_RUN_ID", run_id)],
        definition_env: vec![],
        description: "hello".into(),
        node_lifecycle: NodeLifecycle::Spot,
        labels: Default::default(),
        tier: None,
        arch: None,
        service_account: None,
        idempotence_key: None,
        template: None,
        secrets: vec![],
        retry: None,
        resources_note: None,
        lifecycle_note: None,
    }
}

/// `RunQueued` for run `r-1` at `t(0)`.
pub fn queued() -> RunEvent {
    RunEvent::RunQueued {
        spec: Box::new(spec("r-1")),
        at: t(0),
    }
}

/// `RunSubmitted` of `attempt` with task `task-<attempt>`.
pub fn submitted(attempt: u32) -> RunEvent {
    RunEvent::RunSubmitted {
        attempt,
        task_id: format!("task-{attempt}"),
        at: t(1),
    }
}

/// `RunStarted` of `attempt`.
pub fn started(attempt: u32) -> RunEvent {
    RunEvent::RunStarted {
        limits: None,
        engine_version: None,
        attempt,
        task_id: None,
        host: Some("host".into()),
        at: t(2),
    }
}

/// `RunStopped` of `attempt` with `exit_code`.
pub fn stopped(attempt: u32, exit_code: Option<i64>) -> RunEvent {
    RunEvent::RunStopped {
        engine_version: None,
        attempt,
        exit_code,
        reason: None,
        at: t(3),
    }
}

/// `RunNeedsRetry` of `attempt`.
pub fn needs_retry(attempt: u32) -> RunEvent {
    RunEvent::RunNeedsRetry {
        engine_version: None,
        attempt,
        reason: "CannotPullContainerError".into(),
        exit_code: None,
        retry_at: None,
        at: t(3),
    }
}

/// `RequestStop` by `by` at `t(5)`.
pub fn stop(by: &str) -> RunCommand {
    RunCommand::RequestStop {
        by: by.into(),
        reason: None,
        now: t(5),
    }
}

/// `RecordExited` of `attempt` with exit `code` at `t(4)`.
pub fn exited(attempt: u32, code: i64) -> RunCommand {
    RunCommand::RecordExited {
        usage: None,
        engine_version: None,
        attempt,
        exit_code: Some(code),
        reason: None,
        now: t(4),
    }
}

/// `RecordInfrastructureFailure` of `attempt` (an image pull) at `t(4)`.
pub fn infra_failure(attempt: u32) -> RunCommand {
    RunCommand::RecordInfrastructureFailure {
        engine_version: None,
        attempt,
        reason: "CannotPullContainerError: no such image".into(),
        now: t(4),
    }
}

/// `Requeue` allowing `max_attempts` at `t(6)`.
pub fn requeue(max_attempts: u32) -> RunCommand {
    RunCommand::Requeue {
        max_attempts,
        limits: crate::domain::limits::LaunchLimits::Local,
        now: t(6),
    }
}

/// A scenario: a stream's history, then one command.
#[derive(Debug)]
pub struct RunScenario {
    given: Vec<RunEvent>,
}

/// A scenario's outcome, to assert on.
#[derive(Debug)]
pub struct RunOutcome {
    given: Vec<RunEvent>,
    result: Result<Vec<RunEvent>, DomainError>,
}

impl RunScenario {
    /// The stream so far.
    pub fn given(events: impl IntoIterator<Item = RunEvent>) -> Self {
        Self {
            given: events.into_iter().collect(),
        }
    }

    /// Decides `command` on the folded history.
    pub fn when(self, command: RunCommand) -> RunOutcome {
        let state = replay(&self.given);
        RunOutcome {
            result: decide(&state, command),
            given: self.given,
        }
    }
}

impl RunOutcome {
    /// Asserts the exact events produced.
    #[track_caller]
    pub fn then_events(self, expected: impl IntoIterator<Item = RunEvent>) -> Self {
        let expected: Vec<_> = expected.into_iter().collect();
        match &self.result {
            Ok(events) => assert_eq!(events, &expected, "events produced"),
            Err(e) => panic!("expected events {expected:?}, got error {e}"),
        }
        self
    }

    /// Asserts that nothing changes (a duplicate or stale command).
    #[track_caller]
    pub fn then_nothing(self) -> Self {
        self.then_events([])
    }

    /// Asserts the command is refused with `expected`.
    #[track_caller]
    pub fn then_error(self, expected: DomainError) {
        match self.result {
            Ok(events) => panic!("expected error {expected}, got events {events:?}"),
            Err(e) => assert_eq!(e, expected),
        }
    }

    /// The events produced.
    #[track_caller]
    pub fn events(&self) -> Vec<RunEvent> {
        match &self.result {
            Ok(events) => events.clone(),
            Err(e) => panic!("expected events, got error {e}"),
        }
    }

    /// The run after the produced events.
    #[track_caller]
    pub fn run(&self) -> Run {
        let events = match &self.result {
            Ok(events) => events.clone(),
            Err(e) => panic!("expected events, got error {e}"),
        };
        let all: Vec<_> = self.given.iter().chain(events.iter()).cloned().collect();
        match replay(&all).run {
            Some(run) => run,
            None => panic!("the stream holds no run"),
        }
    }

    /// Asserts the status after the produced events.
    #[track_caller]
    pub fn then_status(self, status: RunStatus) -> Self {
        assert_eq!(self.run().status, status, "status after the command");
        self
    }
}
