//! The run store on SQLite: `run_events` holds each stream, `runs` each
//! projection, written in one transaction after the version check with the
//! run's variables (`run_env`) and the counts of runs (`run_counts`).
//!
//! A list reads one index from its cursor (or offset) and stops after one
//! row more than its page: the sort key's index walked in order, or the
//! index of a filter that keeps few runs (by `run_counts`), then sorted; an
//! env filter on the default sort walks `run_env`'s key instead. Its total
//! comes from `run_counts` when it filters only by status, definition,
//! alias and cluster, and is otherwise counted up to [`COUNT_BOUND`].

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};

use super::sql::{order_sql, push_in, push_text_filter, push_time_range, where_sql};
use super::{OPTIMIZE_EVERY, SqliteStore, backend, decode, encode};
use crate::adapters::time_key;
use crate::domain::event::{EVENT_SCHEMA_VERSION, RunEvent};
use crate::domain::insights::{DayTally, Dimension, RunTally};
use crate::domain::query::{COUNT_BOUND, Page, RunQuery, RunSortField, SortOrder, TextFilter};
use crate::domain::run::{Run, RunState, RunStatus};
use crate::error::StoreError;
use crate::ports::{RecordedEvent, RunStore, SlotChange};

#[async_trait]
impl RunStore for SqliteStore {
    async fn append(
        &self,
        run_id: &str,
        expected: u64,
        events: &[RunEvent],
        projection: &Run,
    ) -> Result<u64, StoreError> {
        self.append_with_slot(run_id, expected, events, projection, &SlotChange::Keep)
            .await
    }

