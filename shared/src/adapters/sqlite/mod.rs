//! SQLite storage for `flotilla serve`: run event streams and projections
//! (with leaderboard tallies), definitions, the cluster registry,
//! idempotence keys, templates, job lessons, schedules and the durable
//! per-cluster run queue, in one database file. One file per port:
//!
//! - `runs`: the [`RunStore`](crate::ports::RunStore) (events and projection);
//! - `definitions`, `clusters`, `keys` (idempotence), `templates`,
//!   `lessons` (what each job's runs taught its next ones) and `schedules`;
//! - `queue`: the [`RunQueue`](crate::ports::RunQueue) and the consumer's
//!   claim, acknowledge and release;
//! - `sql`: the filter, sort and page clauses the lists share.
//!
//! One connection on a thread of its own serves every call in turn; SQLite
//! in WAL mode with `synchronous=NORMAL` keeps every committed write across a
//! crash of the process (a power loss may lose the last transactions). An append
//! writes its events and the new projection row in one transaction, after
//! checking the stream's version, exactly as the DynamoDB adapter does with a
//! conditional transaction.

mod clusters;
mod definitions;
mod keys;
mod lessons;
mod queue;
mod runs;
mod schedules;
mod sql;
mod templates;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use crate::error::StoreError;
use crate::ports::Clock;

pub use queue::ClaimedTicket;

