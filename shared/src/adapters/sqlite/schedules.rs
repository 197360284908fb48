//! Schedules on SQLite: a row per schedule, its JSON in `body` and its
//! version beside it, the condition of every replacement.

use async_trait::async_trait;
use rusqlite::params;

use super::{SqliteStore, backend, bodies_of, body_of, encode};
use crate::domain::schedule::Schedule;
use crate::error::StoreError;
use crate::ports::ScheduleStore;

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn create_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let id = schedule.schedule_id.clone();
        let created = schedule.created_at.to_rfc3339();
        let body = encode(schedule)?;
        let version = schedule.version as i64;
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO schedules (schedule_id, version, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![id, version, created, body],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn schedule(&self, schedule_id: &str) -> Result<Option<Schedule>, StoreError> {
        let id = schedule_id.to_owned();
        self.with(move |conn| {
            body_of(
                conn,
                "SELECT body FROM schedules WHERE schedule_id = ?1",
                [id],
            )
        })
        .await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.with(|conn| {
            bodies_of(
                conn,
                "SELECT body FROM schedules ORDER BY created_at, schedule_id",
                [],
            )
        })
        .await
    }

    async fn save_schedule(&self, schedule: &Schedule, expected: u64) -> Result<bool, StoreError> {
        let id = schedule.schedule_id.clone();
        let mut saved = schedule.clone();
        saved.version = expected + 1;
        let body = encode(&saved)?;
        self.with(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE schedules SET version = ?2, body = ?3 WHERE schedule_id = ?1 AND version = ?4",
                    params![id, (expected + 1) as i64, body, expected as i64],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete_schedule(&self, schedule_id: &str) -> Result<bool, StoreError> {
        let id = schedule_id.to_owned();
        self.with(move |conn| {
            let deleted = conn
                .execute("DELETE FROM schedules WHERE schedule_id = ?1", [id])
                .map_err(backend)?;
            Ok(deleted == 1)
        })
        .await
    }
}