    async fn append_with_slot(
        &self,
        run_id: &str,
        expected: u64,
        events: &[RunEvent],
        projection: &Run,
        slot: &SlotChange,
    ) -> Result<u64, StoreError> {
        let slot = slot.clone();
        let run_id = run_id.to_owned();
        let events: Vec<(String, String)> = events
            .iter()
            .map(|e| Ok((e.name().to_owned(), encode(e)?)))
            .collect::<Result<_, StoreError>>()?;
        let projection_body = encode(projection)?;
        let p = projection.clone();
        let now = self.now();
        let appends = std::sync::Arc::clone(&self.appends);
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
            change_slots(&tx, &slot)?;
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
            let before: Option<[String; 4]> = tx
                .prepare_cached(
                    "SELECT status, definition_id, alias, cluster FROM runs WHERE run_id = ?1",
                )
                .map_err(backend)?
                .query_row([&run_id], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))
                .optional()
                .map_err(backend)?;
            tx.prepare_cached(
                "INSERT INTO runs (run_id, version, status, definition_id, alias, group_name, \
                 cluster, owner, queued_at, started_at, finished_at, body, enqueued_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (run_id) DO UPDATE SET version = excluded.version, \
                 status = excluded.status, definition_id = excluded.definition_id, \
                 alias = excluded.alias, group_name = excluded.group_name, \
                 cluster = excluded.cluster, owner = excluded.owner, \
                 queued_at = excluded.queued_at, started_at = excluded.started_at, \
                 finished_at = excluded.finished_at, body = excluded.body, \
                 enqueued_at = excluded.enqueued_at",
            )
            .map_err(backend)?
            .execute(params![
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
                projection_body,
                time_key(p.last_enqueued_at())
            ])
            .map_err(backend)?;
            let after = [
                p.status.as_str().to_owned(),
                p.spec.definition_id.clone(),
                p.spec.alias.clone(),
                p.spec.cluster.clone(),
            ];
            if before.is_none() {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO run_env (name, value, queued_at, run_id) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(backend)?;
                let queued = time_key(p.queued_at);
                for var in &p.spec.env {
                    insert
                        .execute(params![var.name, var.value, queued, run_id])
                        .map_err(backend)?;
                }
            }
            if before.as_ref() != Some(&after) {
                if let Some(old) = &before {
                    count(&tx, old, -1)?;
                }
                count(&tx, &after, 1)?;
            }
            let previous = before.as_ref().and_then(|b| RunStatus::parse(&b[0]));
            if let Some(tally) = RunTally::of(previous, &p) {
                add_tally(&tx, &tally)?;
            }
            tx.commit().map_err(backend)?;
            if appends.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % OPTIMIZE_EVERY
                == OPTIMIZE_EVERY - 1
            {
                conn.execute_batch("PRAGMA optimize").map_err(backend)?;
            }
            Ok(version)
        })
        .await
    }

    async fn tallies(
        &self,
        by: Dimension,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayTally>, StoreError> {
        self.with(move |conn| {
            let mut select = conn
                .prepare_cached(
                    "SELECT day, key, label, cost_usd, cpu_hours, runs, failed FROM run_tallies \
                     WHERE dimension = ?1 AND day >= ?2 AND day <= ?3",
                )
                .map_err(backend)?;
            let rows = select
                .query_map(
                    params![by.as_str(), from.to_string(), to.to_string()],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            DayTally {
                                day: NaiveDate::MIN,
                                key: r.get(1)?,
                                label: r.get(2)?,
                                cost_usd: r.get(3)?,
                                cpu_hours: r.get(4)?,
                                runs: r.get::<_, i64>(5)?.max(0) as u64,
                                failed: r.get::<_, i64>(6)?.max(0) as u64,
                            },
                        ))
                    },
                )
                .map_err(backend)?;
            rows.map(|row| {
                let (day, tally) = row.map_err(backend)?;
                let day = day.parse().map_err(backend)?;
                Ok(DayTally { day, ..tally })
            })
            .collect()
        })
        .await
    }

    async fn slots_held(&self, cluster: &str) -> Result<u64, StoreError> {
        let cluster = cluster.to_owned();
        self.with(move |conn| held(conn, &cluster)).await
    }

    async fn repair_slots(
        &self,
        cluster: &str,
        seen: u64,
        counted: u64,
    ) -> Result<bool, StoreError> {
        let cluster = cluster.to_owned();
        self.with(move |conn| {
            let changed = conn
                .execute(
                    "INSERT INTO cluster_slots (cluster, held) VALUES (?1, ?3) \
                     ON CONFLICT (cluster) DO UPDATE SET held = ?3 WHERE held = ?2",
                    params![cluster, seen as i64, counted as i64],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn queued_ahead(&self, run: &Run) -> Result<Option<u64>, StoreError> {
        let cluster = run.spec.cluster.clone();
        let enqueued = time_key(run.last_enqueued_at());
        let run_id = run.spec.run_id.clone();
        self.with(move |conn| {
            let n: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM runs INDEXED BY runs_waiting \
                     WHERE status = 'QUEUED' AND cluster = ?1 AND (enqueued_at, run_id) < (?2, ?3)",
                )
                .map_err(backend)?
                .query_row(params![cluster, enqueued, run_id], |r| r.get(0))
                .map_err(backend)?;
            Ok(Some(n as u64))
        })
        .await
    }

    async fn recent_starts(
        &self,
        cluster: &str,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let (cluster, since) = (cluster.to_owned(), time_key(since));
        let starts: Vec<String> = self
            .with(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT started_at FROM runs INDEXED BY runs_cluster_started \
                         WHERE cluster = ?1 AND started_at IS NOT NULL AND started_at >= ?2 \
                         ORDER BY started_at DESC LIMIT ?3",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![cluster, since, limit], |r| r.get(0))
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await?;
        starts
            .iter()
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(backend)
            })
            .collect()
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
        self.with(move |conn| list_runs(conn, &query)).await
    }
}

/// Adds `by` to the count of runs with these (status, definition id, alias,
/// cluster), removing a count that reaches zero.
fn count(tx: &rusqlite::Transaction<'_>, key: &[String; 4], by: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO run_counts (status, definition_id, alias, cluster, n) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (status, definition_id, alias, cluster) DO UPDATE SET n = n + excluded.n",
    )
    .map_err(backend)?
    .execute(params![key[0], key[1], key[2], key[3], by])
    .map_err(backend)?;
    if by < 0 {
        tx.prepare_cached("DELETE FROM run_counts WHERE n <= 0")
            .map_err(backend)?
            .execute([])
            .map_err(backend)?;
    }
    Ok(())
}

