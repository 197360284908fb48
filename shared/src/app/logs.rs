//! A run's output, one attempt at a time (each attempt has its own log):
//! a page at a time, or whole. The current attempt unless another is asked for.

use crate::app::App;
use crate::domain::ValidationError;
use crate::domain::event::RunEvent;
use crate::domain::run::Run;
use crate::error::AppError;
use crate::ports::{AttemptLog, LogPage, LogStream};

impl App {
    /// Attempt `attempt` of `run` (the current one when `None`) and the
    /// engine task it had, or what to ask for instead.
    async fn attempt_task(
        &self,
        run: &Run,
        attempt: Option<u32>,
    ) -> Result<(u32, Option<String>), AppError> {
        let current = run.attempt;
        let wanted = attempt.unwrap_or(current);
        if wanted == 0 || wanted > current {
            return Err(ValidationError::new(format!(
                "attempt {wanted} does not exist: run {} has attempts 1 to {current}",
                run.spec.run_id
            ))
            .into());
        }
        if wanted == current {
            let launched = run.task_id.is_some() || run.started_at.is_some();
            return Ok((wanted, run.task_id.clone().filter(|_| launched)));
        }
        let events = self.runs.load(&run.spec.run_id).await?;
        let task = events.iter().rev().find_map(|e| match &e.event {
            RunEvent::RunSubmitted {
                attempt, task_id, ..
            } if *attempt == wanted => Some(task_id.clone()),
            RunEvent::RunStarted {
                attempt,
                task_id: Some(task_id),
                ..
            } if *attempt == wanted => Some(task_id.clone()),
            _ => None,
        });
        Ok((wanted, task))
    }

    /// One page of attempt `attempt`'s log (the current attempt's when
    /// `None`); an empty page before the attempt has launched.
    pub async fn log_page(
        &self,
        run_id: &str,
        attempt: Option<u32>,
        last_seen: Option<&str>,
    ) -> Result<LogPage, AppError> {
        let run = self.run(run_id).await?;
        let (attempt, task_id) = self.attempt_task(&run, attempt).await?;
        if task_id.is_none() && run.attempt == attempt && run.started_at.is_none() {
            return Ok(LogPage {
                log: String::new(),
                last_seen: last_seen.unwrap_or_default().to_owned(),
            });
        }
        let log = AttemptLog {
            run_id,
            cluster: &run.spec.cluster,
            attempt,
            task_id: task_id.as_deref(),
        };
        Ok(self.logs.page(&log, last_seen).await?)
    }

    /// Attempt `attempt`'s whole log (the current attempt's when `None`),
    /// as it is read.
    pub async fn log_stream(
        &self,
        run_id: &str,
        attempt: Option<u32>,
    ) -> Result<LogStream, AppError> {
        let run = self.run(run_id).await?;
        let (attempt, task_id) = self.attempt_task(&run, attempt).await?;
        let log = AttemptLog {
            run_id,
            cluster: &run.spec.cluster,
            attempt,
            task_id: task_id.as_deref(),
        };
        Ok(self.logs.stream(&log).await?)
    }
}
