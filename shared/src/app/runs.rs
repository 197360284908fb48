//! Runs as their owners see them: one run, lists, a run's timeline, and
//! stopping a run.

use tracing::warn;

use crate::app::App;
use crate::domain::cluster::ClusterStatus;
use crate::domain::identity::Caller;
use crate::domain::query::{Page, Paging, RunQuery};
use crate::domain::run::{
    Capacity, Run, RunCommand, RunStatus, START_RATE_SAMPLE, START_RATE_WINDOW_MINUTES,
    estimated_start,
};
use crate::error::{Act, AppError, Missing, Refusal};
use crate::ports::RecordedEvent;

/// Where a run that waits stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Why it waits.
    pub reason: String,
    /// Since when.
    pub since: chrono::DateTime<chrono::Utc>,
    /// A QUEUED run's place in its cluster's queue, 1 being next.
    pub queue_position: Option<u64>,
    /// When a QUEUED run may start at its cluster's recent start rate,
    /// when it has one.
    pub estimated_start: Option<chrono::DateTime<chrono::Utc>>,
}

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

    /// What holds QUEUED runs of `cluster` back: its status when not
    /// active, its cap and the slots held, and the server's parallelism and the runs it has launched.
    pub async fn capacity(&self, cluster: &str) -> Result<Capacity, AppError> {
        let gate = self.cluster_gate(cluster).await?;
        let cluster_inactive = (gate.status != ClusterStatus::Active).then_some(gate.status);
        let cluster_cap = match gate.cap {
            Some(cap) => Some((cap, self.runs.slots_held(cluster).await?)),
            None => None,
        };
        let parallelism = match self.settings.parallelism {
            Some(parallelism) => {
                let launched = self
                    .runs
                    .list(&RunQuery {
                        statuses: vec![RunStatus::Pending, RunStatus::Running],
                        paging: Paging {
                            limit: 1,
                            offset: 0,
                        },
                        ..RunQuery::default()
                    })
                    .await?
                    .total;
                Some((parallelism as u64, launched))
            }
            None => None,
        };
        Ok(Capacity {
            cluster_inactive,
            cluster_cap,
            parallelism,
        })
    }

    /// Where a run that does not run yet stands: why it waits and since
    /// when, and for a QUEUED run its place in its cluster's queue (1 is
    /// next), from one index range counted, and when it may start at its
    /// cluster's recent start rate (its newest starts, one index range read).
    pub async fn waiting(&self, run: &Run) -> Result<Option<Waiting>, AppError> {
        let capacity = match run.status {
            RunStatus::Queued => self.capacity(&run.spec.cluster).await?,
            _ => Capacity::default(),
        };
        let Some((reason, since)) = run.waiting_for(&capacity) else {
            return Ok(None);
        };
        let queue_position = match run.status {
            RunStatus::Queued => self.runs.queued_ahead(run).await?.map(|ahead| ahead + 1),
            _ => None,
        };
        let estimated_start = match queue_position {
            // A cluster that launches nothing now has no rate to go by.
            Some(position) if capacity.cluster_inactive.is_none() => {
                let now = self.now();
                let since = now - chrono::Duration::minutes(START_RATE_WINDOW_MINUTES);
                let starts = self
                    .runs
                    .recent_starts(&run.spec.cluster, since, START_RATE_SAMPLE)
                    .await?;
                estimated_start(position, &starts, now)
            }
            _ => None,
        };
        Ok(Some(Waiting {
            reason,
            since,
            queue_position,
            estimated_start,
        }))
    }

    /// A hint to ask for less memory, when the last successful runs of
    /// `run`'s job used far less than they asked for. A hint that cannot be
    /// read is logged and left out: the run reads the same without it.
    pub async fn sizing_hint(&self, run: &Run) -> Option<String> {
        let job = crate::domain::learning::JobKey::of(&run.spec)?;
        match self.lessons.learned(&job).await {
            Ok(learned) => learned.sizing_hint(),
            Err(error) => {
                tracing::warn!(run_id = %run.spec.run_id, error = %error, "could not read the job's history for a sizing hint");
                None
            }
        }
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
            && let Err(error) = self.engine.stop(&run.spec.cluster, run_id, task_id).await
        {
            warn!(run_id = %run_id, error = %error, "engine could not stop the task");
            return Err(error.into());
        }
        Ok(run)
    }
}
