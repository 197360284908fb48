//! The run store on DynamoDB: a stream's events (`RUN#<id>` / `EVT#<seq>`),
//! its projection (`RUN#<id>` / `STATE`, with the list index keys) and the
//! list counters it changes, in one conditional transaction per append.
//! Lists are `lists`' own.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::{
    DynamoStore, Item, STATE_SK, TransactError, backend, body_of, event_sk, get_n, get_s, keys,
    run_pk, s, to_av, within_item_limit,
};
use crate::domain::event::{EVENT_SCHEMA_VERSION, RunEvent};
use crate::domain::query::{Page, RunQuery, time_key};
use crate::domain::run::{Run, RunState};
use crate::error::StoreError;
use crate::ports::{RecordedEvent, RunStore};

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

#[async_trait]
impl RunStore for DynamoStore {
    async fn append(
        &self,
        run_id: &str,
        expected: u64,
        events: &[RunEvent],
        projection: &Run,
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
        match self.transact(items).await {
            Ok(()) => {
                self.remember_status(run_id, version, projection.status);
                Ok(version)
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
