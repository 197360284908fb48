//! The run store on DynamoDB: a stream's events (`RUN#<id>` / `EVT#<seq>`),
//! its projection (`RUN#<id>` / `STATE`, with the list index keys) and the
//! list counters it changes, in one conditional transaction per append.
//! Lists are `lists`' own.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use super::{
    DynamoStore, Item, STATE_SK, TransactError, backend, body_of, event_sk, get_n, get_s, keys,
    run_pk, s, to_av, within_item_limit,
};
use crate::domain::event::{EVENT_SCHEMA_VERSION, RunEvent};
use crate::domain::insights::{DayTally, Dimension, RunTally};
use crate::domain::query::{Page, RunQuery, time_key};
use crate::domain::run::{Run, RunState};
use crate::error::StoreError;
use crate::ports::{RecordedEvent, RunStore, SlotChange};

impl DynamoStore {
    pub(super) fn projection_item(run: &Run, version: u64) -> Result<Item, StoreError> {
        let spec = &run.spec;
        let queued_key = format!("{}#{}", time_key(run.queued_at), spec.run_id);
        let mut item = Item::new();
        item.insert(keys::PK.into(), s(run_pk(&spec.run_id)));
        item.insert(keys::SK.into(), s(STATE_SK));
        item.insert("version".into(), AttributeValue::N(version.to_string()));
        for (attr, at) in [
            (keys::STARTED_KEY, run.started_at),
            (keys::FINISHED_KEY, run.finished_at),
        ] {
            if let Some(at) = at {
                item.insert(attr.into(), s(format!("{}#{queued_key}", time_key(at))));
            }
        }
        item.insert(keys::QUEUED_KEY.into(), s(queued_key));
        item.insert(
            keys::RUNS_PK.into(),
            s(super::lists::runs_partition(super::lists::shard_of(
                &spec.run_id,
            ))),
        );
        item.insert(
            keys::DEF_PK.into(),
            s(format!("DEF#{}", spec.definition_id)),
        );
        item.insert(
            keys::STATUS_PK.into(),
            s(format!("STATUS#{}", run.status.as_str())),
        );
        item.insert(
            keys::CLUSTER_PK.into(),
            s(format!("CLUSTER#{}", spec.cluster)),
        );
        item.insert(keys::OWNER_PK.into(), s(format!("OWNER#{}", spec.owner)));
        if run.status == crate::domain::run::RunStatus::Queued {
            item.insert(keys::WAITING_PK.into(), s(waiting_pk(&spec.cluster)));
            item.insert(keys::WAITING_KEY.into(), s(waiting_key(run)));
        }
        item.insert("body".into(), to_av(run)?);
        Ok(item)
    }

    /// Writes runs' projections and the counters they fill as appends
    /// would have left them, without their events, in batches: for seeding
    /// a table to measure lists on (lists read nothing else). Not for a
    /// table the service writes to: the counters are set, not added to.
    pub async fn seed_runs(&self, runs: &[Run]) -> Result<(), StoreError> {
        self.seed_projections(runs).await?;
        self.seed_counters(&super::lists::counts_of(runs)).await
    }

    /// The projection half of [`DynamoStore::seed_runs`], for seeding a
    /// large set in parts and its counters once.
    pub async fn seed_projections(&self, runs: &[Run]) -> Result<(), StoreError> {
        let items = runs
            .iter()
            .map(|run| within_item_limit(Self::projection_item(run, 1)?))
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(items).await
    }
}

fn waiting_pk(cluster: &str) -> String {
    format!("WAITING#{cluster}")
}

fn waiting_key(run: &Run) -> String {
    format!("{}#{}", time_key(run.last_enqueued_at()), run.spec.run_id)
}

/// The item holding how many slots of a capped cluster are held.
fn slots_pk(cluster: &str) -> String {
    format!("SLOTS#{cluster}")
}
const SLOTS_SK: &str = "SLOTS";
const HELD: &str = "held";

