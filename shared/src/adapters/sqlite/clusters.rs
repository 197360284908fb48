//! The cluster registry on SQLite: one row, with a version.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, backend, decode, encode};
use crate::domain::cluster::Cluster;
use crate::error::StoreError;
use crate::ports::ClusterStore;

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
