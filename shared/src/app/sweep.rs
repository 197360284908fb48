//! The retry sweep: NEEDS_RETRY runs queued again as a new attempt (or
//! stopped once their attempts are used up), QUEUED runs whose enqueue may
//! have been lost enqueued again, and runs past their deadline stopped. Every
//! step is idempotent, so a sweep may run twice, or crash half-way, safely.

use chrono::Duration;
use tracing::warn;

use crate::app::App;
use crate::domain::query::{RunQuery, RunSortField, SortOrder};
use crate::domain::run::{Run, RunCommand, RunStatus};
use crate::error::AppError;
use crate::ports::RunTicket;

/// What one retry sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickOutcome {
    /// Runs queued again as a new attempt.
    pub requeued: Vec<String>,
    /// Runs that used up their attempts and were stopped.
    pub gave_up: Vec<String>,
    /// QUEUED runs whose ticket was put on the queue again.
    pub reenqueued: Vec<String>,
}

/// The runs in `status`, oldest first: the sweep works a page per tick.
fn oldest_first(status: RunStatus) -> RunQuery {
    RunQuery {
        statuses: vec![status],
        sort_by: RunSortField::QueuedAt,
        order: SortOrder::Asc,
        ..RunQuery::default()
    }
}

impl App {
    /// One retry sweep: NEEDS_RETRY runs are queued again as a new attempt (or
    /// stopped once they used up their attempts), and QUEUED runs accepted
    /// more than `requeue_after` ago get their ticket enqueued again in case
    /// the first enqueue was lost. Enqueueing twice is harmless: submit skips
    /// what is not QUEUED.
    pub async fn retry_tick(&self, requeue_after: Duration) -> Result<TickOutcome, AppError> {
        let mut outcome = TickOutcome::default();
        let needs_retry = self.runs.list(&oldest_first(RunStatus::NeedsRetry)).await?;
        for run in needs_retry.items {
            let run_id = run.spec.run_id.clone();
            let command = RunCommand::Requeue {
                max_attempts: self.settings.max_attempts,
                now: self.now(),
            };
            let run = self.apply(&run_id, command).await?;
            match run.status {
                RunStatus::Queued => {
                    self.enqueue(&run).await?;
                    outcome.requeued.push(run_id);
                }
                RunStatus::Stopped => outcome.gave_up.push(run_id),
                _ => {}
            }
        }
        let stale_before = self.now() - requeue_after;
        let queued = self.runs.list(&oldest_first(RunStatus::Queued)).await?;
        for run in queued.items {
            if run.queued_at < stale_before {
                self.enqueue(&run).await?;
                outcome.reenqueued.push(run.spec.run_id.clone());
            }
        }
        Ok(outcome)
    }

    /// Stops every RUNNING run past its `active_deadline_seconds`: the engine
    /// is told to stop the task and the run ends with a timeout reason. (The
    /// local engine enforces deadlines itself; the AWS retry sweep uses this.)
    pub async fn enforce_deadlines(&self) -> Result<Vec<String>, AppError> {
        let now = self.now();
        let running = self.runs.list(&oldest_first(RunStatus::Running)).await?;
        let mut timed_out = Vec::new();
        for run in running.items {
            let (Some(started), Some(deadline)) =
                (run.started_at, run.spec.active_deadline_seconds)
            else {
                continue;
            };
            // A deadline too far away to add to a time is never reached.
            let limit = i64::try_from(deadline).ok().and_then(Duration::try_seconds);
            if limit.is_none_or(|limit| now - started <= limit) {
                continue;
            }
            let run_id = run.spec.run_id.clone();
            if let Some(task_id) = &run.task_id
                && let Err(error) = self.engine.stop(&run_id, task_id).await
            {
                warn!(run_id = %run_id, error = %error, "could not stop a task past its deadline");
            }
            let command = RunCommand::Abandon {
                reason: format!(
                    "exceeded its active_deadline_seconds ({deadline} s) and was stopped"
                ),
                now,
            };
            self.apply(&run_id, command).await?;
            timed_out.push(run_id);
        }
        Ok(timed_out)
    }

    async fn enqueue(&self, run: &Run) -> Result<(), AppError> {
        self.queue
            .enqueue(&RunTicket::of(run))
            .await
            .map_err(|e| AppError::internal(crate::error::Dependency::Queue, e))
    }
}
