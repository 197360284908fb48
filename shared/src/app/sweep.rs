//! The retry sweep: NEEDS_RETRY runs queued again as a new attempt (or
//! stopped once their attempts are used up), QUEUED runs whose ticket may
//! have been lost enqueued again, PENDING and RUNNING runs that heard nothing
//! for a while looked up in the engine, runs past their deadline stopped, and
//! runs that run longer than their job usually takes flagged.
//!
//! Every step is idempotent, so a sweep may run twice, or crash half-way,
//! safely. Each step pages through every run it is due for, oldest first (no
//! cap on how many), and a run that fails is counted and left for the next
//! sweep while the sweep goes on.
//!
//! A QUEUED run is enqueued again at most once per interval: the sweep
//! records `RunReenqueued` first and enqueues after, and a run whose ticket
//! was put on the queue (first, or requeued, or re-enqueued) within the
//! interval is not due. A crash between the two leaves the run due again one
//! interval later. Runs of a cluster that launches nothing now (in
//! maintenance, offline, or at its cap) are not due: their tickets go round
//! the queue until it launches again.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use tracing::{error, warn};

use crate::app::App;
use crate::domain::query::{Paging, RunQuery, RunSortField, SortOrder, TimeRange};
use crate::domain::run::{Run, RunCommand, RunStatus};
use crate::error::AppError;
use crate::ports::{MAX_TASKS_PER_LOOKUP, RunTicket, TaskLookup};

/// Runs read per page by the sweep.
pub const SWEEP_PAGE: u64 = MAX_TASKS_PER_LOOKUP as u64;

/// What one retry sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickOutcome {
    /// Runs queued again as a new attempt.
    pub requeued: Vec<String>,
    /// Runs that used up their attempts and were stopped.
    pub gave_up: Vec<String>,
    /// QUEUED runs whose ticket was put on the queue again.
    pub reenqueued: Vec<String>,
    /// What the sweep could not do, one line each (run id and error); those
    /// runs are due again next sweep.
    pub failed: Vec<String>,
    /// Capped clusters whose count of held slots disagreed with their runs
    /// and was set right: `<cluster>: <from> -> <to>`.
    pub slots_repaired: Vec<String>,
}

/// What one reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileOutcome {
    /// Runs whose state the engine's answer changed.
    pub recorded: Vec<String>,
    /// Runs stopped because the engine no longer knows their task.
    pub lost: Vec<String>,
    /// What could not be done, one line each.
    pub failed: Vec<String>,
}

/// Pages through the runs in `statuses` queued before `queued_before`,
/// oldest first.
struct Pages {
    query: RunQuery,
    done: bool,
}

impl Pages {
    fn new(statuses: &[RunStatus], queued_before: Option<DateTime<Utc>>) -> Self {
        Self {
            query: RunQuery {
                statuses: statuses.to_vec(),
                queued_at: TimeRange {
                    since: None,
                    until: queued_before,
                },
                sort_by: RunSortField::QueuedAt,
                order: SortOrder::Asc,
                paging: Paging {
                    limit: SWEEP_PAGE,
                    offset: 0,
                },
                ..RunQuery::default()
            },
            done: false,
        }
    }

    /// The next page, or `None` after the last.
    async fn next(&mut self, app: &App) -> Result<Option<Vec<Run>>, AppError> {
        if self.done {
            return Ok(None);
        }
        let page = app.runs.list(&self.query).await?;
        // A store may stop a page short of its limit at its read budget, and
        // then says where to resume.
        let resume = page.resume_after.clone().or_else(|| {
            (page.items.len() as u64 >= self.query.paging.limit)
                .then(|| page.items.last().map(|run| self.query.key_of(run)))
                .flatten()
        });
        match resume {
            Some(cursor) if self.query.after.as_ref() != Some(&cursor) => {
                self.query.after = Some(cursor);
            }
            _ => self.done = true,
        }
        Ok(Some(page.items))
    }
}

