//! Idempotence keys on SQLite: a row per key, claimed with an upsert whose
//! condition lets only an expired key, or the run being replaced, be taken.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, backend};
use crate::adapters::time_key;
use crate::error::StoreError;
use crate::ports::{IdempotenceKeys, KeyClaim};

#[async_trait]
impl IdempotenceKeys for SqliteStore {
    async fn find(&self, key: &str, now: DateTime<Utc>) -> Result<Option<KeyClaim>, StoreError> {
        let key = key.to_owned();
        let row: Option<(String, String)> = self
            .with(move |conn| {
                conn.query_row(
                    "SELECT run_id, expires_at FROM idempotence_keys WHERE key = ?1 AND expires_at > ?2",
                    params![key, time_key(now)],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)
            })
            .await?;
        row.map(|(run_id, expires_at)| {
            let expires_at = DateTime::parse_from_rfc3339(&expires_at)
                .map_err(backend)?
                .with_timezone(&Utc);
            Ok(KeyClaim { run_id, expires_at })
        })
        .transpose()
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