/// Schema version kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 4;

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
CREATE INDEX IF NOT EXISTS runs_cluster_started ON runs (cluster, started_at)
    WHERE started_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS job_lessons (
    definition_id TEXT NOT NULL,
    command_hash  TEXT NOT NULL,
    body          TEXT NOT NULL,
    PRIMARY KEY (definition_id, command_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS templates (
    template_id   TEXT PRIMARY KEY,
    template_name TEXT NOT NULL,
    version       INTEGER NOT NULL,
    body          TEXT NOT NULL,
    UNIQUE (template_name, version)
);
"#;

/// Schema 2: run lists walk an index in the order they ask for. Every sort
/// key has an index ending in the `(queued_at, run_id)` tiebreak; a start or
/// end time sorts through a column that puts runs without one last in each
/// direction (`~` after every time ascending, the empty text before every
/// time descending). `run_env` holds each run's variables for env filters;
/// `run_counts` the number of runs per status, definition, alias and
/// cluster, kept in the append's transaction, for totals.
const MIGRATION_2: &str = r#"
ALTER TABLE runs ADD COLUMN started_asc TEXT GENERATED ALWAYS AS (COALESCE(started_at, '~')) VIRTUAL;
ALTER TABLE runs ADD COLUMN started_desc TEXT GENERATED ALWAYS AS (COALESCE(started_at, '')) VIRTUAL;
ALTER TABLE runs ADD COLUMN finished_asc TEXT GENERATED ALWAYS AS (COALESCE(finished_at, '~')) VIRTUAL;
ALTER TABLE runs ADD COLUMN finished_desc TEXT GENERATED ALWAYS AS (COALESCE(finished_at, '')) VIRTUAL;
DROP INDEX IF EXISTS runs_by_status;
DROP INDEX IF EXISTS runs_by_definition;
DROP INDEX IF EXISTS runs_by_queued_at;
CREATE INDEX runs_queued ON runs (queued_at, run_id);
CREATE INDEX runs_status ON runs (status, queued_at, run_id);
CREATE INDEX runs_definition ON runs (definition_id, queued_at, run_id);
CREATE INDEX runs_cluster ON runs (cluster, queued_at, run_id);
CREATE INDEX runs_alias ON runs (alias, queued_at, run_id);
CREATE INDEX runs_group ON runs (group_name, queued_at, run_id);
CREATE INDEX runs_owner ON runs (owner, queued_at, run_id);
CREATE INDEX runs_started_asc ON runs (started_asc, queued_at, run_id);
CREATE INDEX runs_started_desc ON runs (started_desc, queued_at, run_id);
CREATE INDEX runs_finished_asc ON runs (finished_asc, queued_at, run_id);
CREATE INDEX runs_finished_desc ON runs (finished_desc, queued_at, run_id);
CREATE TABLE run_env (
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    run_id    TEXT NOT NULL,
    PRIMARY KEY (name, value, queued_at, run_id)
) WITHOUT ROWID;
CREATE TABLE run_counts (
    status        TEXT NOT NULL,
    definition_id TEXT NOT NULL,
    alias         TEXT NOT NULL,
    cluster       TEXT NOT NULL,
    n             INTEGER NOT NULL,
    PRIMARY KEY (status, definition_id, alias, cluster)
) WITHOUT ROWID;
INSERT OR IGNORE INTO run_env (name, value, queued_at, run_id)
    SELECT json_extract(e.value, '$.name'), json_extract(e.value, '$.value'), r.queued_at, r.run_id
    FROM runs AS r, json_each(r.body, '$.spec.env') AS e;
INSERT INTO run_counts (status, definition_id, alias, cluster, n)
    SELECT status, definition_id, alias, cluster, COUNT(*) FROM runs
    GROUP BY status, definition_id, alias, cluster;
"#;

/// Schema 3: cluster caps and queue positions. `cluster_slots` holds how
/// many slots of each capped cluster runs hold, changed in the append's
/// transaction; `enqueued_at` is when a run's current ticket was put on the
/// queue, and `runs_waiting` orders each cluster's QUEUED runs by it, so a
/// run's position is one index range counted.
const MIGRATION_3: &str = r#"
CREATE TABLE cluster_slots (
    cluster TEXT PRIMARY KEY,
    held    INTEGER NOT NULL
) WITHOUT ROWID;
ALTER TABLE runs ADD COLUMN enqueued_at TEXT;
UPDATE runs SET enqueued_at = queued_at;
CREATE INDEX runs_waiting ON runs (cluster, enqueued_at, run_id) WHERE status = 'QUEUED';
"#;

/// Schema 4: leaderboards and schedules. `run_tallies` holds, per
/// dimension (definition, owner, group), day and key, the cost, CPU hours
/// and count of the runs that ended that day, added to in the append that
/// ends a run; `schedules` a row per schedule.
const MIGRATION_4: &str = r#"
CREATE TABLE run_tallies (
    dimension TEXT NOT NULL,
    day       TEXT NOT NULL,
    key       TEXT NOT NULL,
    label     TEXT NOT NULL,
    cost_usd  REAL NOT NULL,
    cpu_hours REAL NOT NULL,
    runs      INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    PRIMARY KEY (dimension, day, key)
) WITHOUT ROWID;
CREATE TABLE schedules (
    schedule_id TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    body        TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Appends between two `PRAGMA optimize` runs, which keep the query
/// planner's statistics fresh as the tables grow.
const OPTIMIZE_EVERY: u64 = 10_000;

/// Work for the connection's thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The SQLite store; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: std::sync::mpsc::Sender<Job>,
    enqueued: Arc<tokio::sync::Notify>,
    clock: Arc<dyn Clock>,
    appends: Arc<std::sync::atomic::AtomicU64>,
}

impl SqliteStore {
    /// Opens (and creates or migrates) the database at `path`; the times it
    /// records (when an event was stored, when a ticket was enqueued) are
    /// read off `clock`.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path).map_err(backend)?;
        // One process owns the database (the data directory's lock says so):
        // it holds SQLite's lock for as long as it runs, so no transaction
        // takes a file lock, and reads go through memory-mapped pages.
        conn.execute_batch(
            "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA busy_timeout = 5000; PRAGMA mmap_size = 268435456; PRAGMA cache_size = -65536;",
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
        if version < SCHEMA_VERSION {
            let tx = conn.transaction().map_err(backend)?;
            if version < 2 {
                tx.execute_batch(MIGRATION_2).map_err(backend)?;
            }
            if version < 3 {
                tx.execute_batch(MIGRATION_3).map_err(backend)?;
            }
            tx.execute_batch(MIGRATION_4).map_err(backend)?;
            tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
        }
        // Statistics for the planner (sampled, so this stays quick at any
        // size): which index serves a list depends on how many rows a
        // filter keeps.
        conn.execute_batch("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;")
            .map_err(backend)?;
        // The connection lives on a thread of its own, which runs every call
        // in turn: no lock to take, no blocking pool to hop through. It ends,
        // closing the database, when the last clone of the store is dropped.
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("flotilla-sqlite".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(job) = queue.recv() {
                    job(&mut conn);
                }
            })
            .map_err(backend)?;
        Ok(Self {
            jobs,
            enqueued: Arc::new(tokio::sync::Notify::new()),
            clock,
            appends: Arc::default(),
        })
    }

    /// Notified after every enqueue, so a consumer can wait instead of polling.
    pub fn enqueued(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.enqueued)
    }

    /// Runs `f` with the connection, on the connection's thread.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = answer.send(f(conn));
            }))
            .map_err(|_| backend("the SQLite connection's thread has ended"))?;
        answered
            .await
            .map_err(|_| backend("the SQLite connection's thread ended during a call"))?
    }

    /// Now, by the store's clock.
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

fn backend(e: impl Into<crate::error::BoxError>) -> StoreError {
    StoreError::backend(e)
}

fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(backend)
}

/// The JSON `body` of the one row `sql` selects with `params`, decoded.
fn body_of<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<T>, StoreError> {
    use rusqlite::OptionalExtension;
    conn.query_row(sql, params, |r| r.get::<_, String>(0))
        .optional()
        .map_err(backend)?
        .map(|b| decode(&b))
        .transpose()
}

/// The JSON `body` of every row `sql` selects with `params`, decoded, in order.
fn bodies_of<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>, StoreError> {
    let mut select = conn.prepare_cached(sql).map_err(backend)?;
    let rows = select
        .query_map(params, |r| r.get::<_, String>(0))
        .map_err(backend)?;
    rows.map(|b| decode(&b.map_err(backend)?)).collect()
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(backend)
}

