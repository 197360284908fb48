//! The `retry` function: one sweep per scheduled tick.
//!
//! NEEDS_RETRY runs are queued again as a new attempt (or stopped once they
//! used up their attempts); QUEUED runs whose ticket waited longer than the
//! configured minutes are enqueued again, once per such interval (an enqueue
//! lost after the append); PENDING and RUNNING runs with no event for the
//! reconcile minutes are looked up with ECS `DescribeTasks` and what ECS says
//! is recorded (a state change event lost); RUNNING runs past their
//! `active_deadline_seconds` are stopped with a timeout reason; RUNNING
//! runs longer than their job usually takes are flagged (and a `Flotilla
//! Run Running Long` event put on the bus); and the schedules due are
//! fired, each fire once (its schedules' times have a minute's
//! resolution here).
//!
//! With feature `eks`, [`tick_with_kubernetes`] then reads every
//! registered Kubernetes cluster ([`crate::adapters::eks::reconcile`]):
//! their pods' states, events and logs, listed, then watched for the rest
//! of the invocation.
//!
//! Each step pages through all its runs and goes on past a run it cannot
//! handle. The tick then answers with an error naming what failed, so the
//! function's Errors alarm sees it; those runs are due again next tick.

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
    /// Runs whose state ECS's answer changed.
    pub reconciled: Vec<String>,
    /// Runs stopped because ECS no longer knows their task.
    pub lost: Vec<String>,
    /// Runs stopped at their deadline.
    pub timed_out: Vec<String>,
    /// Runs flagged as running longer than their job usually takes.
    pub running_long: Vec<String>,
    /// Schedules' fires launched: `<schedule id> <fire time> -> <run id>`.
    pub scheduled: Vec<String>,
    /// Schedules' fires that launched no run, and why.
    pub schedule_refused: Vec<String>,
    /// Capped clusters whose count of held slots was set right from their
    /// runs: `<cluster>: <from> -> <to>`.
    pub slots_repaired: Vec<String>,
    /// Pod states and events of Kubernetes clusters that changed a run.
    pub pods_recorded: usize,
    /// Logs of ended pods archived to S3.
    pub logs_archived: usize,
    /// What failed, one line each; due again next tick.
    pub failed: Vec<String>,
}

/// A tick that could not handle every run it was due for.
#[derive(Debug, thiserror::Error)]
#[error("the sweep could not handle {} of its runs (first: {}); they are due again next tick", .0.failed.len(), .0.failed.first().map_or("", String::as_str))]
pub struct SweepIncomplete(pub Box<Tick>);

impl Tick {
    /// The tick, or an error naming what failed when anything did.
    pub fn into_result(self) -> Result<Self, SweepIncomplete> {
        if self.failed.is_empty() {
            Ok(self)
        } else {
            Err(SweepIncomplete(Box::new(self)))
        }
    }
}

/// The sweep's intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// Minutes a QUEUED run's ticket waits before it is sent again.
    pub requeue_after_minutes: u32,
    /// Minutes without an event before a PENDING or RUNNING run's task is
    /// looked up.
    pub reconcile_after_minutes: u32,
}

impl From<&super::Config> for Intervals {
    fn from(config: &super::Config) -> Self {
        Self {
            requeue_after_minutes: config.requeue_after_minutes,
            reconcile_after_minutes: config.reconcile_after_minutes,
        }
    }
}

/// Runs one sweep, at the app's clock's now.
pub async fn tick(app: &App, intervals: Intervals) -> Result<Tick, AppError> {
    let minutes = |m: u32| chrono::Duration::minutes(i64::from(m));
    let swept = app
        .retry_tick(minutes(intervals.requeue_after_minutes))
        .await?;
    let reconciled = app
        .reconcile(minutes(intervals.reconcile_after_minutes))
        .await?;
    let (timed_out, deadline_failures) = app.enforce_deadlines().await?;
    let (running_long, long_failures) = app.flag_long_runs().await?;
    let fired = app.fire_due_schedules().await?;
    let mut failed = swept.failed;
    failed.extend(reconciled.failed);
    failed.extend(deadline_failures);
    failed.extend(long_failures);
    failed.extend(fired.failed);
    Ok(Tick {
        requeued: swept.requeued,
        gave_up: swept.gave_up,
        reenqueued: swept.reenqueued,
        reconciled: reconciled.recorded,
        lost: reconciled.lost,
        timed_out,
        running_long,
        scheduled: fired.fired,
        schedule_refused: fired.refused,
        slots_repaired: swept.slots_repaired,
        pods_recorded: 0,
        logs_archived: 0,
        failed,
    })
}

/// [`tick`], then one pass over the registered Kubernetes clusters,
/// watching their pods for at most `watch_for` once listed. A cluster that
/// cannot be read fails the tick, naming it.
#[cfg(feature = "eks")]
pub async fn tick_with_kubernetes(
    app: &App,
    intervals: Intervals,
    eks: &crate::lambda::EksParts,
    watch_for: std::time::Duration,
) -> Result<Tick, AppError> {
    let mut swept = tick(app, intervals).await?;
    let pass = crate::adapters::eks::reconcile::reconcile(
        app,
        eks.connect.as_ref(),
        eks.archive.as_ref(),
        watch_for,
    )
    .await?;
    swept.pods_recorded = pass.recorded;
    swept.logs_archived = pass.archived;
    swept.failed.extend(pass.failed);
    Ok(swept)
}
