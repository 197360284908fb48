//! SQLite storage for `flotilla serve`: run event streams, the run projection,
//! definitions and the durable per-cluster run queue, in one database file.
//!
//! One connection behind a mutex serves every call on a blocking thread; SQLite
//! in WAL mode with `synchronous=NORMAL` keeps every committed write across a
//! crash of the process (a power loss may lose the last transactions). An append
//! writes its events and the new projection row in one transaction, after
//! checking the stream's version, exactly as the DynamoDB adapter will do with a
//! conditional transaction.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use crate::adapters::time_key;
use crate::domain::EnvVar;
use crate::domain::cluster::Cluster;
use crate::domain::definition::Definition;
use crate::domain::event::{EVENT_SCHEMA_VERSION, RunEvent};
use crate::domain::query::{
    DefinitionQuery, DefinitionSortField, Page, RunQuery, RunSortField, SortOrder, TextFilter,
    TimeRange,
};
use crate::domain::run::{Run, RunState};
use crate::domain::template::Template;
use crate::error::StoreError;
use crate::ports::{
    ClusterStore, DefinitionStore, EventStore, IdempotenceKeys, RecordedEvent, RunQueue,
    RunReadModel, RunTicket, TemplateStore,
};

/// Schema version kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS definitions (
    definition_id TEXT PRIMARY KEY,
    alias         TEXT NOT NULL UNIQUE,
    group_name    TEXT NOT NULL,
    image         TEXT NOT NULL,
    memory        INTEGER,
    body          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_events (
    run_id         TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    event_type     TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    recorded_at    TEXT NOT NULL,
    body           TEXT NOT NULL,
    PRIMARY KEY (run_id, sequence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    version       INTEGER NOT NULL,
    status        TEXT NOT NULL,
    definition_id TEXT NOT NULL,
    alias         TEXT NOT NULL,
    group_name    TEXT NOT NULL,
    cluster       TEXT NOT NULL,
    owner         TEXT NOT NULL,
    queued_at     TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    body          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, queued_at);
CREATE INDEX IF NOT EXISTS runs_by_definition ON runs (definition_id, queued_at);
CREATE INDEX IF NOT EXISTS runs_by_queued_at ON runs (queued_at);
CREATE TABLE IF NOT EXISTS queue (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    cluster      TEXT NOT NULL,
    available_at TEXT NOT NULL,
    claimed      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run_id, attempt)
);
CREATE INDEX IF NOT EXISTS queue_by_cluster ON queue (cluster, claimed, seq);
CREATE TABLE IF NOT EXISTS cluster_registry (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    body    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotence_keys (
    key        TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    template_id   TEXT PRIMARY KEY,
    template_name TEXT NOT NULL,
    version       INTEGER NOT NULL,
    body          TEXT NOT NULL,
    UNIQUE (template_name, version)
);
"#;

/// A ticket taken off the queue, to be acknowledged or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTicket {
    /// Queue position.
    pub seq: i64,
    /// The ticket.
    pub ticket: RunTicket,
}

/// The SQLite store; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    enqueued: Arc<tokio::sync::Notify>,
}

fn backend(e: impl Into<crate::error::BoxError>) -> StoreError {
    StoreError::backend(e)
}

impl SqliteStore {
    /// Opens (and creates or migrates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(backend)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(backend)?;
        if version > SCHEMA_VERSION {
            return Err(backend(format!(
                "{} was written by a newer flotilla (schema {version}, this one knows {SCHEMA_VERSION}); upgrade flotilla",
                path.display()
            )));
        }
        conn.execute_batch(SCHEMA).map_err(backend)?;
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            enqueued: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Notified after every enqueue, so a consumer can wait instead of polling.
    pub fn enqueued(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.enqueued)
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| backend("the SQLite connection lock was poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(backend)?
    }