/// The filters of `query` as clauses on `runs AS r`; `aliases`, when
/// given, are the aliases a one-value alias filter matches (see
/// [`aliases_matching`]), so the filter is exact and can use an index.
fn filters(
    query: &RunQuery,
    aliases: Option<&[String]>,
    clauses: &mut Vec<String>,
    args: &mut Vec<Value>,
) {
    push_in(
        "r.status",
        query.statuses.iter().map(|s| s.as_str().to_owned()),
        clauses,
        args,
    );
    push_in(
        "r.definition_id",
        query.definition_ids.iter().cloned(),
        clauses,
        args,
    );
    push_in("r.cluster", query.clusters.iter().cloned(), clauses, args);
    push_in("r.owner", query.owners.iter().cloned(), clauses, args);
    match aliases {
        Some([]) => clauses.push("0".to_owned()),
        Some(aliases) => push_in("r.alias", aliases.iter().cloned(), clauses, args),
        None => push_text_filter("r.alias", &query.alias, clauses, args),
    }
    push_text_filter("r.group_name", &query.group_name, clauses, args);
    push_text_filter(
        "json_extract(r.body, '$.spec.image')",
        &query.image,
        clauses,
        args,
    );
    push_text_filter(
        "json_extract(r.body, '$.spec.command')",
        &query.command,
        clauses,
        args,
    );
    push_text_filter(
        "json_extract(r.body, '$.exit_reason')",
        &query.exit_reason,
        clauses,
        args,
    );
    for var in &query.env {
        // A point lookup in run_env's key: name, value, queue time, run.
        clauses.push(
            "EXISTS (SELECT 1 FROM run_env AS e WHERE e.name = ? AND e.value = ? \
             AND e.queued_at = r.queued_at AND e.run_id = r.run_id)"
                .to_owned(),
        );
        args.push(Value::Text(var.name.clone()));
        args.push(Value::Text(var.value.clone()));
    }
    push_time_range("r.queued_at", query.queued_at, clauses, args);
    push_time_range("r.started_at", query.started_at, clauses, args);
    push_time_range("r.finished_at", query.finished_at, clauses, args);
}

/// Whether `run_counts` answers the query's total: it filters by nothing
/// but status, definition, alias and cluster.
fn counted(query: &RunQuery) -> bool {
    use crate::domain::query::RunFilter::{Alias, Cluster, Definition, Status};
    query.filters_only_by(&[Status, Definition, Alias, Cluster])
}

/// Runs the status, definition, alias and cluster filters leave together,
/// from `run_counts` (every run when the query has none of them).
fn kept_count(conn: &rusqlite::Connection, query: &RunQuery) -> Result<u64, StoreError> {
    let mut c = Vec::new();
    let mut a = Vec::new();
    push_in(
        "status",
        query.statuses.iter().map(|s| s.as_str().to_owned()),
        &mut c,
        &mut a,
    );
    push_in(
        "definition_id",
        query.definition_ids.iter().cloned(),
        &mut c,
        &mut a,
    );
    push_in("cluster", query.clusters.iter().cloned(), &mut c, &mut a);
    push_text_filter("alias", &query.alias, &mut c, &mut a);
    sum_counts(conn, &c, &a)
}

/// The sum of the kept counts that `clauses` select.
fn sum_counts(
    conn: &rusqlite::Connection,
    clauses: &[String],
    args: &[Value],
) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached(&format!(
            "SELECT COALESCE(SUM(n), 0) FROM run_counts {}",
            where_sql(clauses)
        ))
        .map_err(backend)?
        .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))
        .map_err(backend)?;
    Ok(n.max(0) as u64)
}

/// The aliases of stored runs that contain `part`: a one-value alias filter
/// matches exactly the runs with one of them. `run_counts` holds every
/// alias a run has, and is small.
fn aliases_matching(conn: &rusqlite::Connection, part: &str) -> Result<Vec<String>, StoreError> {
    let mut c = Vec::new();
    let mut a = Vec::new();
    push_text_filter("alias", &TextFilter(vec![part.to_owned()]), &mut c, &mut a);
    conn.prepare_cached(&format!(
        "SELECT DISTINCT alias FROM run_counts {}",
        where_sql(&c)
    ))
    .map_err(backend)?
    .query_map(rusqlite::params_from_iter(a.iter()), |r| r.get(0))
    .map_err(backend)?
    .collect::<Result<_, _>>()
    .map_err(backend)
}

