//! Schedules: create, change, pause, resume and delete them, and fire the
//! ones that are due.
//!
//! A schedule is checked as its runs will be: its cron expression and time
//! zone are parsed, its target found, and its launch body launched as a dry
//! run by its owner, so a schedule that is saved can fire. Only its owner
//! (the launch's `run_tags.owner_id`) or an admin may change it.
//!
//! [`App::fire_due_schedules`] is called by the scheduler loop of `flotilla
//! serve` (every second) and by the AWS retry function (every minute). Each
//! due fire is recorded as `pending` on the schedule (its version as
//! condition: of two racing tickers one takes it), launched under the
//! idempotence key of the schedule and the fire time, and then recorded as
//! done. A fire found pending (the process died between the two records)
//! is launched again: its key names the run already made, whatever became
//! of it, so a fire makes at most one run.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tracing::warn;

use super::{App, DefinitionRef, MAX_CONFLICT_RETRIES};
use crate::domain::ValidationError;
use crate::domain::identity::Caller;
use crate::domain::launch::{OwnerRule, RunTags};
use crate::domain::run::Run;
use crate::domain::schedule::{
    CronSpec, Due, Fire, MAX_NAME_CHARS, NEXT_FIRES_SHOWN, RenderedTemplate, Schedule,
    ScheduleInput, ScheduledLaunch, Target,
};
use crate::error::{Act, AppError, Conflict, Contended, Missing, Refusal};

/// Labels every scheduled run carries: its schedule, and the fire time.
pub const SCHEDULE_LABEL: &str = "flotilla.schedule_id";
/// The fire time a scheduled run was launched for.
pub const FIRE_LABEL: &str = "flotilla.scheduled_for";

/// What one pass over the schedules did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FireOutcome {
    /// `<schedule id> <fire time> -> <run id>` for each fire launched.
    pub fired: Vec<String>,
    /// `<schedule id>: <why>` for each fire that launched no run (its
    /// definition was deleted, its launch no longer valid); recorded on the
    /// schedule as `last_error`.
    pub refused: Vec<String>,
    /// What could not be done now (storage unavailable); due again next
    /// pass.
    pub failed: Vec<String>,
}

/// Whether `error` may pass: a fire that meets it stays pending and is
/// tried again by the next pass.
fn transient(error: &AppError) -> bool {
    matches!(
        error,
        AppError::Unavailable { .. } | AppError::Conflict(_) | AppError::Internal { .. }
    )
}

/// `value` without its null fields, at every depth.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// `error`'s problems, each named as a field of `launch`.
fn in_launch(error: AppError) -> AppError {
    match error {
        AppError::Invalid(v) => AppError::Invalid(ValidationError {
            problems: v
                .problems
                .into_iter()
                .map(|p| format!("launch.{p}"))
                .collect(),
        }),
        other => other,
    }
}

/// Refuses `caller` a change of `schedule` unless it is theirs or they are
/// an admin.
fn may_change(caller: &Caller, schedule: &Schedule) -> Result<(), AppError> {
    if caller.may_act_for(Some(&schedule.owner)) {
        return Ok(());
    }
    Err(AppError::NotOwner(Refusal {
        caller: caller.name().unwrap_or_default().to_owned(),
        owner: schedule.owner.clone(),
        act: Act::ChangeSchedule(schedule.schedule_id.clone()),
    }))
}

impl App {
    /// A schedule.
    pub async fn schedule(&self, schedule_id: &str) -> Result<Schedule, AppError> {
        self.schedules
            .schedule(schedule_id)
            .await?
            .ok_or_else(|| AppError::NotFound(Missing::Schedule(schedule_id.to_owned())))
    }

    /// Every schedule, oldest first.
    pub async fn list_schedules(&self) -> Result<Vec<Schedule>, AppError> {
        Ok(self.schedules.schedules().await?)
    }

    /// The next fire times of `schedule` ([`NEXT_FIRES_SHOWN`] of them);
    /// none while it is paused.
    pub fn next_fires(&self, schedule: &Schedule) -> Vec<DateTime<Utc>> {
        let now = self.now();
        match (
            schedule.enabled,
            CronSpec::parse(&schedule.cron, &schedule.time_zone, now),
        ) {
            (true, Ok(spec)) => spec.next_fires(now, NEXT_FIRES_SHOWN),
            _ => Vec::new(),
        }
    }