    /// Takes the oldest available ticket, visiting clusters round-robin after
    /// `after_cluster` so one busy cluster cannot starve another.
    pub async fn claim(
        &self,
        after_cluster: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Option<ClaimedTicket>, StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let now = time_key(now);
            let pick = |tx: &rusqlite::Transaction<'_>, sql: &str, after: &str| {
                tx.query_row(sql, params![now, after], |r| {
                    Ok(ClaimedTicket {
                        seq: r.get(0)?,
                        ticket: RunTicket {
                            run_id: r.get(1)?,
                            attempt: r.get(2)?,
                            cluster: r.get(3)?,
                        },
                    })
                })
                .optional()
                .map_err(backend)
            };
            const NEXT: &str = "SELECT seq, run_id, attempt, cluster FROM queue \
                 WHERE claimed = 0 AND available_at <= ?1 AND cluster > ?2 ORDER BY cluster, seq LIMIT 1";
            const FIRST: &str = "SELECT seq, run_id, attempt, cluster FROM queue \
                 WHERE claimed = 0 AND available_at <= ?1 AND cluster >= ?2 ORDER BY cluster, seq LIMIT 1";
            let after = after_cluster.unwrap_or_default();
            let found = match pick(&tx, NEXT, &after)? {
                Some(t) => Some(t),
                None => pick(&tx, FIRST, "")?,
            };
            if let Some(t) = &found {
                tx.execute("UPDATE queue SET claimed = 1 WHERE seq = ?1", [t.seq])
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(found)
        })
        .await
    }

    /// Removes a handled ticket.
    pub async fn ack(&self, seq: i64) -> Result<(), StoreError> {
        self.with(move |conn| {
            conn.execute("DELETE FROM queue WHERE seq = ?1", [seq])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    /// Puts a claimed ticket back, available again at `available_at`.
    pub async fn release(&self, seq: i64, available_at: DateTime<Utc>) -> Result<(), StoreError> {
        self.with(move |conn| {
            conn.execute(
                "UPDATE queue SET claimed = 0, available_at = ?2 WHERE seq = ?1",
                params![seq, time_key(available_at)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    /// Releases every claim; used at start-up, when no consumer can hold one.
    pub async fn release_all_claims(&self) -> Result<u64, StoreError> {
        self.with(|conn| {
            let n = conn
                .execute("UPDATE queue SET claimed = 0 WHERE claimed = 1", [])
                .map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }

    /// Tickets waiting, claimed or not.
    pub async fn queue_len(&self) -> Result<u64, StoreError> {
        self.with(|conn| {
            conn.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(backend)
        })
        .await
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(backend)
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(backend)
}

/// Adds a text filter: one value matches as a substring, several exactly.
fn push_text_filter(
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
fn push_env_filter(path: &str, env: &[EnvVar], clauses: &mut Vec<String>, args: &mut Vec<Value>) {
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
fn push_time_range(
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

fn push_in(
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

fn where_sql(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

fn order_sql(order: SortOrder) -> &'static str {
    match order {
        SortOrder::Asc => "ASC",
        SortOrder::Desc => "DESC",
    }
}

/// Runs a list query: `SELECT body … LIMIT/OFFSET` and the matching count.
fn page_of<T: serde::de::DeserializeOwned>(
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
    let items = bodies.iter().map(|b| decode(b)).collect::<Result<_, _>>()?;
    Ok(Page {
        items,
        total: total as u64,
    })
}

#[async_trait]
impl EventStore for SqliteStore {
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
            let recorded_at = time_key(Utc::now());
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
}

#[async_trait]
impl RunReadModel for SqliteStore {
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

fn unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

#[async_trait]
impl DefinitionStore for SqliteStore {
    async fn create(&self, definition: &Definition) -> Result<(), StoreError> {
        let d = definition.clone();
        let body = encode(definition)?;
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO definitions (definition_id, alias, group_name, image, memory, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    d.definition_id,
                    d.alias,
                    d.group_name,
                    d.image,
                    d.memory.map(|m| m as i64),
                    body
                ],
            )
            .map_err(|e| {
                if unique_violation(&e) {
                    StoreError::Duplicate(format!("definition with alias {}", d.alias))
                } else {
                    backend(e)
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn update(&self, definition: &Definition) -> Result<(), StoreError> {
        let d = definition.clone();
        let body = encode(definition)?;
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE definitions SET alias = ?2, group_name = ?3, image = ?4, memory = ?5, body = ?6 \
                     WHERE definition_id = ?1",
                    params![d.definition_id, d.alias, d.group_name, d.image, d.memory.map(|m| m as i64), body],
                )
                .map_err(|e| {
                    if unique_violation(&e) {
                        StoreError::Duplicate(format!("definition with alias {}", d.alias))
                    } else {
                        backend(e)
                    }
                })?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "definition {}",
                    d.definition_id
                )));
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, definition_id: &str) -> Result<bool, StoreError> {
        let id = definition_id.to_owned();
        self.with(move |conn| {
            let n = conn
                .execute("DELETE FROM definitions WHERE definition_id = ?1", [&id])
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn get(&self, definition_id: &str) -> Result<Option<Definition>, StoreError> {
        let id = definition_id.to_owned();
        self.with(move |conn| {
            conn.query_row(
                "SELECT body FROM definitions WHERE definition_id = ?1",
                [&id],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(backend)?
            .map(|b| decode(&b))
            .transpose()
        })
        .await
    }

    async fn get_by_alias(&self, alias: &str) -> Result<Option<Definition>, StoreError> {
        let alias = alias.to_owned();
        self.with(move |conn| {
            conn.query_row(
                "SELECT body FROM definitions WHERE alias = ?1",
                [&alias],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(backend)?
            .map(|b| decode(&b))
            .transpose()
        })
        .await
    }

    async fn list(&self, query: &DefinitionQuery) -> Result<Page<Definition>, StoreError> {
        let query = query.clone();
        self.with(move |conn| {
            let mut clauses = Vec::new();
            let mut args = Vec::new();
            push_text_filter("alias", &query.alias, &mut clauses, &mut args);
            push_text_filter("group_name", &query.group_name, &mut clauses, &mut args);
            push_text_filter("image", &query.image, &mut clauses, &mut args);
            push_env_filter("$.env", &query.env, &mut clauses, &mut args);
            let column = match query.sort_by {
                DefinitionSortField::Alias => "alias",
                DefinitionSortField::Image => "image",
                DefinitionSortField::GroupName => "group_name",
                DefinitionSortField::Memory => "memory",
            };
            let dir = order_sql(query.order);
            let order_by = format!("{column} {dir} NULLS LAST, alias {dir}");
            page_of(
                conn,
                "definitions",
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

#[async_trait]
impl ClusterStore for SqliteStore {
    async fn clusters(&self) -> Result<(Vec<Cluster>, u64), StoreError> {
        self.with(|conn| {
            let row: Option<(i64, String)> = conn
                .query_row(
                    "SELECT version, body FROM cluster_registry WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            match row {
                None => Ok((vec![], 0)),
                Some((version, body)) => Ok((decode(&body)?, version as u64)),
            }
        })
        .await
    }

    async fn save_clusters(&self, clusters: &[Cluster], expected: u64) -> Result<(), StoreError> {
        let body = encode(&clusters)?;
        self.with(move |conn| {
            let next = expected as i64 + 1;
            let changed = if expected == 0 {
                conn.execute(
                    "INSERT OR IGNORE INTO cluster_registry (id, version, body) VALUES (1, ?1, ?2)",
                    params![next, body],
                )
            } else {
                conn.execute(
                    "UPDATE cluster_registry SET version = ?1, body = ?2 WHERE id = 1 AND version = ?3",
                    params![next, body, expected as i64],
                )
            }
            .map_err(backend)?;
            if changed == 1 {
                return Ok(());
            }
            let actual: Option<i64> = conn
                .query_row("SELECT version FROM cluster_registry WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(backend)?;
            Err(StoreError::Conflict {
                expected,
                actual: actual.unwrap_or(0) as u64,
            })
        })
        .await
    }
}

#[async_trait]
impl IdempotenceKeys for SqliteStore {
    async fn find(&self, key: &str, now: DateTime<Utc>) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.with(move |conn| {
            conn.query_row(
                "SELECT run_id FROM idempotence_keys WHERE key = ?1 AND expires_at > ?2",
                params![key, time_key(now)],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn claim(
        &self,
        key: &str,
        run_id: &str,
        replacing: Option<&str>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (key, run_id, replacing) = (
            key.to_owned(),
            run_id.to_owned(),
            replacing.map(str::to_owned),
        );
        self.with(move |conn| {
            let changed = conn
                .execute(
                    "INSERT INTO idempotence_keys (key, run_id, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at \
                     WHERE idempotence_keys.expires_at <= ?4 OR idempotence_keys.run_id = ?5",
                    params![key, run_id, time_key(expires_at), time_key(now), replacing],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }
}

#[async_trait]
impl TemplateStore for SqliteStore {
    async fn create(&self, template: &Template) -> Result<(), StoreError> {
        let t = template.clone();
        let body = encode(template)?;
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO templates (template_id, template_name, version, body) VALUES (?1, ?2, ?3, ?4)",
                params![t.template_id, t.template_name, t.version, body],
            )
            .map_err(|e| {
                if unique_violation(&e) {
                    StoreError::Duplicate(format!(
                        "template {} version {}",
                        t.template_name, t.version
                    ))
                } else {
                    backend(e)
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn get(&self, template_id: &str) -> Result<Option<Template>, StoreError> {
        let id = template_id.to_owned();
        self.with(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM templates WHERE template_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            body.map(|b| decode(&b)).transpose()
        })
        .await
    }

    async fn versions(&self, name: &str) -> Result<Vec<Template>, StoreError> {
        let name = name.to_owned();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare("SELECT body FROM templates WHERE template_name = ?1 ORDER BY version")
                .map_err(backend)?;
            let bodies = stmt
                .query_map([name], |r| r.get::<_, String>(0))
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            bodies.iter().map(|b| decode(b)).collect()
        })
        .await
    }

    async fn all(&self) -> Result<Vec<Template>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare("SELECT body FROM templates ORDER BY template_name, version")
                .map_err(backend)?;
            let bodies = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            bodies.iter().map(|b| decode(b)).collect()
        })
        .await
    }
}

#[async_trait]
impl RunQueue for SqliteStore {
    async fn enqueue(&self, ticket: &RunTicket) -> Result<(), StoreError> {
        let t = ticket.clone();
        self.with(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO queue (run_id, attempt, cluster, available_at) VALUES (?1, ?2, ?3, ?4)",
                params![t.run_id, t.attempt, t.cluster, time_key(Utc::now())],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await?;
        self.enqueued.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::contract;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store =
            SqliteStore::open(&dir.path().join("test.db")).unwrap_or_else(|e| panic!("{e}"));
        (dir, store)
    }

    #[tokio::test]
    async fn sqlite_passes_the_event_store_contract() {
        let (_dir, store) = store();
        contract::event_store_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_lets_exactly_one_racing_append_win() {
        let (_dir, store) = store();
        contract::concurrent_append_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_passes_the_run_read_model_contract() {
        let (_dir, store) = store();
        contract::run_read_model_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_passes_the_cluster_idempotence_and_template_contracts() {
        let (_dir, store) = store();
        contract::cluster_store_contract(&store).await;
        contract::idempotence_contract(&store).await;
        contract::template_store_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_passes_the_definition_store_contract() {
        let (_dir, store) = store();
        contract::definition_store_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_passes_the_run_queue_contract() {
        let (_dir, store) = store();
        let drain = || async {
            let mut out = Vec::new();
            while let Some(c) = store
                .claim(None, Utc::now())
                .await
                .unwrap_or_else(|e| panic!("{e}"))
            {
                store.ack(c.seq).await.unwrap_or_else(|e| panic!("{e}"));
                out.push(c.ticket);
            }
            out
        };
        contract::run_queue_contract(&store, drain).await;
    }

    #[tokio::test]
    async fn the_queue_takes_clusters_in_turn_so_a_busy_one_cannot_starve_another() {
        let (_dir, store) = store();
        for i in 0..3 {
            let t = RunTicket {
                run_id: format!("a{i}"),
                attempt: 1,
                cluster: "busy".into(),
            };
            store.enqueue(&t).await.unwrap_or_else(|e| panic!("{e}"));
        }
        let t = RunTicket {
            run_id: "b0".into(),
            attempt: 1,
            cluster: "quiet".into(),
        };
        store.enqueue(&t).await.unwrap_or_else(|e| panic!("{e}"));
        let mut order = Vec::new();
        let mut last = None;
        while let Some(c) = store
            .claim(last.clone(), Utc::now())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        {
            last = Some(c.ticket.cluster.clone());
            order.push(c.ticket.run_id.clone());
            store.ack(c.seq).await.unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(order, ["a0", "b0", "a1", "a2"]);
    }

    #[tokio::test]
    async fn a_ticket_enqueued_twice_for_the_same_attempt_is_kept_once() {
        let (_dir, store) = store();
        let t = RunTicket {
            run_id: "r".into(),
            attempt: 1,
            cluster: "c".into(),
        };
        store.enqueue(&t).await.unwrap_or_else(|e| panic!("{e}"));
        store.enqueue(&t).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.queue_len().await.unwrap_or_else(|e| panic!("{e}")), 1);
    }

    #[tokio::test]
    async fn a_released_ticket_is_not_delivered_before_its_time_and_claims_survive_a_restart_as_released()
     {
        let (dir, store) = store();
        let t = RunTicket {
            run_id: "r".into(),
            attempt: 1,
            cluster: "c".into(),
        };
        store.enqueue(&t).await.unwrap_or_else(|e| panic!("{e}"));
        let c = store
            .claim(None, Utc::now())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("ticket"));
        store
            .release(c.seq, Utc::now() + chrono::Duration::seconds(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            store
                .claim(None, Utc::now())
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        let later = Utc::now() + chrono::Duration::seconds(61);
        let c = store
            .claim(None, later)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("ticket"));
        drop(store);
        let reopened =
            SqliteStore::open(&dir.path().join("test.db")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            reopened
                .release_all_claims()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            1
        );
        let again = reopened
            .claim(None, later)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.map(|a| a.seq), Some(c.seq));
    }
}
