//! `/task`: job definitions (list, create, read by id or alias, update,
//! delete), and the groups and tags they use.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde_json::{Value, json};

use crate::app::DefinitionRef;
use crate::domain::definition::{Definition, DefinitionInput};
use crate::domain::query::Page;
use crate::http::access::Who;
use crate::http::input::{DEFINITION_FILTER_KEYS, QueryPairs, definition_query, json_body};
use crate::http::routes::{Operation, V1_AND_V6};
use crate::http::views::{ListMeta, page_envelope};
use crate::http::{ApiResult, AppState, ok, ok_ignoring};

/// Nested objects whose keys are matched case-insensitively in definition bodies.
const DEFINITION_NESTED: &[&str] = &["env[]"];

/// The definition routes, under v1 and v6.
pub fn routes() -> Vec<Operation> {
    let tag = "definitions";
    V1_AND_V6
        .into_iter()
        .flat_map(|v| {
            let p = |rest: &str| format!("{v}{rest}");
            [
                Operation::get(p("/task"), list_definitions)
                    .doc(tag, "List definitions")
                    .list_query(DEFINITION_FILTER_KEYS)
                    .returns_page::<Definition>("definitions"),
                Operation::post(p("/task"), create_definition)
                    .doc(tag, "Create a definition")
                    .body::<DefinitionInput>()
                    .returns::<Definition>(),
                Operation::get(p("/task/{definition_id}"), get_definition)
                    .doc(tag, "Read a definition")
                    .returns::<Definition>(),
                Operation::put(p("/task/{definition_id}"), update_definition)
                    .doc(tag, "Update the fields given of a definition")
                    .body::<DefinitionInput>()
                    .returns::<Definition>(),
                Operation::delete(p("/task/{definition_id}"), delete_definition)
                    .doc(tag, "Delete a definition (its runs stay)")
                    .returns_flag("deleted"),
                Operation::get(p("/task/alias/{alias}"), get_definition_by_alias)
                    .doc(tag, "Read a definition by alias")
                    .returns::<Definition>(),
                Operation::get(p("/groups"), groups)
                    .doc(tag, "Every group of the definitions")
                    .query(&["name"])
                    .returns_all::<String>("groups"),
                Operation::get(p("/tags"), tags)
                    .doc(tag, "Every tag of the definitions")
                    .query(&["name"])
                    .returns_all::<String>("tags"),
            ]
        })
        .collect()
}

async fn list_definitions(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = QueryPairs::parse(raw.as_deref());
    let query = definition_query(&q)?;
    let Page {
        items, total, more, ..
    } = app.list_definitions(&query).await?;
    let next_token = more.then(|| {
        crate::http::input::offset_token(
            query.fingerprint(),
            query.paging.offset + items.len() as u64,
        )
    });
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
            next_token,
            total_is_lower_bound: false,
        },
    ))
}

async fn create_definition(State(app): State<AppState>, Who(who): Who, body: Bytes) -> ApiResult {
    let (input, ignored): (DefinitionInput, _) = json_body(&body, DEFINITION_NESTED)?;
    ok_ignoring(app.create_definition(input, &who).await?, ignored)
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
    Who(who): Who,
    body: Bytes,
) -> ApiResult {
    let (input, ignored): (DefinitionInput, _) = json_body(&body, DEFINITION_NESTED)?;
    ok_ignoring(app.update_definition(&id, input, &who).await?, ignored)
}

async fn delete_definition(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Who(who): Who,
) -> ApiResult {
    app.delete_definition(&id, &who).await?;
    ok(json!({ "deleted": true }))
}

/// The values of a name list, filtered by the `name` query (a substring).
fn name_list(key: &str, values: BTreeSet<String>, q: &QueryPairs) -> ApiResult {
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
