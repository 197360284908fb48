//! `/{run_id}/logs`: a run's log, a page at a time (`last_seen` pages) or
//! whole as plain text (`raw_text=true`).

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use crate::http::input::QueryPairs;
use crate::http::routes::{Operation, V1_AND_V6};
use crate::http::{ApiResult, AppState, ok};

/// The log route, under v1 and v6.
pub fn routes() -> Vec<Operation> {
    V1_AND_V6
        .into_iter()
        .map(|v| {
            Operation::get(format!("{v}/{{run_id}}/logs"), logs)
                .doc(
                    "runs",
                    "A page of a run's log (last_seen pages; raw_text=true for plain text)",
                )
                .query(&["last_seen", "raw_text"])
        })
        .collect()
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