/// How many runs each indexed exact filter keeps on its own, from
/// `run_counts`, with the index that reads them.
fn filter_counts(
    conn: &rusqlite::Connection,
    query: &RunQuery,
    aliases: Option<&[String]>,
) -> Result<Vec<(u64, &'static str)>, StoreError> {
    let aliases: Vec<String> = match (aliases, query.alias.0.as_slice()) {
        (Some(aliases), _) => aliases.to_vec(),
        (None, []) => Vec::new(),
        (None, many) => many.to_vec(),
    };
    let dimensions: [(&str, Vec<String>, &'static str); 4] = [
        (
            "status",
            query
                .statuses
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            "INDEXED BY runs_status",
        ),
        (
            "definition_id",
            query.definition_ids.clone(),
            "INDEXED BY runs_definition",
        ),
        ("cluster", query.clusters.clone(), "INDEXED BY runs_cluster"),
        ("alias", aliases, "INDEXED BY runs_alias"),
    ];
    let mut counts = Vec::new();
    for (column, values, index) in dimensions {
        if values.is_empty() {
            continue;
        }
        let mut c = Vec::new();
        let mut a = Vec::new();
        push_in(column, values.into_iter(), &mut c, &mut a);
        counts.push((sum_counts(conn, &c, &a)?, index));
    }
    Ok(counts)
}

/// Runs few enough to sort after filtering, rather than walk an index in
/// order until the page is full.
const SORT_AT_MOST: u64 = 2_000;

/// The index a run list reads, chosen here rather than by the planner
/// (whose sampled statistics cannot tell a status that keeps most runs
/// from one that keeps a few): the index of the exact filter that keeps the
/// fewest runs, when that is at most `sort_at_most`, whose rows are then
/// sorted; on the default sort, the index of a one-value filter, which holds
/// its runs in queue order; else the sort key's own index, walked in order.
fn index_for(
    query: &RunQuery,
    filter_counts: &[(u64, &'static str)],
    sort_at_most: u64,
) -> &'static str {
    let one = |values: usize| values == 1;
    if let Some((kept, index)) = filter_counts.iter().min_by_key(|(n, _)| *n)
        && *kept <= sort_at_most
    {
        return index;
    }
    match query.sort_by {
        RunSortField::QueuedAt if one(query.definition_ids.len()) => "INDEXED BY runs_definition",
        RunSortField::QueuedAt if one(query.owners.len()) => "INDEXED BY runs_owner",
        RunSortField::QueuedAt if one(query.clusters.len()) => "INDEXED BY runs_cluster",
        RunSortField::QueuedAt if one(query.statuses.len()) => "INDEXED BY runs_status",
        RunSortField::QueuedAt => "INDEXED BY runs_queued",
        RunSortField::RunId => "",
        RunSortField::ClusterName => "INDEXED BY runs_cluster",
        RunSortField::Status => "INDEXED BY runs_status",
        RunSortField::GroupName => "INDEXED BY runs_group",
        RunSortField::Alias => "INDEXED BY runs_alias",
        RunSortField::StartedAt if query.order == SortOrder::Asc => "INDEXED BY runs_started_asc",
        RunSortField::StartedAt => "INDEXED BY runs_started_desc",
        RunSortField::FinishedAt if query.order == SortOrder::Asc => "INDEXED BY runs_finished_asc",
        RunSortField::FinishedAt => "INDEXED BY runs_finished_desc",
    }
}

fn list_runs(conn: &rusqlite::Connection, query: &RunQuery) -> Result<Page<Run>, StoreError> {
    list_runs_sorting_at_most(conn, query, SORT_AT_MOST)
}

fn list_runs_sorting_at_most(
    conn: &rusqlite::Connection,
    query: &RunQuery,
    sort_at_most: u64,
) -> Result<Page<Run>, StoreError> {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    let aliases = match query.alias.0.as_slice() {
        [one] => Some(aliases_matching(conn, one)?),
        _ => None,
    };
    filters(query, aliases.as_deref(), &mut clauses, &mut args);

    // Where the rows come from: an env filter on the default sort walks
    // run_env's key, which holds that order.
    let asc = query.order == SortOrder::Asc;
    let driven_by_env = query.sort_by == RunSortField::QueuedAt && !query.env.is_empty();
    let from = if driven_by_env {
        clauses.push("e0.name = ? AND e0.value = ? AND r.run_id = e0.run_id".to_owned());
        args.push(Value::Text(query.env[0].name.clone()));
        args.push(Value::Text(query.env[0].value.clone()));
        "run_env AS e0 CROSS JOIN runs AS r".to_owned()
    } else {
        let counts = filter_counts(conn, query, aliases.as_deref())?;
        format!("runs AS r {}", index_for(query, &counts, sort_at_most))
    };

    // The total: maintained, or counted up to the bound (through whichever
    // index the planner likes: no order to keep).
    let (total, total_is_lower_bound) = if counted(query) {
        (kept_count(conn, query)?, false)
    } else if let [var] = query.env.as_slice()
        && query.filters_only_by(&[crate::domain::query::RunFilter::Env])
    {
        // run_env's key alone holds the matches: no run row is read.
        let n: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM run_env WHERE name = ? AND value = ? LIMIT ?)",
            )
            .map_err(backend)?
            .query_row(
                rusqlite::params![var.name, var.value, COUNT_BOUND as i64 + 1],
                |r| r.get(0),
            )
            .map_err(backend)?;
        let n = n.max(0) as u64;
        (n.min(COUNT_BOUND), n > COUNT_BOUND)
    } else {
        let count_from = if driven_by_env {
            from.as_str()
        } else {
            "runs AS r"
        };
        let mut a = args.clone();
        a.push(Value::Integer(COUNT_BOUND as i64 + 1));
        let n: i64 = conn
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM {count_from} {} LIMIT ?)",
                where_sql(&clauses)
            ))
            .map_err(backend)?
            .query_row(rusqlite::params_from_iter(a.iter()), |r| r.get(0))
            .map_err(backend)?;
        let n = n.max(0) as u64;
        (n.min(COUNT_BOUND), n > COUNT_BOUND)
    };
    let tiebreak = if driven_by_env {
        ["e0.queued_at", "e0.run_id"]
    } else {
        ["r.queued_at", "r.run_id"]
    };
    let primary = match query.sort_by {
        RunSortField::RunId | RunSortField::QueuedAt => None,
        RunSortField::ClusterName => Some("r.cluster"),
        RunSortField::Status => Some("r.status"),
        RunSortField::GroupName => Some("r.group_name"),
        RunSortField::Alias => Some("r.alias"),
        RunSortField::StartedAt if asc => Some("r.started_asc"),
        RunSortField::StartedAt => Some("r.started_desc"),
        RunSortField::FinishedAt if asc => Some("r.finished_asc"),
        RunSortField::FinishedAt => Some("r.finished_desc"),
    };
    let columns: Vec<&str> = match query.sort_by {
        RunSortField::RunId => vec!["r.run_id"],
        _ => primary.into_iter().chain(tiebreak).collect(),
    };
    if let Some(after) = &query.after {
        let missing = if asc { "~" } else { "" };
        let mut values: Vec<String> = match query.sort_by {
            RunSortField::RunId => vec![after.run_id.clone()],
            RunSortField::QueuedAt => vec![],
            _ => vec![after.primary.clone().unwrap_or_else(|| missing.to_owned())],
        };
        if query.sort_by != RunSortField::RunId {
            values.extend([after.queued_at.clone(), after.run_id.clone()]);
        }
        let marks = vec!["?"; values.len()].join(", ");
        clauses.push(format!(
            "({}) {} ({marks})",
            columns.join(", "),
            if asc { ">" } else { "<" }
        ));
        args.extend(values.into_iter().map(Value::Text));
    }
    let dir = order_sql(query.order);
    let order_by: Vec<String> = columns.iter().map(|c| format!("{c} {dir}")).collect();
    let limit = query.paging.limit.min(i64::MAX as u64 - 1);
    args.push(Value::Integer(limit as i64 + 1));
    args.push(Value::Integer(
        query.paging.offset.min(i64::MAX as u64) as i64
    ));
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT r.body FROM {from} {} ORDER BY {} LIMIT ? OFFSET ?",
            where_sql(&clauses),
            order_by.join(", ")
        ))
        .map_err(backend)?;
    let bodies = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), |r| {
            r.get::<_, String>(0)
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    let more = bodies.len() as u64 > limit;
    let items = bodies
        .iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|b| decode(b))
        .collect::<Result<_, _>>()?;
    Ok(Page {
        items,
        total,
        total_is_lower_bound,
        more,
        resume_after: None,
    })
}

