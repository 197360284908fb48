//! The durable per-cluster run queue on SQLite: a row per ticket, unique per
//! (run, attempt), claimed by the local driver round-robin over clusters and
//! then acknowledged (deleted) or released (available again at a time).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, backend};
use crate::adapters::time_key;
use crate::error::StoreError;
use crate::ports::{RunQueue, RunTicket};

/// A ticket taken off the queue, to be acknowledged or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTicket {
    /// Queue position.
    pub seq: i64,
    /// The ticket.
    pub ticket: RunTicket,
}

impl SqliteStore {
    /// Takes the oldest available ticket, visiting clusters round-robin after
    /// `after_cluster` so one busy cluster cannot starve another, and
    /// passing over the clusters in `full` (at their cap).
    pub async fn claim(
        &self,
        after_cluster: Option<String>,
        now: DateTime<Utc>,
        full: &[String],
    ) -> Result<Option<ClaimedTicket>, StoreError> {
        let full = serde_json::to_string(full).map_err(backend)?;
        self.with(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let now = time_key(now);
            let pick = |tx: &rusqlite::Transaction<'_>, sql: &str, after: &str| {
                tx.query_row(sql, params![now, after, full], |r| {
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
                 WHERE claimed = 0 AND available_at <= ?1 AND cluster > ?2 \
                 AND cluster NOT IN (SELECT value FROM json_each(?3)) ORDER BY cluster, seq LIMIT 1";
            const FIRST: &str = "SELECT seq, run_id, attempt, cluster FROM queue \
                 WHERE claimed = 0 AND available_at <= ?1 AND cluster >= ?2 \
                 AND cluster NOT IN (SELECT value FROM json_each(?3)) ORDER BY cluster, seq LIMIT 1";
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

#[async_trait]
impl RunQueue for SqliteStore {
    async fn enqueue_after(
        &self,
        ticket: &RunTicket,
        delay: std::time::Duration,
    ) -> Result<(), StoreError> {
        let t = ticket.clone();
        let now = self.now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        self.with(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO queue (run_id, attempt, cluster, available_at) VALUES (?1, ?2, ?3, ?4)",
                params![t.run_id, t.attempt, t.cluster, time_key(now)],
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
    use crate::adapters::sqlite::test_store;
    use crate::ports::Clock;
    use crate::testing::contract;

    #[tokio::test]
    async fn sqlite_passes_the_run_queue_contract() {
        let (_dir, store, clock) = test_store();
        let drain = || async {
            let mut out = Vec::new();
            while let Some(c) = store
                .claim(None, clock.now(), &[])
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
        let (_dir, store, clock) = test_store();
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
            .claim(last.clone(), clock.now(), &[])
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
        let (_dir, store, _clock) = test_store();
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
        let (dir, store, clock) = test_store();
        let t = RunTicket {
            run_id: "r".into(),
            attempt: 1,
            cluster: "c".into(),
        };
        store.enqueue(&t).await.unwrap_or_else(|e| panic!("{e}"));
        let c = store
            .claim(None, clock.now(), &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("ticket"));
        store
            .release(c.seq, clock.now() + chrono::Duration::seconds(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            store
                .claim(None, clock.now(), &[])
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        let later = clock.now() + chrono::Duration::seconds(61);
        let c = store
            .claim(None, later, &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("ticket"));
        drop(store);
        let reopened = SqliteStore::open(&dir.path().join("test.db"), clock.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            reopened
                .release_all_claims()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            1
        );
        let again = reopened
            .claim(None, later, &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.map(|a| a.seq), Some(c.seq));
    }
}