    /// Creates a schedule from `input`, checked as its runs will be.
    pub async fn create_schedule(
        &self,
        input: ScheduleInput,
        launch: ScheduledLaunch,
        caller: &Caller,
    ) -> Result<Schedule, AppError> {
        let now = self.now();
        let schedule = self.checked(None, input, Some(launch), caller, now).await?;
        self.schedules.create_schedule(&schedule).await?;
        Ok(schedule)
    }

    /// Changes the fields `input` gives of a schedule (and its launch, when
    /// given), checked again as a whole.
    pub async fn update_schedule(
        &self,
        schedule_id: &str,
        input: ScheduleInput,
        launch: Option<ScheduledLaunch>,
        caller: &Caller,
    ) -> Result<Schedule, AppError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let before = self.schedule(schedule_id).await?;
            may_change(caller, &before)?;
            let now = self.now();
            let after = self
                .checked(Some(&before), input.clone(), launch.clone(), caller, now)
                .await?;
            if self.schedules.save_schedule(&after, before.version).await? {
                return Ok(Schedule {
                    version: before.version + 1,
                    ..after
                });
            }
        }
        Err(AppError::Conflict(Conflict::Contended(
            Contended::Schedule(schedule_id.to_owned()),
        )))
    }

    /// Pauses (`enabled: false`) or resumes a schedule. A resumed schedule
    /// fires next at its first time after now: what it missed while paused
    /// is not caught up.
    pub async fn set_schedule_enabled(
        &self,
        schedule_id: &str,
        enabled: bool,
        caller: &Caller,
    ) -> Result<Schedule, AppError> {
        let input = ScheduleInput {
            enabled: Some(enabled),
            ..ScheduleInput::default()
        };
        self.update_schedule(schedule_id, input, None, caller).await
    }

    /// Deletes a schedule; its runs stay.
    pub async fn delete_schedule(
        &self,
        schedule_id: &str,
        caller: &Caller,
    ) -> Result<(), AppError> {
        let schedule = self.schedule(schedule_id).await?;
        may_change(caller, &schedule)?;
        if self.schedules.delete_schedule(schedule_id).await? {
            Ok(())
        } else {
            Err(AppError::NotFound(Missing::Schedule(
                schedule_id.to_owned(),
            )))
        }
    }

    /// `before` (none for a new schedule) with `input` and `launch` applied,
    /// every problem found at once, then its launch run as a dry run.
    async fn checked(
        &self,
        before: Option<&Schedule>,
        input: ScheduleInput,
        launch: Option<ScheduledLaunch>,
        caller: &Caller,
        now: DateTime<Utc>,
    ) -> Result<Schedule, AppError> {
        let mut problems = Vec::new();
        let cron = input
            .cron
            .clone()
            .or_else(|| before.map(|b| b.cron.clone()))
            .unwrap_or_default();
        let time_zone = input
            .time_zone
            .clone()
            .or_else(|| before.map(|b| b.time_zone.clone()))
            .unwrap_or_else(|| "UTC".to_owned());
        let spec = match CronSpec::parse(&cron, &time_zone, now) {
            Ok(spec) => Some(spec),
            Err(e) => {
                problems.extend(e.problems);
                None
            }
        };
        let launch = match launch {
            Some(launch) => launch,
            None => match before {
                Some(b) => serde_json::from_value(b.launch.clone()).map_err(|e| {
                    AppError::Invalid(ValidationError::new(format!(
                        "launch: the stored launch no longer reads ({e}); send a new launch"
                    )))
                })?,
                None => ScheduledLaunch::default(),
            },
        };
        let target = self
            .target_of(before, &input, &launch, &mut problems)
            .await?;
        let owner = launch
            .request
            .run_tags
            .as_ref()
            .and_then(|t| t.owner_id.clone())
            .filter(|o| !o.trim().is_empty())
            .or_else(|| caller.name().map(str::to_owned))
            .or_else(|| before.map(|b| b.owner.clone()))
            .unwrap_or_default();
        if owner.is_empty() {
            problems.push(
                "launch.run_tags.owner_id: give who the schedule's runs belong to".to_owned(),
            );
        }
        let name = input
            .name
            .clone()
            .or_else(|| before.map(|b| b.name.clone()))
            .unwrap_or_else(|| match &target {
                Some(Target::Definition { alias, .. }) => alias.clone(),
                Some(Target::Template { template_name, .. }) => template_name.clone(),
                None => String::new(),
            });
        // Without a target the name has no default; that problem is said once.
        let named = input.name.is_some() || target.is_some();
        if named && (name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS) {
            problems.push(format!(
                "name: give a name of 1 to {MAX_NAME_CHARS} characters"
            ));
        }
        ValidationError::from_problems(problems)?;
        let (Some(spec), Some(target)) = (spec, target) else {
            return Err(AppError::Invalid(ValidationError::new(
                "the schedule is incomplete",
            )));
        };
        if !caller.may_launch_as(&owner) {
            return Err(AppError::NotOwner(Refusal {
                caller: caller.name().unwrap_or_default().to_owned(),
                owner,
                act: Act::LaunchAs,
            }));
        }
        let mut launch = launch;
        launch.request.run_tags = Some(RunTags {
            owner_id: Some(owner.clone()),
            ..launch.request.run_tags.unwrap_or_default()
        });
        // The launch, as a dry run by its owner: what a fire will do.
        self.check_launch(&target, &launch, &Caller::user(owner.clone()))
            .await
            .map_err(in_launch)?;
        // A template is rendered now, once: its fires launch what it gives.
        let rendered = match &target {
            Target::Template { template_id, .. } => {
                let template = self.template(template_id).await?;
                let (definition, template) = self
                    .rendered_template(&template, launch.template_payload.clone())
                    .await
                    .map_err(in_launch)?;
                Some(RenderedTemplate {
                    definition,
                    template,
                })
            }
            Target::Definition { .. } => None,
        };
        let enabled = input
            .enabled
            .or_else(|| before.map(|b| b.enabled))
            .unwrap_or(true);
        let timing_changed = before
            .is_none_or(|b| b.cron != cron || b.time_zone != time_zone || b.enabled != enabled);
        let next_fire_at = match (enabled, before) {
            (false, _) => None,
            (true, Some(b)) if !timing_changed => b.next_fire_at,
            (true, _) => spec.next_after(now),
        };
        let stored_launch = without_nulls(
            serde_json::to_value(&launch)
                .map_err(|e| AppError::Invalid(ValidationError::new(format!("launch: {e}"))))?,
        );
        Ok(Schedule {
            schedule_id: before.map_or_else(
                || format!("sched-{}", uuid::Uuid::new_v4()),
                |b| b.schedule_id.clone(),
            ),
            name,
            target,
            cron,
            time_zone,
            launch: stored_launch,
            rendered,
            enabled,
            catch_up: input
                .catch_up
                .or_else(|| before.map(|b| b.catch_up))
                .unwrap_or_default(),
            owner,
            created_at: before.map_or(now, |b| b.created_at),
            updated_at: now,
            next_fire_at,
            pending: before.and_then(|b| b.pending.clone()),
            last_fire_at: before.and_then(|b| b.last_fire_at),
            last_run_id: before.and_then(|b| b.last_run_id.clone()),
            last_error: before.and_then(|b| b.last_error.clone()),
            fires: before.map_or(0, |b| b.fires),
            missed: before.map_or(0, |b| b.missed),
            version: before.map_or(1, |b| b.version),
        })
    }

    /// What `input` (else `before`) targets, found now; a problem for each
    /// thing missing or contradictory.
    async fn target_of(
        &self,
        before: Option<&Schedule>,
        input: &ScheduleInput,
        launch: &ScheduledLaunch,
        problems: &mut Vec<String>,
    ) -> Result<Option<Target>, AppError> {
        let by_definition = input.definition_id.is_some() || input.alias.is_some();
        let by_template = input.template_name.is_some();
        let target = if by_definition && by_template {
            problems.push(
                "template_name: give a definition (definition_id or alias) or a template, not both"
                    .to_owned(),
            );
            return Ok(None);
        } else if by_definition {
            let by = match (&input.definition_id, &input.alias) {
                (Some(id), _) => DefinitionRef::Id(id),
                (None, Some(alias)) => DefinitionRef::Alias(alias),
                (None, None) => return Ok(None),
            };
            match self.definition(by).await {
                Ok(d) => Some(Target::Definition {
                    definition_id: d.definition_id,
                    alias: d.alias,
                }),
                Err(AppError::NotFound(missing)) => {
                    problems.push(match missing {
                        Missing::DefinitionAlias(alias) => {
                            format!("alias: no definition has the alias {alias}")
                        }
                        other => format!("definition_id: no {other} exists"),
                    });
                    None
                }
                Err(other) => return Err(other),
            }
        } else if let Some(name) = &input.template_name {
            match self.template_by_name(name, input.template_version).await {
                Ok(t) => Some(Target::Template {
                    template_name: t.template_name,
                    template_version: t.version,
                    template_id: t.template_id,
                }),
                Err(AppError::NotFound(missing)) => {
                    problems.push(format!("template_name: no {missing} exists"));
                    None
                }
                Err(other) => return Err(other),
            }
        } else if let Some(b) = before {
            Some(b.target.clone())
        } else {
            problems.push(
                "alias: give what the schedule launches: a definition (definition_id or alias) or a template (template_name, and template_version to pin one)"
                    .to_owned(),
            );
            None
        };
        if launch.template_payload.is_some() && matches!(target, Some(Target::Definition { .. })) {
            problems.push(
                "launch.template_payload: only a template's schedule takes a payload".to_owned(),
            );
        }
        Ok(target)
    }

    /// Checks `launch` of `target` as `caller` with a dry run: a template
    /// rendered and its payload checked against its schema. Fires do not
    /// come here: they launch what the schedule saved ([`App::fire_run`]),
    /// so the scheduler needs no template renderer.
    async fn check_launch(
        &self,
        target: &Target,
        launch: &ScheduledLaunch,
        caller: &Caller,
    ) -> Result<Run, AppError> {
        match target {
            Target::Definition { definition_id, .. } => {
                let definition = self.definition(DefinitionRef::Id(definition_id)).await?;
                self.launch(
                    &definition,
                    OwnerRule::OwnerId,
                    launch.request.clone(),
                    None,
                    true,
                    caller,
                )
                .await
            }
            Target::Template { template_id, .. } => {
                let template = self.template(template_id).await?;
                self.execute_template(
                    &template,
                    launch.request.clone(),
                    launch.template_payload.clone(),
                    true,
                    caller,
                )
                .await
            }
        }
    }

    /// Fires every due schedule once, and launches again every fire left
    /// pending; each schedule on its own, a failure noted and the pass
    /// going on.
    pub async fn fire_due_schedules(&self) -> Result<FireOutcome, AppError> {
        let mut outcome = FireOutcome::default();
        for schedule in self.schedules.schedules().await? {
            let id = schedule.schedule_id.clone();
            if let Err(e) = self.fire(schedule, &mut outcome).await {
                warn!(schedule_id = %id, error = %e, "could not fire a schedule; it is due again next pass");
                outcome.failed.push(format!("{id}: {e}"));
            }
        }
        Ok(outcome)
    }

    /// Takes `schedule`'s due fire, if any, and launches it (or a fire it
    /// left pending).
    async fn fire(
        &self,
        mut schedule: Schedule,
        outcome: &mut FireOutcome,
    ) -> Result<(), AppError> {
        if let Some(fire) = schedule.pending.clone() {
            return self.launch_fire(schedule, fire, outcome).await;
        }
        let now = self.now();
        let Ok(spec) = CronSpec::parse(&schedule.cron, &schedule.time_zone, now) else {
            return Ok(());
        };
        let expected = schedule.version;
        match schedule.due(&spec, now) {
            None => Ok(()),
            Some(Due::Skip { missed, next }) => {
                schedule.missed += missed;
                schedule.next_fire_at = next;
                self.schedules.save_schedule(&schedule, expected).await?;
                Ok(())
            }
            Some(Due::Fire { fire, next }) => {
                schedule.pending = Some(fire.clone());
                schedule.missed += fire.skipped;
                schedule.next_fire_at = next;
                if !self.schedules.save_schedule(&schedule, expected).await? {
                    // Another pass took it, or its owner changed it.
                    return Ok(());
                }
                schedule.version = expected + 1;
                self.launch_fire(schedule, fire, outcome).await
            }
        }
    }

    /// Launches `fire` of `schedule` (recorded as pending) and records how
    /// it went; a transient failure leaves it pending for the next pass.
    async fn launch_fire(
        &self,
        mut schedule: Schedule,
        fire: Fire,
        outcome: &mut FireOutcome,
    ) -> Result<(), AppError> {
        let id = schedule.schedule_id.clone();
        let (run_id, error) = match self.fire_run(&schedule, &fire).await {
            Ok(run) => (Some(run.spec.run_id), None),
            Err(e) if transient(&e) => return Err(e),
            Err(e) => (None, Some(refusal_text(&e))),
        };
        let at = fire.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match (&run_id, &error) {
            (Some(run_id), _) => outcome.fired.push(format!("{id} {at} -> {run_id}")),
            (None, Some(error)) => outcome.refused.push(format!("{id}: {error}")),
            (None, None) => {}
        }
        for _ in 0..MAX_CONFLICT_RETRIES {
            let expected = schedule.version;
            schedule.pending = None;
            schedule.last_fire_at = Some(fire.at);
            schedule.last_error = error.clone();
            if let Some(run_id) = &run_id {
                schedule.last_run_id = Some(run_id.clone());
                schedule.fires += 1;
            }
            if self.schedules.save_schedule(&schedule, expected).await? {
                return Ok(());
            }
            match self.schedules.schedule(&id).await? {
                Some(fresh) if fresh.pending.as_ref() == Some(&fire) => schedule = fresh,
                // Recorded by another pass, or the schedule is gone.
                _ => return Ok(()),
            }
        }
        Err(AppError::Conflict(Conflict::Contended(
            Contended::Schedule(id),
        )))
    }

    /// The run of `fire`: the one its idempotence key already names (a
    /// fire launched before the process died), else a new one.
    async fn fire_run(&self, schedule: &Schedule, fire: &Fire) -> Result<Run, AppError> {
        let key = fire.key(&schedule.schedule_id);
        let scoped = super::execute::scoped_key(&schedule.owner, &key);
        if let Some(claim) = self.idempotence.find(&scoped, self.now()).await?
            && let Some(run) = self.runs.get(&claim.run_id).await?.run
        {
            return Ok(run);
        }
        let mut launch: ScheduledLaunch =
            serde_json::from_value(schedule.launch.clone()).map_err(|e| {
                AppError::Invalid(ValidationError::new(format!(
                    "launch: the stored launch no longer reads ({e})"
                )))
            })?;
        launch.request.idempotence_key = Some(key);
        let labels = launch.request.labels.get_or_insert_with(Default::default);
        labels.insert(SCHEDULE_LABEL.to_owned(), schedule.schedule_id.clone());
        labels.insert(
            FIRE_LABEL.to_owned(),
            fire.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        let owner = Caller::user(schedule.owner.clone());
        match (&schedule.target, &schedule.rendered) {
            (Target::Definition { definition_id, .. }, _) => {
                let definition = self.definition(DefinitionRef::Id(definition_id)).await?;
                self.launch(
                    &definition,
                    OwnerRule::OwnerId,
                    launch.request,
                    None,
                    false,
                    &owner,
                )
                .await
            }
            (Target::Template { .. }, Some(rendered)) => {
                self.launch(
                    &rendered.definition,
                    OwnerRule::TemplateOwner,
                    launch.request,
                    Some(rendered.template.clone()),
                    false,
                    &owner,
                )
                .await
            }
            (Target::Template { template_name, .. }, None) => {
                Err(AppError::Invalid(ValidationError::new(format!(
                    "template_name: the schedule of template {template_name} has no rendered launch; save it again"
                ))))
            }
        }
    }
}

/// Why a fire launched no run, in a sentence for `last_error`.
fn refusal_text(error: &AppError) -> String {
    match error {
        AppError::Invalid(v) => v.problems.join("; "),
        AppError::NotFound(missing) => format!("{missing} no longer exists"),
        other => other.to_string(),
    }
}