fn unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// A store in a fresh temporary directory, on a manual clock.
#[cfg(test)]
fn test_store() -> (
    tempfile::TempDir,
    SqliteStore,
    Arc<crate::ports::ManualClock>,
) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(crate::ports::ManualClock::at(crate::testing::scenario::t(
        0,
    )));
    let store = SqliteStore::open(&dir.path().join("test.db"), clock.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    (dir, store, clock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::contract;

    #[tokio::test]
    async fn sqlite_passes_the_run_store_contract() {
        let (_dir, store, _) = test_store();
        contract::event_store_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_holds_a_clusters_cap_under_racing_admissions() {
        let (_dir, store, _) = test_store();
        contract::cluster_slots_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_counts_a_queued_runs_place_in_its_clusters_queue_and_reads_its_recent_starts() {
        let (_dir, store, _) = test_store();
        contract::queue_position_contract(&store).await;
        contract::recent_starts_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_tallies_each_ended_run_once_per_dimension_however_often_its_end_arrives() {
        let (_dir, store, _) = test_store();
        contract::tallies_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_lets_exactly_one_racing_append_win() {
        let (_dir, store, _) = test_store();
        contract::concurrent_append_contract(&store).await;
    }

    /// A database of schema 1 (the runs table without the list columns,
    /// indexes, env rows and counts) opens as schema 2 with every run's env
    /// and count filled in.
    #[tokio::test]
    async fn a_schema_one_database_is_migrated_with_its_runs_envs_and_counts() {
        use crate::ports::RunStore;
        let (dir, store, clock) = test_store();
        contract::run_read_model_contract(&store).await;
        let before = store
            .list(&crate::domain::query::RunQuery::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(store);
        let path = dir.path().join("test.db");
        // Back to schema 1, as an older flotilla left it (waiting, if need
        // be, for the store's thread to let go of its lock).
        let conn = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        conn.execute_batch(
            "DROP TABLE run_tallies; DROP TABLE schedules; DROP INDEX runs_waiting; ALTER TABLE runs DROP COLUMN enqueued_at; DROP TABLE cluster_slots; \
             DROP INDEX runs_queued; DROP INDEX runs_status; DROP INDEX runs_definition; \
             DROP INDEX runs_cluster; DROP INDEX runs_alias; DROP INDEX runs_group; DROP INDEX runs_owner; \
             DROP INDEX runs_started_asc; DROP INDEX runs_started_desc; \
             DROP INDEX runs_finished_asc; DROP INDEX runs_finished_desc; \
             ALTER TABLE runs DROP COLUMN started_asc; ALTER TABLE runs DROP COLUMN started_desc; \
             ALTER TABLE runs DROP COLUMN finished_asc; ALTER TABLE runs DROP COLUMN finished_desc; \
             DROP TABLE run_env; DROP TABLE run_counts; \
             CREATE INDEX runs_by_status ON runs (status, queued_at); \
             PRAGMA user_version = 1;",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        drop(conn);
        let store = SqliteStore::open(&path, clock).unwrap_or_else(|e| panic!("{e}"));
        let after = store
            .list(&crate::domain::query::RunQuery::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            after, before,
            "the same runs, in the same order, with the same total"
        );
        let env = crate::domain::query::RunQuery {
            env: vec![crate::domain::EnvVar::new("MODEL", "v2")],
            ..Default::default()
        };
        assert_eq!(
            store
                .list(&env)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .total,
            1,
            "env rows filled in from the runs"
        );
        let stopped = crate::domain::query::RunQuery {
            statuses: vec![crate::domain::run::RunStatus::Stopped],
            ..Default::default()
        };
        let expected = before.items.iter().filter(|r| stopped.matches(r)).count() as u64;
        assert_eq!(
            store
                .list(&stopped)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .total,
            expected,
            "counts filled in from the runs"
        );
    }

    #[tokio::test]
    async fn sqlite_passes_the_run_list_contract() {
        let (_dir, store, _) = test_store();
        contract::run_read_model_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_passes_the_cluster_idempotence_template_and_job_lessons_contracts() {
        let (_dir, store, _) = test_store();
        contract::cluster_store_contract(&store).await;
        contract::idempotence_contract(&store).await;
        contract::template_store_contract(&store).await;
        contract::job_lessons_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_passes_the_schedule_store_contract() {
        let (_dir, store, _) = test_store();
        contract::schedule_store_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_passes_the_definition_store_contract() {
        let (_dir, store, _) = test_store();
        contract::definition_store_contract(&store).await;
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn the_projection_sqlite_stores_is_the_replay_of_the_events_it_stores(
            commands in proptest::collection::vec(crate::testing::strategy::any_command(), 0..30)
        ) {
            let (_dir, store, _) = test_store();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            runtime.block_on(contract::projection_is_the_replay_of_the_events(&store, "r-prop", commands));
        }
    }
}
