//! Runs: executing a definition (the v1, v2, v4/v6 and alias routes), run
//! history and one run, stopping, a run's status (with an ETag) and its
//! self-reports, and its timeline.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::app::{App, DefinitionRef};
use crate::domain::identity::Caller;
use crate::domain::launch::{LaunchRequest, OwnerRule};
use crate::domain::report::StatusReport;
use crate::domain::run::{Run, RunStatus};
use crate::http::access::Who;
use crate::http::input::{QueryPairs, RUN_FILTER_KEYS, json_body, run_query};
use crate::http::routes::{Operation, V1_AND_V6, object_of};
use crate::http::views::{
    ListMeta, RunStatusView, RunView, TimelineEntry, page_envelope, status_etag, timeline,
};
use crate::http::{ApiResult, AppState, ok, ok_ignoring};

/// Nested objects whose keys are matched case-insensitively in execute bodies.
const LAUNCH_NESTED: &[&str] = &["run_tags", "env[]"];

/// The run routes.
pub fn routes() -> Vec<Operation> {
    let tag = "runs";
    let mut ops: Vec<Operation> = V1_AND_V6
        .into_iter()
        .flat_map(|v| {
            let p = |rest: &str| format!("{v}{rest}");
            [
                Operation::put(p("/task/alias/{alias}/execute"), execute_by_alias)
                    .doc(
                        tag,
                        "Launch a run of a definition by alias (run_tags.owner_id required)",
                    )
                    .body::<LaunchRequest>()
                    .returns::<RunView>(),
                Operation::get(p("/history"), list_runs)
                    .doc(tag, "List runs")
                    .list_query(RUN_FILTER_KEYS)
                    .returns_page::<RunView>("history"),
                Operation::get(p("/history/{run_id}"), get_run)
                    .doc(tag, "Read a run")
                    .returns::<RunView>(),
                Operation::get(p("/task/history/{run_id}"), get_run)
                    .doc(tag, "Read a run")
                    .returns::<RunView>(),
                Operation::get(p("/task/{definition_id}/history"), list_definition_runs)
                    .doc(tag, "List the runs of a definition")
                    .list_query(RUN_FILTER_KEYS)
                    .returns_page::<RunView>("history"),
                Operation::get(p("/task/{definition_id}/history/{run_id}"), get_nested_run)
                    .doc(tag, "Read a run")
                    .returns::<RunView>(),
                Operation::delete(p("/task/{definition_id}/history/{run_id}"), stop_run)
                    .doc(tag, "Stop a run")
                    .returns_flag("terminated"),
                Operation::get(p("/{run_id}/events"), run_events)
                    .doc(tag, "A run's timeline")
                    .returns_all::<TimelineEntry>("pod_events"),
                Operation::put(p("/{run_id}/status"), report_status)
                    .doc(tag, "A run reports its own status")
                    .body::<StatusReport>()
                    .returns_shape(|_| {
                        object_of(&[
                            ("updated", json!({"type": "boolean"})),
                            ("status", json!({"type": "string"})),
                        ])
                    }),
            ]
        })
        .collect();
    ops.extend([
        Operation::get("/api/v6/{run_id}/status", run_status)
            .doc(
                tag,
                "A run's status, with an ETag (If-None-Match answers 304)",
            )
            .returns::<RunStatusView>(),
        Operation::put("/api/v1/task/{definition_id}/execute", execute_v1)
            .doc(tag, "Launch a run with the v1 body (cluster, env, tier)")
            .body::<LaunchRequest>()
            .returns::<RunView>(),
        Operation::put("/api/v2/task/{definition_id}/execute", execute_v2)
            .doc(
                tag,
                "Launch a run (run_tags.owner_email and team_name required)",
            )
            .body::<LaunchRequest>()
            .returns::<RunView>(),
    ]);
    ops.extend(["/api/v4", "/api/v6"].map(|v| {
        Operation::put(format!("{v}/task/{{definition_id}}/execute"), execute_v6)
            .doc(tag, "Launch a run (run_tags.owner_id required)")
            .body::<LaunchRequest>()
            .returns::<RunView>()
    }));
    ops
}

// ----- execute ---------------------------------------------------------------

async fn execute(
    app: &App,
    by: DefinitionRef<'_>,
    rule: OwnerRule,
    who: &Caller,
    body: &[u8],
) -> ApiResult {
    let (request, ignored): (LaunchRequest, _) = json_body(body, LAUNCH_NESTED)?;
    let run = app.execute(by, rule, request, who).await?;
    ok_ignoring(run_view(app, &run), ignored)
}

async fn execute_by_alias(
    State(app): State<AppState>,
    Path(alias): Path<String>,
    Who(who): Who,
    body: Bytes,
) -> ApiResult {
    let by = DefinitionRef::Alias(&alias);
    execute(&app, by, OwnerRule::OwnerId, &who, &body).await
}

async fn execute_v1(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Who(who): Who,
    body: Bytes,
) -> ApiResult {
    execute(
        &app,
        DefinitionRef::Id(&id),
        OwnerRule::Anonymous,
        &who,
        &body,
    )
    .await
}

async fn execute_v2(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Who(who): Who,
    body: Bytes,
) -> ApiResult {
    execute(
        &app,
        DefinitionRef::Id(&id),
        OwnerRule::EmailAndTeam,
        &who,
        &body,
    )
    .await
}

async fn execute_v6(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Who(who): Who,
    body: Bytes,
) -> ApiResult {
    execute(
        &app,
        DefinitionRef::Id(&id),
        OwnerRule::OwnerId,
        &who,
        &body,
    )
    .await
}

// ----- history ---------------------------------------------------------------