impl DynamoStore {
    /// The write of a slot change, in an append's transaction.
    fn slot_update(&self, slot: &SlotChange) -> Result<Option<TransactWriteItem>, StoreError> {
        let update = match slot {
            SlotChange::Keep => return Ok(None),
            SlotChange::Take { cluster, cap } => Update::builder()
                .table_name(&self.table)
                .key(keys::PK, s(slots_pk(cluster)))
                .key(keys::SK, s(SLOTS_SK))
                .update_expression("ADD #held :one")
                .condition_expression("attribute_not_exists(#held) OR #held < :cap")
                .expression_attribute_names("#held", HELD)
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":cap", AttributeValue::N(cap.to_string())),
            // Unconditional, so an end is never refused; a count gone wrong
            // is set right by the sweep's repair.
            SlotChange::Release { cluster } => Update::builder()
                .table_name(&self.table)
                .key(keys::PK, s(slots_pk(cluster)))
                .key(keys::SK, s(SLOTS_SK))
                .update_expression("ADD #held :minus")
                .expression_attribute_names("#held", HELD)
                .expression_attribute_values(":minus", AttributeValue::N("-1".into())),
        };
        let update = update.build().map_err(backend)?;
        Ok(Some(TransactWriteItem::builder().update(update).build()))
    }

    async fn held(&self, cluster: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .get_item(slots_pk(cluster), SLOTS_SK)
            .await?
            .and_then(|item| {
                item.get(HELD)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
            }))
    }
}

#[async_trait]
impl RunStore for DynamoStore {
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