impl App {
    /// One retry sweep: NEEDS_RETRY runs are queued again as a new attempt (or
    /// stopped once they used up their attempts), and QUEUED runs whose ticket
    /// was put on the queue more than `requeue_after` ago get it enqueued
    /// again in case it was lost, once per `requeue_after`. Enqueueing twice
    /// is harmless: submit skips what is not QUEUED.
    pub async fn retry_tick(&self, requeue_after: Duration) -> Result<TickOutcome, AppError> {
        let mut outcome = TickOutcome::default();
        let mut pages = Pages::new(&[RunStatus::NeedsRetry], None);
        while let Some(runs) = next_or_note(&mut pages, self, &mut outcome.failed).await {
            for run in runs {
                let run_id = run.spec.run_id.clone();
                match self.requeue(&run_id).await {
                    Ok(Some(RunStatus::Queued)) => outcome.requeued.push(run_id),
                    Ok(Some(RunStatus::Stopped)) => outcome.gave_up.push(run_id),
                    Ok(_) => {}
                    Err(e) => note(&mut outcome.failed, &run_id, &e),
                }
            }
        }
        self.repair_slots(&mut outcome).await;
        let stale_before = self.now() - requeue_after;
        // The tickets of a cluster that launches nothing now go round its
        // queue (put back by submit each time they come up) and are not
        // lost: they get no more until it launches again.
        let held = match self.clusters_held(&HashMap::new()).await {
            Ok(held) => held,
            Err(e) => {
                outcome
                    .failed
                    .push(format!("the clusters' status and caps: {e}"));
                Vec::new()
            }
        };
        // A ticket is never older than its run: runs queued since
        // `stale_before` cannot be due.
        let mut pages = Pages::new(&[RunStatus::Queued], Some(stale_before));
        while let Some(runs) = next_or_note(&mut pages, self, &mut outcome.failed).await {
            for run in runs {
                if run.last_enqueued_at() >= stale_before || held.contains(&run.spec.cluster) {
                    continue;
                }
                let run_id = run.spec.run_id.clone();
                match self.reenqueue(&run, stale_before).await {
                    Ok(true) => outcome.reenqueued.push(run_id),
                    Ok(false) => {}
                    Err(e) => note(&mut outcome.failed, &run_id, &e),
                }
            }
        }
        Ok(outcome)
    }

    /// Sets each capped cluster's count of held slots to the number of its
    /// runs whose projection holds one, if the count did not move while
    /// they were counted (it is read first, and set only if unchanged).
    async fn repair_slots(&self, outcome: &mut TickOutcome) {
        let clusters = match self.clusters.clusters().await {
            Ok((clusters, _)) => clusters,
            Err(e) => {
                outcome.failed.push(format!("the cluster registry: {e}"));
                return;
            }
        };
        for cluster in clusters.iter().filter(|c| c.max_concurrency.is_some()) {
            let name = &cluster.name;
            let seen = match self.runs.slots_held(name).await {
                Ok(n) => n,
                Err(e) => {
                    outcome.failed.push(format!("cluster {name}'s slots: {e}"));
                    continue;
                }
            };
            let mut pages = Pages::new(
                &[RunStatus::Queued, RunStatus::Pending, RunStatus::Running],
                None,
            );
            pages.query.clusters = vec![name.clone()];
            let mut counted = 0u64;
            while let Some(runs) = next_or_note(&mut pages, self, &mut outcome.failed).await {
                counted += runs.iter().filter(|r| r.slot.is_some()).count() as u64;
            }
            // A page that could not be read leaves the count short.
            if !pages.done || counted == seen {
                continue;
            }
            match self.runs.repair_slots(name, seen, counted).await {
                Ok(true) => {
                    warn!(cluster = %name, from = seen, to = counted, "set a cluster's held slots right");
                    outcome
                        .slots_repaired
                        .push(format!("{name}: {seen} -> {counted}"));
                }
                Ok(false) => {}
                Err(e) => outcome.failed.push(format!("cluster {name}'s slots: {e}")),
            }
        }
    }

    /// Queues a NEEDS_RETRY run again (and enqueues it), or gives up on it;
    /// the run's status after.
    async fn requeue(&self, run_id: &str) -> Result<Option<RunStatus>, AppError> {
        let command = RunCommand::Requeue {
            max_attempts: self.settings.max_attempts,
            limits: self.settings.launch_limits,
            now: self.now(),
        };
        let run = self.apply(run_id, command).await?;
        if run.status == RunStatus::Queued {
            self.enqueue(&run).await?;
        }
        Ok(Some(run.status))
    }

    /// Records a re-enqueue of `run`'s ticket and enqueues it, if the run is
    /// still due (another sweep may have got there first); whether it was.
    async fn reenqueue(&self, run: &Run, stale_before: DateTime<Utc>) -> Result<bool, AppError> {
        let command = RunCommand::Reenqueue {
            attempt: run.attempt,
            stale_before,
            now: self.now(),
        };
        let (after, recorded) = self
            .apply_reporting(&run.spec.run_id, command, None)
            .await?;
        if recorded {
            self.enqueue(&after).await?;
        }
        Ok(recorded)
    }

