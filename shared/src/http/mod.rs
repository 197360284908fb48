//! Flotilla's REST API as one axum [`Router`], built by [`router`].
//!
//! `flotilla serve` serves it with hyper; the `api` Lambda will hand the same
//! router to `lambda_http::run`. Routes keep Flotilla's paths and version
//! prefixes (v1 and v6 for definitions, history, logs and health; v2/v4/v6
//! execute bodies) and its JSON field names. Handlers only translate: they parse
//! the request, call one use case, and shape the answer. Errors become responses
//! in [`error`] and nowhere else.

pub mod error;
pub mod input;
pub mod views;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::{App, DefinitionRef};
use crate::domain::definition::{Definition, DefinitionInput};
use crate::domain::launch::{LaunchRequest, OwnerRule};
use crate::domain::query::Page;
use crate::domain::run::Run;
use crate::http::error::ApiError;
use crate::http::input::{QueryPairs, definition_query, json_body, run_query};
use crate::http::views::RunView;

/// Handler state: the use cases.
pub type AppState = Arc<App>;

type ApiResult = Result<Response, ApiError>;

/// Nested objects whose keys are matched case-insensitively in execute bodies.
const LAUNCH_NESTED: &[&str] = &["run_tags", "env[]"];
/// Nested objects whose keys are matched case-insensitively in definition bodies.
const DEFINITION_NESTED: &[&str] = &["env[]"];

/// The whole API.
pub fn router(app: AppState) -> Router {
    let mut r = Router::new();
    for v in ["v1", "v6"] {
        r = r
            .route(
                &format!("/api/{v}/task"),
                get(list_definitions).post(create_definition),
            )
            .route(
                &format!("/api/{v}/task/{{definition_id}}"),
                get(get_definition)
                    .put(update_definition)
                    .delete(delete_definition),
            )
            .route(
                &format!("/api/{v}/task/alias/{{alias}}"),
                get(get_definition_by_alias),
            )
            .route(
                &format!("/api/{v}/task/alias/{{alias}}/execute"),
                put(execute_by_alias),
            )
            .route(&format!("/api/{v}/history"), get(list_runs))
            .route(&format!("/api/{v}/history/{{run_id}}"), get(get_run))
            .route(&format!("/api/{v}/task/history/{{run_id}}"), get(get_run))
            .route(
                &format!("/api/{v}/task/{{definition_id}}/history"),
                get(list_definition_runs),
            )
            .route(
                &format!("/api/{v}/task/{{definition_id}}/history/{{run_id}}"),
                get(get_definition_run).delete(stop_run),
            )
            .route(&format!("/api/{v}/{{run_id}}/logs"), get(logs))
            .route(&format!("/api/{v}/health"), get(health));
    }
    r.route("/api/v1/task/{definition_id}/execute", put(execute_v1))
        .route("/api/v2/task/{definition_id}/execute", put(execute_v2))
        .route("/api/v4/task/{definition_id}/execute", put(execute_v6))
        .route("/api/v6/task/{definition_id}/execute", put(execute_v6))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(app)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route for {method} {}: see the API section of the README",
        uri.path()
    ))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{method} is not allowed on {}: see the API section of the README",
        uri.path()
    ))
}

fn ok<T: serde::Serialize>(value: T) -> ApiResult {
    Ok(Json(value).into_response())
}

/// How a list was asked for, echoed in its envelope.
struct ListMeta<'a> {
    sort_by: &'a str,
    order: &'a str,
    paging: crate::domain::query::Paging,
}

/// Flotilla's list envelope: the rows under `list_key`, the total, the paging
/// and sort used, and every filter given echoed as an array.
fn page_envelope(
    list_key: &str,
    items: Vec<Value>,
    total: u64,
    q: &QueryPairs,
    echo: &[&str],
    meta: ListMeta<'_>,
) -> Value {
    let mut body = json!({
        list_key: items,
        "total": total,
        "limit": meta.paging.limit,
        "offset": meta.paging.offset,
        "sort_by": meta.sort_by,
        "order": meta.order,
        "env_filters": {},
    });
    if let Value::Object(map) = &mut body {
        for key in echo {
            let values = q.all(key);
            if !values.is_empty() {
                map.insert((*key).to_owned(), json!(values));
            }
        }
    }
    body
}

// ----- definitions -----------------------------------------------------------

