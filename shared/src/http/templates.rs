//! `/api/v7/template`: templates (list, create a version, read one), running a
//! version by id or by name and version, and their runs.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::identity::Caller;
use crate::domain::query::{SortOrder, page_of};
use crate::domain::template::{Template, TemplateInput};
use crate::http::access::Who;
use crate::http::error::ApiError;
use crate::http::input::{QueryPairs, RUN_FILTER_KEYS, TemplateExecution, json_body};
use crate::http::routes::{Operation, object_of};
use crate::http::runs::{get_nested_run, get_run, run_view, runs_page, stop_run};
use crate::http::views::RunView;
use crate::http::{ApiResult, AppState, ok, ok_ignoring};

/// The template routes.
pub fn routes() -> Vec<Operation> {
    let tag = "templates";
    vec![
        Operation::get("/api/v7/template", list_templates)
            .doc(tag, "List templates")
            .query(&[
                "latest_only",
                "limit",
                "offset",
                "sort_by",
                "order",
                "next_token",
            ])
            .returns_page::<Template>("templates"),
        Operation::post("/api/v7/template", create_template)
            .doc(tag, "Create a template or its next version")
            .body::<TemplateInput>()
            .returns_shape(|g| {
                object_of(&[
                    ("did_create", json!({"type": "boolean"})),
                    ("template", g.subschema_for::<Template>().to_value()),
                ])
            }),
        Operation::get("/api/v7/template/{template_id}", get_template)
            .doc(tag, "Read a template version")
            .returns::<Template>(),
        Operation::put(
            "/api/v7/template/{template_id}/execute",
            execute_template_by_id,
        )
        .doc(tag, "Run a template version")
        .body::<TemplateExecution>()
        .returns::<RunView>(),
        Operation::put(
            "/api/v7/template/name/{template_name}/version/{template_version}/execute",
            execute_template_by_name,
        )
        .doc(
            tag,
            "Run a template by name and version (latest for the newest)",
        )
        .body::<TemplateExecution>()
        .returns::<RunView>(),
        Operation::get(
            "/api/v7/template/name/{template_name}/history",
            template_name_runs,
        )
        .doc(tag, "Runs of every version of a template")
        .list_query(RUN_FILTER_KEYS)
        .returns_page::<RunView>("history"),
        Operation::get("/api/v7/template/history/{run_id}", get_run)
            .doc(tag, "Read a template run")
            .returns::<RunView>(),
        Operation::get("/api/v7/template/{template_id}/history", template_runs)
            .doc(tag, "Runs of a template version")
            .list_query(RUN_FILTER_KEYS)
            .returns_page::<RunView>("history"),
        Operation::get(
            "/api/v7/template/{template_id}/history/{run_id}",
            get_nested_run,
        )
        .doc(tag, "Read a template run")
        .returns::<RunView>(),
        Operation::delete("/api/v7/template/{template_id}/history/{run_id}", stop_run)
            .doc(tag, "Stop a template run")
            .returns_flag("terminated"),
    ]
}

async fn list_templates(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = QueryPairs::parse(raw.as_deref());
    let latest_only = q
        .one("latest_only")
        .is_none_or(|v| v.eq_ignore_ascii_case("true"));
    let sort_by = q
        .one("sort_by")
        .unwrap_or_else(|| "template_name".to_owned());
    if !["template_name", "version"].contains(&sort_by.as_str()) {
        return Err(ApiError::bad_request(format!(
            "sort_by \"{sort_by}\" is not a field you can sort templates by: use template_name or version"
        )));
    }
    let order = q.order(SortOrder::Asc)?;
    let fingerprint =
        crate::domain::query::digest_of(&("templates", latest_only, &sort_by, order.as_str()));
    let paging = q.offset_paging(&fingerprint, "template")?;
    let mut templates = app.list_templates(latest_only).await?;
    templates.sort_by(|a, b| {
        let primary = if sort_by == "version" {
            a.version.cmp(&b.version)
        } else {
            a.template_name.cmp(&b.template_name)
        };
        order.apply(primary.then(a.version.cmp(&b.version)))
    });
    let page = page_of(templates, paging);
    let mut body = json!({
        "templates": page.items,
        "total": page.total,
        "limit": paging.limit,
        "offset": paging.offset,
        "sort_by": sort_by,
        "order": order.as_str(),
        "latest_only": latest_only,
    });
    if page.more
        && let Value::Object(map) = &mut body
    {
        let next = paging.offset.saturating_add(page.items.len() as u64);
        map.insert(
            "next_token".into(),
            json!(crate::http::input::offset_token(fingerprint, next)),
        );
    }
    ok(body)
}

async fn create_template(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let (input, ignored): (TemplateInput, _) = json_body(&body, &["env[]"])?;
    let (template, did_create) = app.create_template(input).await?;
    ok_ignoring(
        json!({ "did_create": did_create, "template": template }),
        ignored,
    )
}

async fn get_template(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    ok(app.template(&id).await?)
}

async fn run_template(app: &App, template: &Template, who: &Caller, body: &[u8]) -> ApiResult {
    let (request, ignored): (TemplateExecution, _) = json_body(body, &["env[]"])?;
    let (launch, payload, dry_run) = request.into_parts();
    let run = app
        .execute_template(template, launch, payload, dry_run, who)
        .await?;
    let mut view = run_view(app, &run);
    if dry_run {
        view.engine_manifest = app.engine_manifest(&run).await?;
    }
    ok_ignoring(view, ignored)
}

async fn execute_template_by_id(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Who(who): Who,
    body: Bytes,
) -> ApiResult {
    let template = app.template(&id).await?;
    run_template(&app, &template, &who, &body).await
}

/// `{template_version}` is a number, or anything else (`latest`) for the
/// newest version.
async fn execute_template_by_name(
    State(app): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    Who(who): Who,
    body: Bytes,
) -> ApiResult {
    let template = app
        .template_by_name(&name, version.trim().parse::<u32>().ok())
        .await?;
    run_template(&app, &template, &who, &body).await
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
    let ids = app.template_version_ids(&name).await?;
    runs_page(&app, QueryPairs::parse(raw.as_deref()), Some(ids)).await
}
