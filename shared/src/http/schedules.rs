//! Schedules (`/api/v6/schedules`): create, list, read, change, pause,
//! resume and delete them. Each answer shows a schedule with its next fire
//! times.

use axum::body::Bytes;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::domain::ValidationError;
use crate::domain::schedule::{Schedule, ScheduleInput, ScheduledLaunch};
use crate::http::access::Who;
use crate::http::error::ApiError;
use crate::http::input::{Body, json_body};
use crate::http::routes::{Operation, object_of};
use crate::http::{ApiResult, AppState, ok, ok_ignoring};

impl Body for ScheduleInput {}
impl Body for ScheduledLaunch {
    const FLOTILLA_FIELDS: &'static [&'static str] = &["spark_extension", "command_hash"];
}

/// A schedule as the API shows it: the schedule and its next fire times.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ScheduleView {
    /// The schedule.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// Its next fire times (none while paused).
    pub next_fires: Vec<DateTime<Utc>>,
}

/// The schedule routes.
pub fn routes() -> Vec<Operation> {
    let tag = "schedules";
    vec![
        Operation::post("/api/v6/schedules", create)
            .doc(
                tag,
                "Schedule a definition or a template version on a cron expression in a time zone",
            )
            .body::<ScheduleInput>()
            .returns_shape(|g| answer("created", g)),
        Operation::get("/api/v6/schedules", list)
            .doc(tag, "Every schedule, with its next fire times")
            .returns_all::<ScheduleView>("schedules"),
        Operation::get("/api/v6/schedules/{schedule_id}", get)
            .doc(tag, "Read a schedule")
            .returns::<ScheduleView>(),
        Operation::put("/api/v6/schedules/{schedule_id}", update)
            .doc(tag, "Change the fields given of a schedule")
            .body::<ScheduleInput>()
            .returns_shape(|g| answer("updated", g)),
        Operation::post("/api/v6/schedules/{schedule_id}/pause", pause)
            .doc(tag, "Pause a schedule: it fires no more until resumed")
            .returns_shape(|g| answer("paused", g)),
        Operation::post("/api/v6/schedules/{schedule_id}/resume", resume)
            .doc(tag, "Resume a schedule from its next fire time after now")
            .returns_shape(|g| answer("resumed", g)),
        Operation::delete("/api/v6/schedules/{schedule_id}", delete)
            .doc(tag, "Delete a schedule (its runs stay)")
            .returns_flag("deleted"),
    ]
}

/// `{flag: true, "schedule": {...}}`.
fn answer(flag: &str, generator: &mut schemars::SchemaGenerator) -> serde_json::Value {
    object_of(&[
        (flag, json!({"type": "boolean"})),
        (
            "schedule",
            generator.subschema_for::<ScheduleView>().to_value(),
        ),
    ])
}

fn view(app: &AppState, schedule: Schedule) -> ScheduleView {
    let next_fires = app.next_fires(&schedule);
    ScheduleView {
        schedule,
        next_fires,
    }
}

/// The body's `launch`, read as an execute body is (its keys matched as
/// the execute routes match them), each problem named under `launch.`.
fn launch_of(input: &ScheduleInput) -> Result<Option<ScheduledLaunch>, ApiError> {
    let Some(value) = &input.launch else {
        return Ok(None);
    };
    if !value.is_object() {
        return Err(ValidationError::new(
            "launch: give an execute body as a JSON object, e.g. {\"run_tags\": {\"owner_id\": \"ann\"}, \"env\": []}",
        )
        .into());
    }
    let text = value.to_string();
    json_body::<ScheduledLaunch>(text.as_bytes(), &["run_tags", "env[]"])
        .map(|(launch, _)| Some(launch))
        .map_err(|e| {
            let problems = if e.problems().is_empty() {
                vec![format!("launch: {}", e.message())]
            } else {
                e.problems()
                    .iter()
                    .map(|p| match p.split_once(": ") {
                        // "cluster: …" names a field: "launch.cluster: …".
                        Some((field, _)) if !field.contains(' ') => format!("launch.{p}"),
                        _ => format!("launch: {p}"),
                    })
                    .collect()
            };
            ValidationError { problems }.into()
        })
}

async fn create(State(app): State<AppState>, Who(who): Who, body: Bytes) -> ApiResult {
    let (input, ignored): (ScheduleInput, _) = json_body(&body, &[])?;
    let launch = launch_of(&input)?.unwrap_or_default();
    let schedule = app.create_schedule(input, launch, &who).await?;
    ok_ignoring(
        json!({ "created": true, "schedule": view(&app, schedule) }),
        ignored,
    )
}

async fn list(State(app): State<AppState>) -> ApiResult {
    let schedules: Vec<ScheduleView> = app
        .list_schedules()
        .await?
        .into_iter()
        .map(|s| view(&app, s))
        .collect();
    ok(json!({ "total": schedules.len(), "schedules": schedules }))
}

async fn get(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let schedule = app.schedule(&id).await?;
    ok(view(&app, schedule))
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Who(who): Who,
    body: Bytes,
) -> ApiResult {
    let (input, ignored): (ScheduleInput, _) = json_body(&body, &[])?;
    let launch = launch_of(&input)?;
    let schedule = app.update_schedule(&id, input, launch, &who).await?;
    ok_ignoring(
        json!({ "updated": true, "schedule": view(&app, schedule) }),
        ignored,
    )
}

async fn pause(State(app): State<AppState>, Path(id): Path<String>, Who(who): Who) -> ApiResult {
    let schedule = app.set_schedule_enabled(&id, false, &who).await?;
    ok(json!({ "paused": true, "schedule": view(&app, schedule) }))
}

async fn resume(State(app): State<AppState>, Path(id): Path<String>, Who(who): Who) -> ApiResult {
    let schedule = app.set_schedule_enabled(&id, true, &who).await?;
    ok(json!({ "resumed": true, "schedule": view(&app, schedule) }))
}

async fn delete(State(app): State<AppState>, Path(id): Path<String>, Who(who): Who) -> ApiResult {
    app.delete_schedule(&id, &who).await?;
    ok(json!({ "deleted": true }))
}