/// How many slots of `cluster` are held.
fn held(conn: &rusqlite::Connection, cluster: &str) -> Result<u64, StoreError> {
    let n: Option<i64> = conn
        .prepare_cached("SELECT held FROM cluster_slots WHERE cluster = ?1")
        .map_err(backend)?
        .query_row([cluster], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

/// Takes or gives back a slot in the append's transaction; a take with every
/// slot held is refused, and the transaction with it.
fn change_slots(tx: &rusqlite::Transaction<'_>, slot: &SlotChange) -> Result<(), StoreError> {
    match slot {
        SlotChange::Keep => Ok(()),
        SlotChange::Take { cluster, cap } => {
            let taken = tx
                .prepare_cached(
                    "INSERT INTO cluster_slots (cluster, held) VALUES (?1, 1) \
                     ON CONFLICT (cluster) DO UPDATE SET held = held + 1 WHERE held < ?2",
                )
                .map_err(backend)?
                .execute(params![cluster, cap])
                .map_err(backend)?;
            if taken == 1 {
                Ok(())
            } else {
                Err(StoreError::AtCap {
                    cluster: cluster.clone(),
                    held: held(tx, cluster)?,
                    cap: *cap,
                })
            }
        }
        SlotChange::Release { cluster } => {
            tx.prepare_cached(
                "UPDATE cluster_slots SET held = MAX(held - 1, 0) WHERE cluster = ?1",
            )
            .map_err(backend)?
            .execute([cluster])
            .map_err(backend)?;
            Ok(())
        }
    }
}

/// Adds an ended run to its day's tallies, one per dimension.
fn add_tally(tx: &rusqlite::Transaction<'_>, tally: &RunTally) -> Result<(), StoreError> {
    let mut upsert = tx
        .prepare_cached(
            "INSERT INTO run_tallies (dimension, day, key, label, cost_usd, cpu_hours, runs, failed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7) \
             ON CONFLICT (dimension, day, key) DO UPDATE SET label = excluded.label, \
             cost_usd = cost_usd + excluded.cost_usd, cpu_hours = cpu_hours + excluded.cpu_hours, \
             runs = runs + 1, failed = failed + excluded.failed",
        )
        .map_err(backend)?;
    let day = tally.day.to_string();
    for (dimension, key, label) in &tally.keys {
        upsert
            .execute(params![
                dimension.as_str(),
                day,
                key,
                label,
                tally.cost_usd,
                tally.cpu_hours,
                i64::from(tally.failed)
            ])
            .map_err(backend)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::query::{Paging, RunSortField, TextFilter};
    use crate::domain::run::RunStatus;

    /// Every index a list may be sent to answers as the in-memory twin
    /// does: filter indexes whose rows are sorted, and sort indexes walked
    /// in order with the filters applied on the way.
    #[tokio::test]
    async fn every_index_choice_answers_the_same_rows_in_the_same_order() {
        let (_dir, store, _) = super::super::test_store();
        crate::testing::contract::run_read_model_contract(&store).await;
        let everything = store
            .list(&RunQuery::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .items;
        let filters = [
            RunQuery::default(),
            RunQuery {
                statuses: vec![RunStatus::Stopped],
                ..RunQuery::default()
            },
            RunQuery {
                statuses: vec![RunStatus::Queued, RunStatus::Stopped],
                ..RunQuery::default()
            },
            RunQuery {
                clusters: vec!["c1".into()],
                ..RunQuery::default()
            },
            RunQuery {
                owners: vec!["ana".into()],
                ..RunQuery::default()
            },
            RunQuery {
                alias: TextFilter(vec!["alpha".into()]),
                ..RunQuery::default()
            },
            RunQuery {
                definition_ids: vec![everything[0].spec.definition_id.clone()],
                ..RunQuery::default()
            },
        ];
        for filter in filters {
            for sort_by in RunSortField::ALL.iter().copied() {
                for order in [SortOrder::Asc, SortOrder::Desc] {
                    let q = RunQuery {
                        sort_by,
                        order,
                        paging: Paging {
                            limit: 3,
                            offset: 0,
                        },
                        ..filter.clone()
                    };
                    let mut expected: Vec<Run> = everything
                        .iter()
                        .filter(|r| q.matches(r))
                        .cloned()
                        .collect();
                    q.sort(&mut expected);
                    let expected = q.page(expected);
                    for sort_at_most in [0, u64::MAX] {
                        let got = store
                            .with({
                                let q = q.clone();
                                move |conn| list_runs_sorting_at_most(conn, &q, sort_at_most)
                            })
                            .await
                            .unwrap_or_else(|e| panic!("{q:?}: {e}"));
                        let ids = |p: &Page<Run>| {
                            p.items
                                .iter()
                                .map(|r| r.spec.run_id.clone())
                                .collect::<Vec<_>>()
                        };
                        assert_eq!(
                            ids(&got),
                            ids(&expected),
                            "{q:?} sorting at most {sort_at_most}"
                        );
                        assert_eq!(
                            (got.total, got.more),
                            (expected.total, expected.more),
                            "{q:?}"
                        );
                    }
                }
            }
        }
    }
}
