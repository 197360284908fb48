//! What each job's runs taught its next ones, on SQLite: a row per job
//! (definition and command hash) holding the merged lessons as JSON, merged
//! in a transaction on the store's one connection.

use async_trait::async_trait;
use rusqlite::params;

use super::{SqliteStore, backend, body_of, encode};
use crate::domain::learning::{JobKey, Learned, Lesson};
use crate::error::StoreError;
use crate::ports::JobLessons;

const READ: &str = "SELECT body FROM job_lessons WHERE definition_id = ?1 AND command_hash = ?2";

fn read(conn: &rusqlite::Connection, job: &JobKey) -> Result<Learned, StoreError> {
    Ok(body_of(conn, READ, params![job.definition_id, job.command_hash])?.unwrap_or_default())
}

#[async_trait]
impl JobLessons for SqliteStore {
    async fn learned(&self, job: &JobKey) -> Result<Learned, StoreError> {
        let job = job.clone();
        self.with(move |conn| read(conn, &job)).await
    }

    async fn learn(&self, job: &JobKey, lesson: &Lesson) -> Result<(), StoreError> {
        let (job, lesson) = (job.clone(), lesson.clone());
        self.with(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let before = read(&tx, &job)?;
            let after = before.clone().merged(lesson);
            if after != before {
                tx.execute(
                    "INSERT INTO job_lessons (definition_id, command_hash, body) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (definition_id, command_hash) DO UPDATE SET body = excluded.body",
                    params![job.definition_id, job.command_hash, encode(&after)?],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }
}
