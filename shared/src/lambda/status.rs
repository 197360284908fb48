//! The `status` function: EventBridge "ECS Task State Change" → run events.
//!
//! An idempotent reconciler: duplicates, late and out-of-order events change
//! nothing (see [`crate::adapters::ecs_events`] and the run aggregate). Events
//! about tasks that are not ours, or about runs that no longer exist, are
//! ignored; only an infrastructure failure of ours is returned as an error, so
//! that Lambda retries the event.

use tracing::{info, warn};

use crate::adapters::ecs_events::{EcsTaskStateChangeEvent, engine_update};
use crate::app::App;
use crate::error::AppError;

/// Handles one event.
pub async fn handle(app: &App, event: EcsTaskStateChangeEvent) -> Result<(), AppError> {
    let Some(update) = engine_update(&event) else {
        info!(event_id = %event.id, task = %event.detail.task_arn, status = %event.detail.last_status, "not a run's task, or nothing new");
        return Ok(());
    };
    let run_id = update.run_id.clone();
    match app.record_engine_update(update).await {
        Ok(run) => {
            info!(run_id = %run_id, status = %run.status, "recorded");
            Ok(())
        }
        Err(AppError::NotFound(missing)) => {
            warn!(run_id = %run_id, missing = %missing, "event for an unknown run; ignored");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