    /// Looks up in the engine the task of every PENDING or RUNNING run that
    /// heard nothing for `quiet_for`, a hundred at a time, and records what
    /// the engine says: the state change events about it may have been lost.
    /// A task the engine no longer knows ends its run with a reason that
    /// says so. Does nothing with an engine that reports every change itself.
    pub async fn reconcile(&self, quiet_for: Duration) -> Result<ReconcileOutcome, AppError> {
        let mut outcome = ReconcileOutcome::default();
        let now = self.now();
        let quiet_since = now - quiet_for;
        let mut pages = Pages::new(&[RunStatus::Pending, RunStatus::Running], Some(quiet_since));
        while let Some(runs) = next_or_note(&mut pages, self, &mut outcome.failed).await {
            let mut by_cluster: BTreeMap<String, Vec<Run>> = BTreeMap::new();
            for run in runs {
                if run.task_id.is_some() && run.last_event_at() < quiet_since {
                    by_cluster
                        .entry(run.spec.cluster.clone())
                        .or_default()
                        .push(run);
                }
            }
            for (cluster, runs) in by_cluster {
                for chunk in runs.chunks(MAX_TASKS_PER_LOOKUP) {
                    if !self.reconcile_chunk(&cluster, chunk, &mut outcome).await {
                        return Ok(outcome);
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// Reconciles one lookup's worth of runs of `cluster`; `false` when the
    /// engine does not look tasks up.
    async fn reconcile_chunk(
        &self,
        cluster: &str,
        runs: &[Run],
        outcome: &mut ReconcileOutcome,
    ) -> bool {
        let by_task: BTreeMap<&str, &Run> = runs
            .iter()
            .filter_map(|run| run.task_id.as_deref().map(|task| (task, run)))
            .collect();
        let task_ids: Vec<String> = by_task.keys().map(|t| (*t).to_owned()).collect();
        let found = match self.engine.look_up(cluster, &task_ids, self.now()).await {
            Ok(Some(found)) => found,
            Ok(None) => return false,
            Err(e) => {
                error!(cluster = %cluster, error = %e, "could not look tasks up");
                outcome.failed.push(format!(
                    "{} tasks of cluster {cluster}: {e}",
                    task_ids.len()
                ));
                return true;
            }
        };
        for lookup in found {
            match lookup {
                TaskLookup::Known {
                    task_id,
                    update: Some(update),
                } => {
                    let Some(run) = by_task.get(task_id.as_str()) else {
                        continue;
                    };
                    let run_id = run.spec.run_id.clone();
                    if update.run_id != run_id {
                        continue;
                    }
                    match self.record_engine_update(update).await {
                        Ok(after) if after.status != run.status => {
                            outcome.recorded.push(run_id);
                        }
                        Ok(_) => {}
                        Err(e) => note(&mut outcome.failed, &run_id, &e),
                    }
                }
                TaskLookup::Known { update: None, .. } => {}
                TaskLookup::Unknown { task_id, reason } => {
                    let Some(run) = by_task.get(task_id.as_str()) else {
                        continue;
                    };
                    let run_id = run.spec.run_id.clone();
                    let why = format!(
                        "the engine no longer knows its task {task_id} ({reason}) and no state change \
                         was recorded for it since {}: its events were lost, so its exit code is unknown",
                        run.last_event_at().to_rfc3339()
                    );
                    match self.abandon(&run_id, &why).await {
                        Ok(_) => outcome.lost.push(run_id),
                        Err(e) => note(&mut outcome.failed, &run_id, &e),
                    }
                }
            }
        }
        true
    }

    /// Flags every RUNNING run that has run longer than its job's
    /// successful runs usually take (past 1.5 times their 90th percentile,
    /// and past the settings' minimum), once per attempt, and publishes an
    /// alert for each run this call flagged. Returns the runs flagged and
    /// what failed. A job's history is read once per sweep.
    pub async fn flag_long_runs(&self) -> Result<(Vec<String>, Vec<String>), AppError> {
        use crate::domain::learning::{JobKey, UsualDuration};
        let mut flagged = Vec::new();
        let mut failed = Vec::new();
        let mut usual: HashMap<JobKey, Option<UsualDuration>> = HashMap::new();
        let mut pages = Pages::new(&[RunStatus::Running], None);
        while let Some(page) = next_or_note(&mut pages, self, &mut failed).await {
            for run in page {
                let Some(job) = JobKey::of(&run.spec).filter(|_| run.running_long.is_none()) else {
                    continue;
                };
                let typical = match usual.get(&job) {
                    Some(known) => *known,
                    None => match self.lessons.learned(&job).await {
                        Ok(learned) => *usual.entry(job).or_insert(learned.usual_duration()),
                        Err(e) => {
                            note(&mut failed, &run.spec.run_id, &e.into());
                            continue;
                        }
                    },
                };
                let now = self.now();
                let Some(typical) = typical.filter(|u| {
                    crate::domain::run::runs_long(&run, *u, self.settings.long_run_minimum, now)
                }) else {
                    continue;
                };
                let flag = RunCommand::FlagRunningLong {
                    attempt: run.attempt,
                    usual: typical,
                    now,
                };
                match self.apply_reporting(&run.spec.run_id, flag, None).await {
                    Ok((after, true)) => {
                        self.alert_running_long(&after, typical, now).await;
                        flagged.push(run.spec.run_id.clone());
                    }
                    Ok(_) => {}
                    Err(e) => note(&mut failed, &run.spec.run_id, &e),
                }
            }
        }
        Ok((flagged, failed))
    }

    /// Publishes that `run` runs long. The flag is already recorded; an
    /// alert that cannot be published is logged, as a state change is.
    async fn alert_running_long(
        &self,
        run: &Run,
        usual: crate::domain::learning::UsualDuration,
        now: DateTime<Utc>,
    ) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        let alert = crate::ports::RunningLongAlert {
            run_id: run.spec.run_id.clone(),
            definition_id: run.spec.definition_id.clone(),
            alias: run.spec.alias.clone(),
            cluster: run.spec.cluster.clone(),
            owner: run.spec.owner.clone(),
            attempt: run.attempt,
            started_at: run.started_at,
            running_s: run
                .started_at
                .map_or(0, |s| (now - s).num_seconds().max(0) as u64),
            usual_s: usual.p90_s.round().max(0.0) as u64,
            usual_of_runs: u32::try_from(usual.runs).unwrap_or(u32::MAX),
            message: run.running_long.clone().unwrap_or_default(),
        };
        if let Err(error) = publisher.alert(&alert).await {
            warn!(run_id = %run.spec.run_id, error = %error, "could not publish that a run runs long");
        }
    }

    /// Stops every RUNNING run past its `active_deadline_seconds`: the engine
    /// is told to stop the task and the run ends with a timeout reason. (The
    /// local engine enforces deadlines itself; the AWS retry sweep uses this.)
    /// Returns the runs stopped and what failed.
    pub async fn enforce_deadlines(&self) -> Result<(Vec<String>, Vec<String>), AppError> {
        let now = self.now();
        let mut timed_out = Vec::new();
        let mut failed = Vec::new();
        let mut pages = Pages::new(&[RunStatus::Running], None);
        while let Some(runs) = next_or_note(&mut pages, self, &mut failed).await {
            for run in runs {
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
                    && let Err(error) = self.engine.stop(&run.spec.cluster, &run_id, task_id).await
                {
                    warn!(run_id = %run_id, error = %error, "could not stop a task past its deadline");
                }
                let command = RunCommand::Abandon {
                    reason: format!(
                        "exceeded its active_deadline_seconds ({deadline} s) and was stopped"
                    ),
                    now,
                };
                match self.apply(&run_id, command).await {
                    Ok(_) => timed_out.push(run_id),
                    Err(e) => note(&mut failed, &run_id, &e),
                }
            }
        }
        Ok((timed_out, failed))
    }

    async fn enqueue(&self, run: &Run) -> Result<(), AppError> {
        self.queue
            .enqueue(&RunTicket::of(run))
            .await
            .map_err(|e| AppError::internal(crate::error::Dependency::Queue, e))
    }
}

/// The next page, or `None` after the last or when the store fails (noted in
/// `failed`: the rest waits for the next sweep).
async fn next_or_note(pages: &mut Pages, app: &App, failed: &mut Vec<String>) -> Option<Vec<Run>> {
    match pages.next(app).await {
        Ok(page) => page,
        Err(e) => {
            error!(error = %e, "the sweep could not read a page of runs");
            failed.push(format!("reading runs: {e}"));
            None
        }
    }
}

fn note(failed: &mut Vec<String>, run_id: &str, e: &AppError) {
    error!(run_id = %run_id, error = %e, "the sweep could not handle a run; it is due again next sweep");
    failed.push(format!("{run_id}: {e}"));
}