async fn list_definitions(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = QueryPairs::parse(raw.as_deref());
    let query = definition_query(&q)?;
    let Page { items, total } = app.list_definitions(&query).await?;
    let items = items
        .iter()
        .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
        .collect();
    ok(page_envelope(
        "definitions",
        items,
        total,
        &q,
        &["alias", "group_name", "image"],
        ListMeta {
            sort_by: query.sort_by.as_str(),
            order: query.order.as_str(),
            paging: query.paging,
        },
    ))
}

async fn create_definition(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let input: DefinitionInput = json_body(&body, DEFINITION_NESTED)?;
    ok(app.create_definition(input).await?)
}

async fn get_definition(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    ok(app.definition(DefinitionRef::Id(&id)).await?)
}

async fn get_definition_by_alias(
    State(app): State<AppState>,
    Path(alias): Path<String>,
) -> ApiResult {
    ok(app.definition(DefinitionRef::Alias(&alias)).await?)
}

async fn update_definition(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let input: DefinitionInput = json_body(&body, DEFINITION_NESTED)?;
    let updated: Definition = app.update_definition(&id, input).await?;
    ok(updated)
}

async fn delete_definition(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    app.delete_definition(&id).await?;
    ok(json!({ "deleted": true }))
}

// ----- execute ---------------------------------------------------------------

async fn execute(app: &App, by: DefinitionRef<'_>, rule: OwnerRule, body: &[u8]) -> ApiResult {
    let request: LaunchRequest = json_body(body, LAUNCH_NESTED)?;
    let run = app.execute(by, rule, request).await?;
    run_response(app, &run)
}

async fn execute_by_alias(
    State(app): State<AppState>,
    Path(alias): Path<String>,
    body: Bytes,
) -> ApiResult {
    execute(
        &app,
        DefinitionRef::Alias(&alias),
        OwnerRule::OwnerId,
        &body,
    )
    .await
}

async fn execute_v1(State(app): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    execute(&app, DefinitionRef::Id(&id), OwnerRule::Anonymous, &body).await
}

async fn execute_v2(State(app): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    execute(&app, DefinitionRef::Id(&id), OwnerRule::EmailAndTeam, &body).await
}

async fn execute_v6(State(app): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    execute(&app, DefinitionRef::Id(&id), OwnerRule::OwnerId, &body).await
}

// ----- runs ------------------------------------------------------------------

async fn runs_page(app: &App, q: QueryPairs, definition_id: Option<String>) -> ApiResult {
    let mut query = run_query(&q)?;
    if let Some(id) = &definition_id {
        app.definition(DefinitionRef::Id(id)).await?;
        query.definition_ids = vec![id.clone()];
    }
    let Page { items, total } = app.list_runs(&query).await?;
    let items = items
        .iter()
        .map(|r| serde_json::to_value(run_view(app, r)).unwrap_or(Value::Null))
        .collect();
    let mut body = page_envelope(
        "history",
        items,
        total,
        &q,
        &["status", "alias", "group_name", "cluster", "cluster_name"],
        ListMeta {
            sort_by: query.sort_by.as_str(),
            order: query.order.as_str(),
            paging: query.paging,
        },
    );
    if let (Some(id), Value::Object(map)) = (definition_id, &mut body) {
        map.insert("definition_id".into(), json!([id]));
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
    runs_page(&app, QueryPairs::parse(raw.as_deref()), Some(id)).await
}

/// A run as the API shows it, with the links only the app's adapters know.
fn run_view(app: &App, run: &Run) -> RunView {
    let mut view = RunView::from(run);
    view.log_url = app.logs.link(run);
    view
}

fn run_response(app: &App, run: &Run) -> ApiResult {
    ok(run_view(app, run))
}

async fn get_run(State(app): State<AppState>, Path(run_id): Path<String>) -> ApiResult {
    run_response(&app, &app.run(&run_id).await?)
}

async fn get_definition_run(
    State(app): State<AppState>,
    Path((_definition_id, run_id)): Path<(String, String)>,
) -> ApiResult {
    run_response(&app, &app.run(&run_id).await?)
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

async fn stop_run(
    State(app): State<AppState>,
    Path((_definition_id, run_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    app.stop(&run_id, &stopped_by(&headers)).await?;
    ok(json!({ "terminated": true }))
}

async fn logs(
    State(app): State<AppState>,
    Path(run_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = QueryPairs::parse(raw.as_deref());
    if q.flag("raw_text") {
        let text = app.log_text(&run_id).await?;
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    let last_seen = q.one("last_seen");
    let page = app.log_page(&run_id, last_seen.as_deref()).await?;
    ok(json!({ "log": page.log, "last_seen": page.last_seen }))
}

async fn health() -> ApiResult {
    ok(json!({ "status": "healthy", "message": "Service is up and running" }))
}
