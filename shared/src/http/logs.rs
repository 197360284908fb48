//! `/{run_id}/logs`: a run's log, a page at a time (`last_seen` pages) or
//! whole as plain text (`raw_text=true`), of its current attempt or of the
//! one `attempt=N` names.

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::input::QueryPairs;
use crate::http::routes::{Operation, V1_AND_V6, object_of};
use crate::http::{ApiResult, AppState, ok};

/// The log route, under v1 and v6.
pub fn routes() -> Vec<Operation> {
    V1_AND_V6
        .into_iter()
        .map(|v| {
            Operation::get(format!("{v}/{{run_id}}/logs"), logs)
                .doc(
                    "runs",
                    "A page of a run's log (last_seen pages; raw_text=true for plain text; attempt=N for an earlier attempt)",
                )
                .query(&["last_seen", "raw_text", "attempt"])
                .returns_shape(|_| {
                    object_of(&[
                        ("log", json!({"type": "string"})),
                        ("last_seen", json!({"type": "string"})),
                    ])
                })
                .or_text()
        })
        .collect()
}

async fn logs(
    State(app): State<AppState>,
    Path(run_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = QueryPairs::parse(raw.as_deref());
    let attempt = match q.one("attempt") {
        None => None,
        Some(v) => Some(v.trim().parse::<u32>().map_err(|_| {
            ApiError::bad_request(format!(
                "attempt must be an attempt number (1 for the first), got \"{v}\""
            ))
        })?),
    };
    if q.flag("raw_text") {
        let stream = app.log_stream(&run_id, attempt).await?;
        return Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            axum::body::Body::from_stream(stream),
        )
            .into_response());
    }
    let last_seen = q.one("last_seen");
    let page = app.log_page(&run_id, attempt, last_seen.as_deref()).await?;
    ok(json!({ "log": page.log, "last_seen": page.last_seen }))
}
