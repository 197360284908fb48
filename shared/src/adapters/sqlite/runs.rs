//! The run store on SQLite: `run_events` holds each stream, `runs` each
//! projection, written in one transaction after the version check.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::sql::{order_sql, page_of, push_env_filter, push_in, push_text_filter, push_time_range};
use super::{SqliteStore, backend, decode, encode};
use crate::adapters::time_key;
use crate::domain::event::{EVENT_SCHEMA_VERSION, RunEvent};
use crate::domain::query::{Page, RunQuery, RunSortField};
use crate::domain::run::{Run, RunState};
use crate::error::StoreError;
use crate::ports::{RecordedEvent, RunStore};

#[async_trait]
impl RunStore for SqliteStore {
    async fn append(
        &self,
        run_id: &str,
        expected: u64,
        events: &[RunEvent],
        projection: &Run,
    ) -> Result<u64, StoreError> {
        let run_id = run_id.to_owned();
        let events: Vec<(String, String)> = events
            .iter()
            .map(|e| Ok((e.name().to_owned(), encode(e)?)))
            .collect::<Result<_, StoreError>>()?;
        let projection_body = encode(projection)?;
        let p = projection.clone();
        let now = self.now();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let actual: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(sequence), 0) FROM run_events WHERE run_id = ?1",
                    [&run_id],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if actual as u64 != expected {
                return Err(StoreError::Conflict {
                    expected,
                    actual: actual as u64,
                });
            }
            let recorded_at = time_key(now);
            let mut version = expected;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO run_events (run_id, sequence, event_type, schema_version, recorded_at, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(backend)?;
                for (name, body) in &events {
                    version += 1;
                    insert
                        .execute(params![
                            run_id,
                            version as i64,
                            name,
                            EVENT_SCHEMA_VERSION,
                            recorded_at,
                            body
                        ])
                        .map_err(backend)?;
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO runs (run_id, version, status, definition_id, alias, group_name, \
                 cluster, owner, queued_at, started_at, finished_at, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    run_id,
                    version as i64,
                    p.status.as_str(),
                    p.spec.definition_id,
                    p.spec.alias,
                    p.spec.group_name,
                    p.spec.cluster,
                    p.spec.owner,
                    time_key(p.queued_at),
                    p.started_at.map(time_key),
                    p.finished_at.map(time_key),
                    projection_body
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(version)
        })
        .await
    }

    async fn load(&self, run_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let run_id = run_id.to_owned();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT sequence, recorded_at, body FROM run_events WHERE run_id = ?1 ORDER BY sequence",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([&run_id], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            rows.into_iter()
                .map(|(sequence, recorded_at, body)| {
                    Ok(RecordedEvent {
                        sequence: sequence as u64,
                        recorded_at: DateTime::parse_from_rfc3339(&recorded_at)
                            .map_err(backend)?
                            .with_timezone(&Utc),
                        event: decode(&body)?,
                    })
                })
                .collect()
        })
        .await
    }
    async fn get(&self, run_id: &str) -> Result<RunState, StoreError> {
        let run_id = run_id.to_owned();
        self.with(move |conn| {
            let row = conn
                .prepare_cached("SELECT version, body FROM runs WHERE run_id = ?1")
                .map_err(backend)?
                .query_row([&run_id], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .optional()
                .map_err(backend)?;
            match row {
                None => Ok(RunState::default()),
                Some((version, body)) => Ok(RunState {
                    version: version as u64,
                    run: Some(decode(&body)?),
                }),
            }
        })
        .await
    }

    async fn list(&self, query: &RunQuery) -> Result<Page<Run>, StoreError> {
        let query = query.clone();
        self.with(move |conn| {
            let mut clauses = Vec::new();
            let mut args = Vec::new();
            push_in(
                "status",
                query.statuses.iter().map(|s| s.as_str().to_owned()),
                &mut clauses,
                &mut args,
            );
            push_in(
                "definition_id",
                query.definition_ids.iter().cloned(),
                &mut clauses,
                &mut args,
            );
            push_in(
                "cluster",
                query.clusters.iter().cloned(),
                &mut clauses,
                &mut args,
            );
            push_in(
                "owner",
                query.owners.iter().cloned(),
                &mut clauses,
                &mut args,
            );
            push_text_filter("alias", &query.alias, &mut clauses, &mut args);
            push_text_filter("group_name", &query.group_name, &mut clauses, &mut args);
            push_text_filter(
                "json_extract(body, '$.spec.image')",
                &query.image,
                &mut clauses,
                &mut args,
            );
            push_text_filter(
                "json_extract(body, '$.spec.command')",
                &query.command,
                &mut clauses,
                &mut args,
            );
            push_text_filter(
                "json_extract(body, '$.exit_reason')",
                &query.exit_reason,
                &mut clauses,
                &mut args,
            );
            push_env_filter("$.spec.env", &query.env, &mut clauses, &mut args);
            push_time_range("queued_at", query.queued_at, &mut clauses, &mut args);
            push_time_range("started_at", query.started_at, &mut clauses, &mut args);
            push_time_range("finished_at", query.finished_at, &mut clauses, &mut args);
            let column = match query.sort_by {
                RunSortField::RunId => "run_id",
                RunSortField::ClusterName => "cluster",
                RunSortField::Status => "status",
                RunSortField::QueuedAt => "queued_at",
                RunSortField::StartedAt => "started_at",
                RunSortField::FinishedAt => "finished_at",
                RunSortField::GroupName => "group_name",
                RunSortField::Alias => "alias",
            };
            let dir = order_sql(query.order);
            let order_by = format!("{column} {dir} NULLS LAST, queued_at {dir}, run_id {dir}");
            page_of(
                conn,
                "runs",
                &clauses,
                args,
                order_by,
                query.paging.limit,
                query.paging.offset,
            )
        })
        .await
    }
}
