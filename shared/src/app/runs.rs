//! Runs as their owners see them: one run, lists, a run's timeline, and
//! stopping a run.

use tracing::warn;

use crate::app::App;
use crate::domain::identity::Caller;
use crate::domain::query::{Page, RunQuery};
use crate::domain::run::{Run, RunCommand, RunStatus};
use crate::error::{Act, AppError, Missing, Refusal};
use crate::ports::RecordedEvent;

impl App {
    /// One run.
    pub async fn run(&self, run_id: &str) -> Result<Run, AppError> {
        self.run_with_version(run_id).await.map(|(run, _)| run)
    }

    /// One run with the version of its stream (which changes whenever the
    /// run does, so it makes an exact ETag).
    pub async fn run_with_version(&self, run_id: &str) -> Result<(Run, u64), AppError> {
        let state = self.runs.get(run_id).await?;
        let version = state.version;
        state
            .run
            .map(|run| (run, version))
            .ok_or_else(|| AppError::NotFound(Missing::Run(run_id.to_owned())))
    }

    /// Runs matching a query.
    pub async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run>, AppError> {
        Ok(self.runs.list(query).await?)
    }

    /// A run's event stream.
    pub async fn run_events(&self, run_id: &str) -> Result<Vec<RecordedEvent>, AppError> {
        let events = self.runs.load(run_id).await?;
        if events.is_empty() {
            return Err(AppError::NotFound(Missing::Run(run_id.to_owned())));
        }
        Ok(events)
    }

    /// Stops a run: a QUEUED run ends at once; a launched one is signalled and
    /// ends when its engine reports it gone. Stopping a stopped run changes
    /// nothing.
    /// Stops a run for `caller`: only its owner, or an admin, may.
    pub async fn stop_as(&self, run_id: &str, by: &str, caller: &Caller) -> Result<Run, AppError> {
        if let Some(name) = caller.name() {
            let run = self.run(run_id).await?;
            if !caller.may_act_for(Some(&run.spec.owner)) {
                return Err(AppError::NotOwner(Refusal {
                    caller: name.to_owned(),
                    owner: run.spec.owner,
                    act: Act::StopRun(run_id.to_owned()),
                }));
            }
        }
        self.stop(run_id, by).await
    }

    /// Stops a run (the server's own stop, at shutdown; see [`Self::stop_as`]).
    pub async fn stop(&self, run_id: &str, by: &str) -> Result<Run, AppError> {
        let command = RunCommand::RequestStop {
            by: by.to_owned(),
            reason: None,
            now: self.now(),
        };
        let run = self.apply(run_id, command).await?;
        if matches!(run.status, RunStatus::Pending | RunStatus::Running)
            && let Some(task_id) = &run.task_id
            && let Err(error) = self.engine.stop(run_id, task_id).await
        {
            warn!(run_id = %run_id, error = %error, "engine could not stop the task");
            return Err(error.into());
        }
        Ok(run)
    }
}
