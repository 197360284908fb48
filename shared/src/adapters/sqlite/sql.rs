//! The clauses the SQLite lists share: text, env and time filters, `IN`
//! lists, ordering, and one page with its total.

use rusqlite::Connection;
use rusqlite::types::Value;

use super::{backend, decode};
use crate::adapters::time_key;
use crate::domain::EnvVar;
use crate::domain::query::{Page, SortOrder, TextFilter, TimeRange};
use crate::error::StoreError;

/// Adds a text filter: one value matches as a substring, several exactly.
pub(super) fn push_text_filter(
    column: &str,
    filter: &TextFilter,
    clauses: &mut Vec<String>,
    args: &mut Vec<Value>,
) {
    match filter.0.as_slice() {
        [] => {}
        [one] => {
            let escaped = one
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            clauses.push(format!("{column} LIKE ? ESCAPE '\\'"));
            args.push(Value::Text(format!("%{escaped}%")));
        }
        many => push_in(column, many.iter().cloned(), clauses, args),
    }
}

/// Each variable must be an element of the JSON array at `path` in `body`.
pub(super) fn push_env_filter(
    path: &str,
    env: &[EnvVar],
    clauses: &mut Vec<String>,
    args: &mut Vec<Value>,
) {
    for var in env {
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM json_each(body, '{path}') AS e \
             WHERE json_extract(e.value, '$.name') = ? AND json_extract(e.value, '$.value') = ?)"
        ));
        args.push(Value::Text(var.name.clone()));
        args.push(Value::Text(var.value.clone()));
    }
}

/// `since` inclusive, `until` exclusive, on a column holding [`time_key`] text.
pub(super) fn push_time_range(
    column: &str,
    range: TimeRange,
    clauses: &mut Vec<String>,
    args: &mut Vec<Value>,
) {
    if let Some(since) = range.since {
        clauses.push(format!("{column} >= ?"));
        args.push(Value::Text(time_key(since)));
    }
    if let Some(until) = range.until {
        clauses.push(format!("{column} < ?"));
        args.push(Value::Text(time_key(until)));
    }
}

pub(super) fn push_in(
    column: &str,
    values: impl ExactSizeIterator<Item = String>,
    clauses: &mut Vec<String>,
    args: &mut Vec<Value>,
) {
    if values.len() == 0 {
        return;
    }
    let marks = vec!["?"; values.len()].join(", ");
    clauses.push(format!("{column} IN ({marks})"));
    args.extend(values.map(Value::Text));
}

pub(super) fn where_sql(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

pub(super) fn order_sql(order: SortOrder) -> &'static str {
    match order {
        SortOrder::Asc => "ASC",
        SortOrder::Desc => "DESC",
    }
}

/// Runs a list query: `SELECT body … LIMIT/OFFSET` and the matching count.
pub(super) fn page_of<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    table: &str,
    clauses: &[String],
    args: Vec<Value>,
    order_by: String,
    limit: u64,
    offset: u64,
) -> Result<Page<T>, StoreError> {
    let filter = where_sql(clauses);
    let total: i64 = conn
        .query_row(
            &format!("SELECT COUNT(*) FROM {table} {filter}"),
            rusqlite::params_from_iter(args.iter()),
            |r| r.get(0),
        )
        .map_err(backend)?;
    let mut page_args = args;
    page_args.push(Value::Integer(limit.min(i64::MAX as u64) as i64));
    page_args.push(Value::Integer(offset.min(i64::MAX as u64) as i64));
    let mut stmt = conn
        .prepare(&format!(
            "SELECT body FROM {table} {filter} ORDER BY {order_by} LIMIT ? OFFSET ?"
        ))
        .map_err(backend)?;
    let bodies = stmt
        .query_map(rusqlite::params_from_iter(page_args.iter()), |r| {
            r.get::<_, String>(0)
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    let items: Vec<T> = bodies.iter().map(|b| decode(b)).collect::<Result<_, _>>()?;
    let total = total.max(0) as u64;
    let more = offset.saturating_add(items.len() as u64) < total;
    Ok(Page {
        items,
        total,
        total_is_lower_bound: false,
        more,
        resume_after: None,
    })
}
