//! The route table: every operation of the API with its handler and what the
//! OpenAPI document says of it. [`super::router_with`] builds the router from
//! this table and [`super::openapi::document`] the document, so a route
//! cannot exist undocumented.

use axum::http::Method;
use axum::routing::{MethodRouter, delete, post};
use schemars::{JsonSchema, Schema, SchemaGenerator};

use super::AppState;
use crate::domain::cluster::Cluster;

/// Makes the schema of a body type.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// One method on one path.
pub struct Operation {
    /// HTTP method.
    pub method: Method,
    /// Path, with `{name}` parameters.
    pub path: String,
    /// What it does.
    pub summary: String,
    /// Group in the document.
    pub tag: &'static str,
    /// Query parameters it reads.
    pub query: Vec<&'static str>,
    /// Its JSON body, if it takes one.
    pub body: Option<SchemaFn>,
    /// Its 200 answer.
    pub response: SchemaFn,
    /// The handler.
    pub handler: MethodRouter<AppState>,
}

/// The query keys of a list: paging and sort, then its filters.
fn list_query(filters: &[&'static str]) -> Vec<&'static str> {
    super::input::PAGING_KEYS
        .iter()
        .chain(filters)
        .copied()
        .collect()
}

struct Table(Vec<Operation>);

impl Table {
    #[allow(clippy::too_many_arguments)]
    fn op(
        &mut self,
        method: Method,
        path: &str,
        summary: &str,
        tag: &'static str,
        query: &[&'static str],
        body: Option<SchemaFn>,
        response: SchemaFn,
        handler: MethodRouter<AppState>,
    ) {
        self.0.push(Operation {
            method,
            path: path.to_owned(),
            summary: summary.to_owned(),
            tag,
            query: query.to_vec(),
            body,
            response,
            handler,
        });
    }
}

/// Every operation of the API.
pub fn operations() -> Vec<Operation> {
    use super::*;
    let mut t = Table(Vec::new());
    let any = schema::<Value>;
    for v in ["v1", "v6"] {
        let p = |rest: &str| format!("/api/{v}{rest}");
        t.op(
            Method::GET,
            &p("/task"),
            "List definitions",
            "definitions",
            &list_query(super::input::DEFINITION_FILTER_KEYS),
            None,
            any,
            get(list_definitions),
        );
        t.op(
            Method::POST,
            &p("/task"),
            "Create a definition",
            "definitions",
            &[],
            Some(schema::<DefinitionInput>),
            schema::<Definition>,
            post(create_definition),
        );
        t.op(
            Method::GET,
            &p("/task/{definition_id}"),
            "Read a definition",
            "definitions",
            &[],
            None,
            schema::<Definition>,
            get(get_definition),
        );
        t.op(
            Method::PUT,
            &p("/task/{definition_id}"),
            "Update the fields given of a definition",
            "definitions",
            &[],
            Some(schema::<DefinitionInput>),
            schema::<Definition>,
            put(update_definition),
        );
        t.op(
            Method::DELETE,
            &p("/task/{definition_id}"),
            "Delete a definition (its runs stay)",
            "definitions",
            &[],
            None,
            any,
            delete(delete_definition),
        );
        t.op(
            Method::GET,
            &p("/task/alias/{alias}"),
            "Read a definition by alias",
            "definitions",
            &[],
            None,
            schema::<Definition>,
            get(get_definition_by_alias),
        );
        t.op(
            Method::PUT,
            &p("/task/alias/{alias}/execute"),
            "Launch a run of a definition by alias (run_tags.owner_id required)",
            "runs",
            &[],
            Some(schema::<LaunchRequest>),
            schema::<RunView>,
            put(execute_by_alias),
        );
        t.op(
            Method::GET,
            &p("/history"),
            "List runs",
            "runs",
            &list_query(super::input::RUN_FILTER_KEYS),
            None,
            any,
            get(list_runs),
        );
        t.op(
            Method::GET,
            &p("/history/{run_id}"),
            "Read a run",
            "runs",
            &[],
            None,
            schema::<RunView>,
            get(get_run),
        );
        t.op(
            Method::GET,
            &p("/task/history/{run_id}"),
            "Read a run",
            "runs",
            &[],
            None,
            schema::<RunView>,
            get(get_run),
        );
        t.op(
            Method::GET,
            &p("/task/{definition_id}/history"),
            "List the runs of a definition",
            "runs",
            &list_query(super::input::RUN_FILTER_KEYS),
            None,
            any,
            get(list_definition_runs),
        );
        t.op(
            Method::GET,
            &p("/task/{definition_id}/history/{run_id}"),
            "Read a run",
            "runs",
            &[],
            None,
            schema::<RunView>,
            get(get_definition_run),
        );
        t.op(
            Method::DELETE,
            &p("/task/{definition_id}/history/{run_id}"),
            "Stop a run",
            "runs",
            &[],
            None,
            any,
            delete(stop_run),
        );
        t.op(
            Method::GET,
            &p("/{run_id}/logs"),
            "A page of a run's log (last_seen pages; raw_text=true for plain text)",
            "runs",
            &["last_seen", "raw_text"],
            None,
            any,
            get(logs),
        );
        t.op(
            Method::GET,
            &p("/{run_id}/events"),
            "A run's timeline",
            "runs",
            &[],
            None,
            any,
            get(run_events),
        );
        t.op(
            Method::PUT,
            &p("/{run_id}/status"),
            "A run reports its own status",
            "runs",
            &[],
            Some(schema::<StatusReport>),
            any,
            put(report_status),
        );
        t.op(
            Method::GET,
            &p("/groups"),
            "Every group of the definitions",
            "definitions",
            &["name"],
            None,
            any,
            get(groups),
        );
        t.op(
            Method::GET,
            &p("/tags"),
            "Every tag of the definitions",
            "definitions",
            &["name"],
            None,
            any,
            get(tags),
        );
        t.op(
            Method::GET,
            &p("/health"),
            "Health",
            "service",
            &[],
            None,
            any,
            get(health),
        );
    }
    t.op(
        Method::GET,
        "/api/v6/{run_id}/status",
        "A run's status, with an ETag (If-None-Match answers 304)",
        "runs",
        &[],
        None,
        schema::<RunStatusView>,
        get(run_status),
    );
    t.op(
        Method::PUT,
        "/api/v1/task/{definition_id}/execute",
        "Launch a run with the v1 body (cluster, env, tier)",
        "runs",
        &[],
        Some(schema::<LaunchRequest>),
        schema::<RunView>,
        put(execute_v1),
    );
    t.op(
        Method::PUT,
        "/api/v2/task/{definition_id}/execute",
        "Launch a run (run_tags.owner_email and team_name required)",
        "runs",
        &[],
        Some(schema::<LaunchRequest>),
        schema::<RunView>,
        put(execute_v2),
    );
    for v in ["v4", "v6"] {
        t.op(
            Method::PUT,
            &format!("/api/{v}/task/{{definition_id}}/execute"),
            "Launch a run (run_tags.owner_id required)",
            "runs",
            &[],
            Some(schema::<LaunchRequest>),
            schema::<RunView>,
            put(execute_v6),
        );
    }
    t.op(
        Method::GET,
        "/api/v1/clusters",
        "Names of the clusters that take runs",
        "clusters",
        &[],
        None,
        any,
        get(list_cluster_names),
    );
    t.op(
        Method::GET,
        "/api/v6/clusters",
        "Every cluster",
        "clusters",
        &[],
        None,
        any,
        get(list_clusters),
    );
    t.op(
        Method::POST,
        "/api/v6/clusters",
        "Register a cluster",
        "clusters",
        &[],
        Some(schema::<ClusterInput>),
        any,
        post(create_cluster),
    );
    t.op(
        Method::GET,
        "/api/v6/clusters/{cluster_id}",
        "Read a cluster",
        "clusters",
        &[],
        None,
        schema::<Cluster>,
        get(get_cluster),
    );
    t.op(
        Method::PUT,
        "/api/v6/clusters/{cluster_id}",
        "Change the fields given of a cluster",
        "clusters",
        &[],
        Some(schema::<ClusterInput>),
        any,
        put(update_cluster),
    );
    t.op(
        Method::DELETE,
        "/api/v6/clusters/{cluster_id}",
        "Remove a cluster's registration",
        "clusters",
        &[],
        None,
        any,
        delete(delete_cluster),
    );
    t.op(
        Method::GET,
        "/api/v7/template",
        "List templates",
        "templates",
        &["latest_only", "limit", "offset", "sort_by", "order"],
        None,
        any,
        get(list_templates),
    );
    t.op(
        Method::POST,
        "/api/v7/template",
        "Create a template or its next version",
        "templates",
        &[],
        Some(schema::<TemplateInput>),
        any,
        post(create_template),
    );
    t.op(
        Method::GET,
        "/api/v7/template/{template_id}",
        "Read a template version",
        "templates",
        &[],
        None,
        schema::<Template>,
        get(get_template),
    );
    t.op(
        Method::PUT,
        "/api/v7/template/{template_id}/execute",
        "Run a template version",
        "templates",
        &[],
        Some(schema::<TemplateExecution>),
        schema::<RunView>,
        put(execute_template_by_id),
    );
    t.op(
        Method::PUT,
        "/api/v7/template/name/{template_name}/version/{template_version}/execute",
        "Run a template by name and version (latest for the newest)",
        "templates",
        &[],
        Some(schema::<TemplateExecution>),
        schema::<RunView>,
        put(execute_template_by_name),
    );
    t.op(
        Method::GET,
        "/api/v7/template/name/{template_name}/history",
        "Runs of every version of a template",
        "templates",
        &list_query(super::input::RUN_FILTER_KEYS),
        None,
        any,
        get(template_name_runs),
    );
    t.op(
        Method::GET,
        "/api/v7/template/history/{run_id}",
        "Read a template run",
        "templates",
        &[],
        None,
        schema::<RunView>,
        get(get_run),
    );
    t.op(
        Method::GET,
        "/api/v7/template/{template_id}/history",
        "Runs of a template version",
        "templates",
        &list_query(super::input::RUN_FILTER_KEYS),
        None,
        any,
        get(template_runs),
    );
    t.op(
        Method::GET,
        "/api/v7/template/{template_id}/history/{run_id}",
        "Read a template run",
        "templates",
        &[],
        None,
        schema::<RunView>,
        get(get_definition_run),
    );
    t.op(
        Method::DELETE,
        "/api/v7/template/{template_id}/history/{run_id}",
        "Stop a template run",
        "templates",
        &[],
        None,
        any,
        delete(stop_run),
    );
    t.0
}