/// A page of runs in Flotilla's envelope; `executables`, when given, limits
/// it to the runs of those definitions (or template versions) and is echoed.
pub(crate) async fn runs_page(
    app: &App,
    q: QueryPairs,
    executables: Option<Vec<String>>,
) -> ApiResult {
    let mut query = run_query(&q)?;
    if let Some(ids) = &executables {
        query.definition_ids = ids.clone();
    }
    let page = app.list_runs(&query).await?;
    let next_token = page
        .resume_after
        .clone()
        .or_else(|| page.items.last().map(|last| query.key_of(last)))
        .filter(|_| page.more)
        .map(|after| crate::http::input::run_token(&query, after));
    // Why QUEUED runs wait depends on their cluster: asked once per cluster.
    let mut capacities = std::collections::BTreeMap::new();
    for run in page.items.iter().filter(|r| r.status == RunStatus::Queued) {
        if !capacities.contains_key(&run.spec.cluster) {
            let capacity = app.capacity(&run.spec.cluster).await?;
            capacities.insert(run.spec.cluster.clone(), capacity);
        }
    }
    let items = page
        .items
        .iter()
        .map(|r| {
            let mut view = run_view(app, r);
            if let Some(capacity) = capacities.get(&r.spec.cluster) {
                (view.waiting_reason, view.waiting_since) = r.waiting_for(capacity).unzip();
            }
            serde_json::to_value(view).unwrap_or(Value::Null)
        })
        .collect();
    let mut body = page_envelope(
        "history",
        items,
        page.total,
        &q,
        RUN_FILTER_KEYS,
        ListMeta {
            env: &query.env,
            sort_by: query.sort_by.as_str(),
            order: query.order.as_str(),
            paging: query.paging,
            next_token,
            total_is_lower_bound: page.total_is_lower_bound,
        },
    );
    if let (Some(ids), Value::Object(map)) = (executables, &mut body) {
        map.insert("definition_id".into(), json!(ids));
    }
    ok(body)
}

async fn list_runs(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult {
    runs_page(&app, QueryPairs::parse(raw.as_deref()), None).await
}

async fn list_definition_runs(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    app.definition(DefinitionRef::Id(&id)).await?;
    runs_page(&app, QueryPairs::parse(raw.as_deref()), Some(vec![id])).await
}

/// A run as the API shows it, with the links only the app's adapters know.
pub(crate) fn run_view(app: &App, run: &Run) -> RunView {
    let mut view = RunView::from(run);
    view.log_url = app.logs.link(run);
    view
}

/// One run read on its own: the API's view with where it stands while it
/// waits (its place in the queue included).
async fn one_run(app: &App, run_id: &str) -> ApiResult {
    let run = app.run(run_id).await?;
    let waiting = app.waiting(&run).await?;
    let mut view = run_view(app, &run).waiting(waiting.as_ref());
    view.sizing_hint = app.sizing_hint(&run).await;
    ok(view)
}

/// `GET …/history/{run_id}`: one run.
pub(crate) async fn get_run(State(app): State<AppState>, Path(run_id): Path<String>) -> ApiResult {
    one_run(&app, &run_id).await
}

/// `GET …/{definition_id}/history/{run_id}`: one run (the parent id is not checked).
pub(crate) async fn get_nested_run(
    State(app): State<AppState>,
    Path((_parent, run_id)): Path<(String, String)>,
) -> ApiResult {
    one_run(&app, &run_id).await
}

/// Who is stopping a run: the value of the last request header whose name
/// contains `-email` (e.g. `X-Forwarded-Email`), else "user".
fn stopped_by(headers: &HeaderMap) -> String {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().contains("-email"))
        .filter_map(|(_, value)| value.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .last()
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "user".to_owned())
}

/// `DELETE …/{definition_id}/history/{run_id}`: stop a run.
pub(crate) async fn stop_run(
    State(app): State<AppState>,
    Path((_parent, run_id)): Path<(String, String)>,
    Who(who): Who,
    headers: HeaderMap,
) -> ApiResult {
    let by = who
        .name()
        .map_or_else(|| stopped_by(&headers), str::to_owned);
    app.stop_as(&run_id, &by, &who).await?;
    ok(json!({ "terminated": true }))
}

// ----- status and timeline ---------------------------------------------------

/// `GET /api/v6/{run_id}/status`: the run's status with an ETag; a client
/// that sends the ETag back in `If-None-Match` gets 304 until the run changes.
async fn run_status(
    State(app): State<AppState>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let (run, version) = app.run_with_version(&run_id).await?;
    let waiting = app.waiting(&run).await?;
    let etag = status_etag(&run, version, waiting.as_ref());
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
    ];
    if crate::http::etag_matches(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((
        cache,
        Json(RunStatusView::from(&run).waiting(waiting.as_ref())),
    )
        .into_response())
}

/// The header a run sends its token in.
pub const RUN_TOKEN_HEADER: &str = "x-flotilla-run-token";

/// `PUT /{run_id}/status`: a run reports its own status, with its token.
async fn report_status(
    State(app): State<AppState>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let (report, _): (StatusReport, _) = json_body(&body, &[])?;
    let token = headers.get(RUN_TOKEN_HEADER).and_then(|v| v.to_str().ok());
    let (run, changed) = app.report_status(&run_id, &report.parse()?, token).await?;
    ok(json!({ "updated": changed, "status": run.status }))
}

/// `GET /{run_id}/events`: the run's timeline from its event stream.
async fn run_events(State(app): State<AppState>, Path(run_id): Path<String>) -> ApiResult {
    let events = app.run_events(&run_id).await?;
    let entries = timeline(&run_id, &events);
    ok(json!({ "total": entries.len(), "pod_events": entries }))
}
