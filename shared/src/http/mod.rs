//! Flotilla's REST API as one axum [`Router`], built by [`router`].
//!
//! `flotilla serve` serves it with hyper; the `api` Lambda hands the same
//! router to `lambda_http::run`. Routes keep Flotilla's paths and version
//! prefixes (v1 and v6 for definitions, history, logs and health; v2/v4/v6
//! execute bodies) and its JSON field names. Every operation is listed once,
//! in [`routes`], from which both the router and the OpenAPI document
//! ([`openapi`]) are built; the web UI ([`ui`]) is served by the same router.
//! Handlers only translate: they parse the request, call one use case, and
//! shape the answer. Errors become responses in [`error`] and nowhere else.

pub mod error;
pub mod input;
pub mod openapi;
pub mod routes;
pub mod ui;
pub mod views;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::{App, DefinitionRef};
use crate::domain::cluster::ClusterInput;
use crate::domain::definition::{Definition, DefinitionInput};
use crate::domain::launch::{LaunchRequest, OwnerRule};
use crate::domain::query::Page;
use crate::domain::report::StatusReport;
use crate::domain::run::Run;
use crate::domain::template::{Template, TemplateInput};
use crate::http::error::ApiError;
use crate::http::input::{
    DEFINITION_FILTER_KEYS, PAGING_KEYS, QueryPairs, RUN_FILTER_KEYS, TemplateExecution,
    definition_query, json_body, run_query,
};
use crate::http::views::{RunStatusView, RunView, status_etag, timeline};

/// Handler state: the use cases.
pub type AppState = Arc<App>;

type ApiResult = Result<Response, ApiError>;

/// Nested objects whose keys are matched case-insensitively in execute bodies.
const LAUNCH_NESTED: &[&str] = &["run_tags", "env[]"];
/// Nested objects whose keys are matched case-insensitively in definition bodies.
const DEFINITION_NESTED: &[&str] = &["env[]"];

/// Settings of the HTTP edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpOptions {
    /// Origins a browser may call the API from (CORS); `*` allows any. Empty:
    /// same origin only.
    pub cors_allowed_origins: Vec<String>,
}

impl HttpOptions {
    /// Reads a comma-separated origin list such as
    /// `https://ui.example.com,http://localhost:3000`.
    pub fn with_cors_origins(list: &str) -> Self {
        Self {
            cors_allowed_origins: list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    fn cors(&self) -> Option<tower_http::cors::CorsLayer> {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        if self.cors_allowed_origins.is_empty() {
            return None;
        }
        let origin = if self.cors_allowed_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                self.cors_allowed_origins
                    .iter()
                    .filter_map(|o| axum::http::HeaderValue::from_str(o).ok()),
            )
        };
        Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::IF_NONE_MATCH,
                    header::AUTHORIZATION,
                ])
                .expose_headers([header::ETAG])
                .max_age(std::time::Duration::from_secs(600)),
        )
    }
}

/// The whole API with default options (no cross-origin access).
pub fn router(app: AppState) -> Router {
    router_with(app, &HttpOptions::default())
}

