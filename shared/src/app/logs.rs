//! A run's output: one page at a time, or whole.

use crate::app::App;
use crate::domain::run::Run;
use crate::error::AppError;
use crate::ports::LogPage;

/// Whether `run` has launched, so that its engine may hold a log for it.
fn has_log(run: &Run) -> bool {
    run.task_id.is_some() || run.started_at.is_some()
}

impl App {
    /// One page of a run's log; an empty page before the run has launched.
    pub async fn log_page(
        &self,
        run_id: &str,
        last_seen: Option<&str>,
    ) -> Result<LogPage, AppError> {
        let run = self.run(run_id).await?;
        if !has_log(&run) {
            return Ok(LogPage {
                log: String::new(),
                last_seen: last_seen.unwrap_or_default().to_owned(),
            });
        }
        Ok(self.logs.page(&run, last_seen).await?)
    }

    /// A run's whole log.
    pub async fn log_text(&self, run_id: &str) -> Result<String, AppError> {
        let run = self.run(run_id).await?;
        if !has_log(&run) {
            return Ok(String::new());
        }
        Ok(self.logs.all(&run).await?)
    }
}
