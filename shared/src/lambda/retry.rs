//! The `retry` function: one sweep per scheduled tick.
//!
//! NEEDS_RETRY runs are queued again as a new attempt (or stopped once they
//! used up their attempts), QUEUED runs older than the configured minutes are
//! enqueued again (an enqueue lost after the append), and RUNNING runs past
//! their `active_deadline_seconds` are stopped with a timeout reason.

use serde::Serialize;

use crate::app::App;
use crate::error::AppError;

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tick {
    /// Runs queued again as a new attempt.
    pub requeued: Vec<String>,
    /// Runs stopped after their last attempt.
    pub gave_up: Vec<String>,
    /// QUEUED runs enqueued again.
    pub reenqueued: Vec<String>,
    /// Runs stopped at their deadline.
    pub timed_out: Vec<String>,
}

/// Runs one sweep, at the app's clock's now.
pub async fn tick(app: &App, requeue_after_minutes: u32) -> Result<Tick, AppError> {
    let requeue_after = chrono::Duration::minutes(i64::from(requeue_after_minutes));
    let swept = app.retry_tick(requeue_after).await?;
    let timed_out = app.enforce_deadlines().await?;
    Ok(Tick {
        requeued: swept.requeued,
        gave_up: swept.gave_up,
        reenqueued: swept.reenqueued,
        timed_out,
    })
}