    async fn tallies(
        &self,
        by: Dimension,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<DayTally>, StoreError> {
        self.read_tallies(by, from, to).await
    }

    async fn slots_held(&self, cluster: &str) -> Result<u64, StoreError> {
        Ok(self.held(cluster).await?.unwrap_or(0).max(0) as u64)
    }

    async fn repair_slots(
        &self,
        cluster: &str,
        seen: u64,
        counted: u64,
    ) -> Result<bool, StoreError> {
        let stored = self.held(cluster).await?;
        if stored.unwrap_or(0).max(0) as u64 != seen {
            return Ok(false);
        }
        let condition = match stored {
            Some(_) => "#held = :seen",
            None => "attribute_not_exists(#held)",
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(keys::PK, s(slots_pk(cluster)))
            .key(keys::SK, s(SLOTS_SK))
            .update_expression("SET #held = :counted")
            .condition_expression(condition)
            .expression_attribute_names("#held", HELD)
            .expression_attribute_values(":counted", AttributeValue::N(counted.to_string()));
        if let Some(stored) = stored {
            request =
                request.expression_attribute_values(":seen", AttributeValue::N(stored.to_string()));
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if super::condition_failed(&e) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    async fn queued_ahead(&self, run: &Run) -> Result<Option<u64>, StoreError> {
        let mut ahead = 0u64;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(keys::INDEX_WAITING)
                .key_condition_expression("#pk = :pk AND #key < :key")
                .expression_attribute_names("#pk", keys::WAITING_PK)
                .expression_attribute_names("#key", keys::WAITING_KEY)
                .expression_attribute_values(":pk", s(waiting_pk(&run.spec.cluster)))
                .expression_attribute_values(":key", s(waiting_key(run)))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend)?;
            ahead += page.count.max(0) as u64;
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(Some(ahead)),
            }
        }
    }

    async fn recent_starts(
        &self,
        cluster: &str,
        since: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<chrono::DateTime<chrono::Utc>>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(keys::INDEX_CLUSTER_STARTED)
            .key_condition_expression("#pk = :pk AND #key >= :since")
            .expression_attribute_names("#pk", keys::CLUSTER_PK)
            .expression_attribute_names("#key", keys::STARTED_KEY)
            .expression_attribute_values(":pk", s(format!("CLUSTER#{cluster}")))
            .expression_attribute_values(":since", s(time_key(since)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(backend)?;
        // `started_key` is `<started_at>#…`, the time a fixed-width key.
        page.items()
            .iter()
            .filter_map(|item| super::get_s(item, keys::STARTED_KEY))
            .map(|key| {
                let at = key.get(..crate::domain::query::TIME_KEY_LEN).unwrap_or(key);
                chrono::DateTime::parse_from_rfc3339(at)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(backend)
            })
            .collect()
    }

    async fn append_with_slot(
        &self,
        run_id: &str,
        expected: u64,
        events: &[RunEvent],
        projection: &Run,
        slot: &SlotChange,
    ) -> Result<u64, StoreError> {
        let recorded_at = self.clock.now().to_rfc3339();
        let mut items = Vec::with_capacity(events.len() + 1);
        let mut version = expected;
        for event in events {
            version += 1;
            let mut item = Item::new();
            item.insert(keys::PK.into(), s(run_pk(run_id)));
            item.insert(keys::SK.into(), s(event_sk(version)));
            item.insert("event_type".into(), s(event.name()));
            item.insert(
                "schema_version".into(),
                AttributeValue::N(EVENT_SCHEMA_VERSION.to_string()),
            );
            item.insert("recorded_at".into(), s(recorded_at.clone()));
            item.insert("body".into(), to_av(event)?);
            items.push(self.put(item, Some("attribute_not_exists(SK)"))?);
        }
        // The counters move with the status, so an append reads the status
        // it changes from; the version condition below makes that read
        // the one the transaction applies to.
        let previous = if expected == 0 {
            None
        } else if let Some(status) = self.remembered_status(run_id, expected) {
            Some(status)
        } else {
            match self.stored_status(run_id).await? {
                Some((actual, _)) if actual != expected => {
                    return Err(StoreError::Conflict { expected, actual });
                }
                Some((_, Some(status))) => Some(status),
                Some((_, None)) => return Err(backend("a stored run has no status")),
                None => {
                    return Err(StoreError::Conflict {
                        expected,
                        actual: 0,
                    });
                }
            }
        };
        let counters =
            self.counter_updates(run_id, &super::lists::counter_deltas(previous, projection))?;
        let state = within_item_limit(Self::projection_item(projection, version)?)?;
        let state_put = if expected == 0 {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(state))
                .condition_expression("attribute_not_exists(PK)")
                .build()
        } else {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(state))
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
                .build()
        }
        .map_err(backend)?;
        items.push(TransactWriteItem::builder().put(state_put).build());
        items.extend(counters);
        if let Some(tally) = RunTally::of(previous, projection) {
            items.extend(self.tally_updates(&tally)?);
        }
        let slot_at = match self.slot_update(slot)? {
            Some(update) => {
                items.push(update);
                Some(items.len() - 1)
            }
            None => None,
        };
        match self.transact(items).await {
            Ok(()) => {
                self.remember_status(run_id, version, projection.status);
                Ok(version)
            }
            Err(TransactError::Condition(failed))
                if slot_at.is_some_and(|i| failed.get(i).copied().unwrap_or(false)) =>
            {
                let (cluster, cap) = match slot {
                    SlotChange::Take { cluster, cap } => (cluster.clone(), *cap),
                    _ => return Err(backend("a slot given back was refused")),
                };
                let held = self.held(&cluster).await?.unwrap_or(0).max(0) as u64;
                Err(StoreError::AtCap { cluster, held, cap })
            }
            Err(TransactError::Condition(_)) => {
                let actual = self
                    .get_item(run_pk(run_id), STATE_SK)
                    .await?
                    .and_then(|i| get_n(&i, "version"))
                    .unwrap_or(0);
                Err(StoreError::Conflict { expected, actual })
            }
            Err(TransactError::Store(e)) => Err(e),
        }
    }

    async fn load(&self, run_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :evt)")
                .expression_attribute_values(":pk", s(run_pk(run_id)))
                .expression_attribute_values(":evt", s("EVT#"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend)?;
            for item in page.items.unwrap_or_default() {
                let sequence = get_s(&item, keys::SK)
                    .and_then(|sk| sk.strip_prefix("EVT#"))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| backend("event item without a sequence"))?;
                let recorded_at = get_s(&item, "recorded_at")
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .ok_or_else(|| backend("event item without recorded_at"))?;
                out.push(RecordedEvent {
                    sequence,
                    recorded_at,
                    event: body_of(&item)?,
                });
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(out),
            }
        }
    }
    async fn get(&self, run_id: &str) -> Result<RunState, StoreError> {
        match self.get_item(run_pk(run_id), STATE_SK).await? {
            None => Ok(RunState::default()),
            Some(item) => {
                let version = get_n(&item, "version").unwrap_or(0);
                let run: Run = body_of(&item)?;
                self.remember_status(run_id, version, run.status);
                Ok(RunState {
                    version,
                    run: Some(run),
                })
            }
        }
    }

    async fn list(&self, query: &RunQuery) -> Result<Page<Run>, StoreError> {
        self.list_runs(query).await
    }
}