/// The whole API.
pub fn router_with(app: AppState, options: &HttpOptions) -> Router {
    let mut router: Router<AppState> = Router::new();
    let mut paths: Vec<(String, axum::routing::MethodRouter<AppState>)> = Vec::new();
    for op in routes::operations() {
        match paths.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, handlers)) => *handlers = std::mem::take(handlers).merge(op.handler),
            None => paths.push((op.path, op.handler)),
        }
    }
    for (path, handlers) in paths {
        router = router.route(&path, handlers);
    }
    let router = router
        .route("/api/openapi.json", get(openapi_document))
        .route("/", get(ui::index))
        .route("/ui/{*path}", get(ui::file))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(app);
    match options.cors() {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// `GET /api/openapi.json`: the OpenAPI 3.1 document of every route, built
/// once per process.
async fn openapi_document() -> ApiResult {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    ok(DOCUMENT.get_or_init(openapi::document))
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
    env: &'a [crate::domain::EnvVar],
    sort_by: &'a str,
    order: &'a str,
    paging: crate::domain::query::Paging,
}

/// Flotilla's list envelope: the rows under `list_key`, the total, the paging
/// and sort used, every filter given echoed as an array (`env` as the
/// `env_filters` map), and the query keys that were ignored.
fn page_envelope(
    list_key: &str,
    items: Vec<Value>,
    total: u64,
    q: &QueryPairs,
    filter_keys: &[&str],
    meta: ListMeta<'_>,
) -> Value {
    let env_filters: serde_json::Map<String, Value> = meta
        .env
        .iter()
        .map(|v| (v.name.clone(), Value::String(v.value.clone())))
        .collect();
    let mut body = json!({
        list_key: items,
        "total": total,
        "limit": meta.paging.limit,
        "offset": meta.paging.offset,
        "sort_by": meta.sort_by,
        "order": meta.order,
        "env_filters": env_filters,
    });
    if let Value::Object(map) = &mut body {
        for key in filter_keys.iter().filter(|k| **k != "env") {
            let values = q.all(key);
            if !values.is_empty() {
                map.insert((*key).to_owned(), json!(values));
            }
        }
        let known: Vec<&str> = filter_keys.iter().chain(PAGING_KEYS).copied().collect();
        let ignored = q.unknown_keys(&known);
        if !ignored.is_empty() {
            map.insert("ignored".into(), json!(ignored));
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
        DEFINITION_FILTER_KEYS,
        ListMeta {
            env: &query.env,
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

// ----- clusters --------------------------------------------------------------

/// `GET /api/v1/clusters`: the names of the clusters that take new runs, as
/// strings (the shape Flotilla's UI reads for its cluster select).
async fn list_cluster_names(State(app): State<AppState>) -> ApiResult {
    let names: Vec<String> = app
        .known_clusters()
        .await?
        .into_iter()
        .filter(|c| c.is_active())
        .map(|c| c.name)
        .collect();
    ok(json!({ "total": names.len(), "clusters": names }))
}

/// `GET /api/v6/clusters`: every cluster with its status and tiers.
async fn list_clusters(State(app): State<AppState>) -> ApiResult {
    let clusters = app.known_clusters().await?;
    ok(json!({ "total": clusters.len(), "clusters": clusters }))
}

async fn create_cluster(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let input: ClusterInput = json_body(&body, &[])?;
    let cluster = app.create_cluster(input).await?;
    ok(json!({ "created": true, "cluster": cluster }))
}

async fn get_cluster(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    ok(app.cluster(&id).await?)
}

async fn update_cluster(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let input: ClusterInput = json_body(&body, &[])?;
    let cluster = app.update_cluster(&id, input).await?;
    ok(json!({ "updated": true, "cluster": cluster }))
}

async fn delete_cluster(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    app.delete_cluster(&id).await?;
    ok(json!({ "deleted": true }))
}

// ----- templates -------------------------------------------------------------

async fn list_templates(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = QueryPairs::parse(raw.as_deref());
    let latest_only = q
        .one("latest_only")
        .is_none_or(|v| v.eq_ignore_ascii_case("true"));
    let paging = q.paging()?;
    let sort_by = q
        .one("sort_by")
        .unwrap_or_else(|| "template_name".to_owned());
    if !["template_name", "version"].contains(&sort_by.as_str()) {
        return Err(ApiError::bad_request(format!(
            "sort_by \"{sort_by}\" is not a field you can sort templates by: use template_name or version"
        )));
    }
    let order = q.order(crate::domain::query::SortOrder::Asc)?;
    let mut templates = app.list_templates(latest_only).await?;
    templates.sort_by(|a, b| {
        let primary = if sort_by == "version" {
            a.version.cmp(&b.version)
        } else {
            a.template_name.cmp(&b.template_name)
        };
        order.apply(primary.then(a.version.cmp(&b.version)))
    });
    let page = crate::domain::query::page_of(templates, paging);
    ok(json!({
        "templates": page.items,
        "total": page.total,
        "limit": paging.limit,
        "offset": paging.offset,
        "sort_by": sort_by,
        "order": order.as_str(),
        "latest_only": latest_only,
    }))
}

async fn create_template(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let input: TemplateInput = json_body(&body, &["env[]"])?;
    let (template, did_create) = app.create_template(input).await?;
    ok(json!({ "did_create": did_create, "template": template }))
}

async fn get_template(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    ok(app.template(&id).await?)
}

async fn run_template(app: &App, template: &Template, body: &[u8]) -> ApiResult {
    let request: TemplateExecution = json_body(body, &["env[]"])?;
    let (owner, launch, payload, dry_run) = request.into_parts()?;
    let run = app
        .execute_template(template, owner, launch, payload, dry_run)
        .await?;
    run_response(app, &run)
}

async fn execute_template_by_id(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let template = app.template(&id).await?;
    run_template(&app, &template, &body).await
}

/// `{template_version}` is a number, or anything else (`latest`) for the
/// newest version.
async fn execute_template_by_name(
    State(app): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let template = app
        .template_by_name(&name, version.trim().parse::<u32>().ok())
        .await?;
    run_template(&app, &template, &body).await
}

async fn template_runs(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    app.template(&id).await?;
    runs_page(&app, QueryPairs::parse(raw.as_deref()), Some(vec![id])).await
}

async fn template_name_runs(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let ids: Vec<String> = app
        .list_templates(false)
        .await?
        .into_iter()
        .filter(|t| t.template_name == name)
        .map(|t| t.template_id)
        .collect();
    if ids.is_empty() {
        return Err(ApiError::not_found(format!("template {name} not found")));
    }
    runs_page(&app, QueryPairs::parse(raw.as_deref()), Some(ids)).await
}

// ----- runs ------------------------------------------------------------------

async fn runs_page(app: &App, q: QueryPairs, executables: Option<Vec<String>>) -> ApiResult {
    let mut query = run_query(&q)?;
    if let Some(ids) = &executables {
        query.definition_ids = ids.clone();
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
        RUN_FILTER_KEYS,
        ListMeta {
            env: &query.env,
            sort_by: query.sort_by.as_str(),
            order: query.order.as_str(),
            paging: query.paging,
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

/// `GET /api/v6/{run_id}/status`: the run's status with an ETag; a client
/// that sends the ETag back in `If-None-Match` gets 304 until the run changes.
async fn run_status(
    State(app): State<AppState>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let (run, version) = app.run_with_version(&run_id).await?;
    let etag = status_etag(&run, version);
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
    ];
    if etag_matches(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((cache, Json(RunStatusView::from(&run))).into_response())
}

/// Whether a request's `If-None-Match` names `etag` (weak or strong) or `*`.
fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| {
            candidate == etag || candidate == "*" || candidate.strip_prefix("W/") == Some(etag)
        })
}

/// `PUT /{run_id}/status`: a run reports its own status.
async fn report_status(
    State(app): State<AppState>,
    Path(run_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let report: StatusReport = json_body(&body, &[])?;
    let (run, changed) = app.report_status(&run_id, &report).await?;
    ok(json!({ "updated": changed, "status": run.status }))
}

/// `GET /{run_id}/events`: the run's timeline from its event stream.
async fn run_events(State(app): State<AppState>, Path(run_id): Path<String>) -> ApiResult {
    let events = app.run_events(&run_id).await?;
    let entries = timeline(&run_id, &events);
    ok(json!({ "total": entries.len(), "pod_events": entries }))
}

/// The values of a name list, filtered by the `name` query (a substring).
fn name_list(key: &str, values: std::collections::BTreeSet<String>, q: &QueryPairs) -> ApiResult {
    let name = q.one("name");
    let values: Vec<String> = values
        .into_iter()
        .filter(|v| name.as_deref().is_none_or(|n| v.contains(n)))
        .collect();
    ok(json!({ "total": values.len(), key: values }))
}

/// `GET /groups`: every group a definition uses.
async fn groups(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult {
    let (groups, _) = app.groups_and_tags().await?;
    name_list("groups", groups, &QueryPairs::parse(raw.as_deref()))
}

/// `GET /tags`: every tag a definition carries.
async fn tags(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult {
    let (_, tags) = app.groups_and_tags().await?;
    name_list("tags", tags, &QueryPairs::parse(raw.as_deref()))
}

async fn health() -> ApiResult {
    ok(json!({ "status": "healthy", "message": "Service is up and running" }))
}
