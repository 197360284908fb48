//! DynamoDB storage (feature `aws`): run event streams, the run projection and
//! definitions in one table, designed by access pattern.
//!
//! | item | `PK` | `SK` | other keys |
//! | --- | --- | --- | --- |
//! | run event | `RUN#<run_id>` | `EVT#<sequence, 10 digits>` | |
//! | run projection | `RUN#<run_id>` | `STATE` | `runs_pk`, `def_pk`, `status_pk`, `cluster_pk`, `owner_pk`, all sorted by `queued_key` |
//! | definition | `DEF#<definition_id>` | `DEF` | `defs_pk` sorted by `alias` |
//! | alias guard (with a copy of the definition) | `ALIAS#<alias>` | `ALIAS` | |
//! | cluster registry (every cluster, one item) | `CLUSTERS` | `CLUSTERS` | |
//! | idempotence key | `IDEM#<key>` | `IDEM` | `expires_at` (TTL) |
//! | template version | `TPL#<template_id>` | `TPL` | `catalog_pk` sorted by `catalog_sk` |
//! | template version guard | `TPLVER#<name>#<version>` | `TPLVER` | |
//!
//! An append is one `TransactWriteItems`: each event `Put` with
//! `attribute_not_exists(SK)`, and the projection `Put` conditioned on the
//! version read; `ConditionalCheckFailed` among the cancellation reasons becomes
//! [`StoreError::Conflict`]. A definition and its alias guard are written in one
//! transaction, which makes aliases unique. Lists query one global secondary
//! index partition (the most selective the filters allow), never a Scan.
//! The key names, index names and item layout are the contract with the SAM
//! template; they are named once, in [`keys`] and [`TableLayout`].

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType,
    TransactWriteItem,
};

use crate::domain::cluster::Cluster;
use crate::domain::definition::Definition;
use crate::domain::event::{EVENT_SCHEMA_VERSION, RunEvent};
use crate::domain::query::{DefinitionQuery, Page, RunQuery, page_of};
use crate::domain::run::{Run, RunState};
use crate::domain::template::Template;
use crate::error::StoreError;
use crate::ports::{
    ClusterStore, DefinitionStore, EventStore, IdempotenceKeys, RecordedEvent, RunReadModel,
    TemplateStore,
};

/// Items one `TransactWriteItems` call may hold
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html>).
pub const MAX_TRANSACT_ITEMS: usize = 100;
/// Largest item DynamoDB stores
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html>).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// Attribute and index names of the table.
pub mod keys {
    /// Partition key.
    pub const PK: &str = "PK";
    /// Sort key.
    pub const SK: &str = "SK";
    /// Sort key of every run index: `<queued_at>#<run_id>`.
    pub const QUEUED_KEY: &str = "queued_key";
    /// Partition of the all-runs index.
    pub const RUNS_PK: &str = "runs_pk";
    /// Partition of the per-definition index.
    pub const DEF_PK: &str = "def_pk";
    /// Partition of the per-status index.
    pub const STATUS_PK: &str = "status_pk";
    /// Partition of the per-cluster index.
    pub const CLUSTER_PK: &str = "cluster_pk";
    /// Partition of the per-owner index.
    pub const OWNER_PK: &str = "owner_pk";
    /// Partition of the definitions index.
    pub const DEFS_PK: &str = "defs_pk";
    /// Sort key of the definitions index.
    pub const ALIAS: &str = "alias";
    /// Index of all runs, newest first.
    pub const INDEX_NEWEST: &str = "runs_by_queued_at";
    /// Runs of one definition.
    pub const INDEX_DEFINITION: &str = "runs_by_definition";
    /// Runs in one status.
    pub const INDEX_STATUS: &str = "runs_by_status";
    /// Runs on one cluster.
    pub const INDEX_CLUSTER: &str = "runs_by_cluster";
    /// Runs of one owner.
    pub const INDEX_OWNER: &str = "runs_by_owner";
    /// All definitions, by alias.
    pub const INDEX_DEFINITIONS: &str = "definitions_by_alias";
    /// The table's time-to-live attribute (epoch seconds): items that carry
    /// it, such as idempotence keys, expire on their own.
    pub const EXPIRES_AT: &str = "expires_at";
    /// Partition of the catalog index (templates).
    pub const CATALOG_PK: &str = "catalog_pk";
    /// Sort key of the catalog index: `<template_name>#<version, 10 digits>`.
    pub const CATALOG_SK: &str = "catalog_sk";
    /// Templates, by name and version.
    pub const INDEX_CATALOG: &str = "catalog";
}

/// The table's indexes: `(index name, partition attribute, sort attribute)`.
pub struct TableLayout;

impl TableLayout {
    /// Every global secondary index the code queries.
    pub const INDEXES: [(&'static str, &'static str, &'static str); 7] = [
        (keys::INDEX_NEWEST, keys::RUNS_PK, keys::QUEUED_KEY),
        (keys::INDEX_DEFINITION, keys::DEF_PK, keys::QUEUED_KEY),
        (keys::INDEX_STATUS, keys::STATUS_PK, keys::QUEUED_KEY),
        (keys::INDEX_CLUSTER, keys::CLUSTER_PK, keys::QUEUED_KEY),
        (keys::INDEX_OWNER, keys::OWNER_PK, keys::QUEUED_KEY),
        (keys::INDEX_DEFINITIONS, keys::DEFS_PK, keys::ALIAS),
        (keys::INDEX_CATALOG, keys::CATALOG_PK, keys::CATALOG_SK),
    ];
}

type Item = HashMap<String, AttributeValue>;

/// The DynamoDB store.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn backend(e: impl Into<crate::error::BoxError>) -> StoreError {
    StoreError::backend(e)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn run_pk(run_id: &str) -> String {
    format!("RUN#{run_id}")
}

fn event_sk(sequence: u64) -> String {
    format!("EVT#{sequence:010}")
}

const STATE_SK: &str = "STATE";
const DEF_SK: &str = "DEF";
const ALIAS_SK: &str = "ALIAS";

fn def_pk(id: &str) -> String {
    format!("DEF#{id}")
}

fn alias_pk(alias: &str) -> String {
    format!("ALIAS#{alias}")
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, key: &str) -> Option<u64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn body_of<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let body = item
        .get("body")
        .cloned()
        .ok_or_else(|| backend("item has no body"))?;
    serde_dynamo::from_attribute_value(body).map_err(backend)
}

fn to_av<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(backend)
}

/// Whether a transaction was cancelled by failed conditions, and on which items
/// (in request order).
fn cancelled_conditions<R>(e: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<bool>> {
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(tce) => Some(
            tce.cancellation_reasons()
                .iter()
                .map(|r| r.code() == Some("ConditionalCheckFailed"))
                .collect(),
        ),
        _ => None,
    }
}

impl DynamoStore {
    /// A store over `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table with every index (for tests and local set-ups; the SAM
    /// template creates it in a deployment).
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(backend)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(backend)
        };
        let mut names = vec![keys::PK, keys::SK];
        for (_, pk, sk) in TableLayout::INDEXES {
            for n in [pk, sk] {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(keys::PK, KeyType::Hash)?)
            .key_schema(key(keys::SK, KeyType::Range)?);
        for n in names {
            request = request.attribute_definitions(attr(n)?);
        }
        for (index, pk, sk) in TableLayout::INDEXES {
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index)
                    .key_schema(key(pk, KeyType::Hash)?)
                    .key_schema(key(sk, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(backend)?,
            );
        }
        request.send().await.map_err(backend)?;
        Ok(())
    }

    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(keys::PK, s(pk))
            .key(keys::SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        Ok(out.item)
    }

    /// Every item of one index partition, in index order.
    async fn query_index(
        &self,
        index: &str,
        pk_attr: &str,
        pk: String,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", pk_attr)
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    fn projection_item(run: &Run, version: u64) -> Result<Item, StoreError> {
        let spec = &run.spec;
        let queued_key = format!(
            "{}#{}",
            crate::adapters::time_key(run.queued_at),
            spec.run_id
        );
        let mut item = Item::new();
        item.insert(keys::PK.into(), s(run_pk(&spec.run_id)));
        item.insert(keys::SK.into(), s(STATE_SK));
        item.insert("version".into(), AttributeValue::N(version.to_string()));
        item.insert(keys::QUEUED_KEY.into(), s(queued_key));
        item.insert(keys::RUNS_PK.into(), s("RUNS"));
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

    fn definition_item(d: &Definition) -> Result<Item, StoreError> {
        let mut item = Item::new();
        item.insert(keys::PK.into(), s(def_pk(&d.definition_id)));
        item.insert(keys::SK.into(), s(DEF_SK));
        item.insert(keys::DEFS_PK.into(), s("DEFS"));
        item.insert(keys::ALIAS.into(), s(d.alias.clone()));
        item.insert("body".into(), to_av(d)?);
        Ok(item)
    }

    /// The alias guard also carries the definition, so that executing by alias
    /// (the common path) is one read.
    fn alias_item(d: &Definition) -> Result<Item, StoreError> {
        let mut item = Item::new();
        item.insert(keys::PK.into(), s(alias_pk(&d.alias)));
        item.insert(keys::SK.into(), s(ALIAS_SK));
        item.insert("definition_id".into(), s(d.definition_id.clone()));
        item.insert("body".into(), to_av(d)?);
        Ok(item)
    }

    fn put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), TransactError> {
        if items.len() > MAX_TRANSACT_ITEMS {
            return Err(TransactError::Store(backend(format!(
                "a transaction of {} items exceeds DynamoDB's {MAX_TRANSACT_ITEMS}",
                items.len()
            ))));
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match cancelled_conditions(&e) {
                Some(failed) if failed.iter().any(|f| *f) => Err(TransactError::Condition(failed)),
                _ => Err(TransactError::Store(backend(e))),
            },
        }
    }
}

enum TransactError {
    /// Which items' conditions failed, in request order.
    Condition(Vec<bool>),
    Store(StoreError),
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn append(
        &self,
        run_id: &str,
        expected: u64,
        events: &[RunEvent],
        projection: &Run,
    ) -> Result<u64, StoreError> {
        let recorded_at = chrono::Utc::now().to_rfc3339();
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
        let state = Self::projection_item(projection, version)?;
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
        match self.transact(items).await {
            Ok(()) => Ok(version),
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
}

#[async_trait]
impl RunReadModel for DynamoStore {
    async fn get(&self, run_id: &str) -> Result<RunState, StoreError> {
        match self.get_item(run_pk(run_id), STATE_SK).await? {
            None => Ok(RunState::default()),
            Some(item) => Ok(RunState {
                version: get_n(&item, "version").unwrap_or(0),
                run: Some(body_of(&item)?),
            }),
        }
    }

    async fn list(&self, query: &RunQuery) -> Result<Page<Run>, StoreError> {
        // Read the most selective index partition(s), then filter, sort and page.
        let partitions: Vec<(&str, &str, String)> = if !query.definition_ids.is_empty() {
            query
                .definition_ids
                .iter()
                .map(|d| (keys::INDEX_DEFINITION, keys::DEF_PK, format!("DEF#{d}")))
                .collect()
        } else if !query.statuses.is_empty() {
            query
                .statuses
                .iter()
                .map(|st| {
                    (
                        keys::INDEX_STATUS,
                        keys::STATUS_PK,
                        format!("STATUS#{}", st.as_str()),
                    )
                })
                .collect()
        } else if !query.clusters.is_empty() {
            query
                .clusters
                .iter()
                .map(|c| {
                    (
                        keys::INDEX_CLUSTER,
                        keys::CLUSTER_PK,
                        format!("CLUSTER#{c}"),
                    )
                })
                .collect()
        } else {
            vec![(keys::INDEX_NEWEST, keys::RUNS_PK, "RUNS".to_owned())]
        };
        let mut runs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (index, attr, pk) in partitions {
            for item in self.query_index(index, attr, pk).await? {
                let run: Run = body_of(&item)?;
                if seen.insert(run.spec.run_id.clone()) && query.matches(&run) {
                    runs.push(run);
                }
            }
        }
        query.sort(&mut runs);
        Ok(page_of(runs, query.paging))
    }
}

#[async_trait]
impl DefinitionStore for DynamoStore {
    async fn create(&self, definition: &Definition) -> Result<(), StoreError> {
        let items = vec![
            self.put(
                Self::definition_item(definition)?,
                Some("attribute_not_exists(PK)"),
            )?,
            self.put(
                Self::alias_item(definition)?,
                Some("attribute_not_exists(PK)"),
            )?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(TransactError::Condition(_)) => Err(StoreError::Duplicate(format!(
                "definition with alias {}",
                definition.alias
            ))),
            Err(TransactError::Store(e)) => Err(e),
        }
    }

    async fn update(&self, definition: &Definition) -> Result<(), StoreError> {
        let Some(current) = DefinitionStore::get(self, &definition.definition_id).await? else {
            return Err(StoreError::NotFound(format!(
                "definition {}",
                definition.definition_id
            )));
        };
        let mut items = vec![self.put(
            Self::definition_item(definition)?,
            Some("attribute_exists(PK)"),
        )?];
        if current.alias == definition.alias {
            let guard = Put::builder()
                .table_name(&self.table)
                .set_item(Some(Self::alias_item(definition)?))
                .condition_expression("definition_id = :id")
                .expression_attribute_values(":id", s(definition.definition_id.clone()))
                .build()
                .map_err(backend)?;
            items.push(TransactWriteItem::builder().put(guard).build());
        } else {
            items.push(self.put(
                Self::alias_item(definition)?,
                Some("attribute_not_exists(PK)"),
            )?);
            let delete = Delete::builder()
                .table_name(&self.table)
                .key(keys::PK, s(alias_pk(&current.alias)))
                .key(keys::SK, s(ALIAS_SK))
                .build()
                .map_err(backend)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(TransactError::Condition(failed)) if failed.first() == Some(&true) => Err(
                StoreError::NotFound(format!("definition {}", definition.definition_id)),
            ),
            Err(TransactError::Condition(_)) => Err(StoreError::Duplicate(format!(
                "definition with alias {}",
                definition.alias
            ))),
            Err(TransactError::Store(e)) => Err(e),
        }
    }

    async fn delete(&self, definition_id: &str) -> Result<bool, StoreError> {
        let Some(current) = DefinitionStore::get(self, definition_id).await? else {
            return Ok(false);
        };
        let delete = |pk: String, sk: &str| {
            Delete::builder()
                .table_name(&self.table)
                .key(keys::PK, s(pk))
                .key(keys::SK, s(sk))
                .build()
                .map(|d| TransactWriteItem::builder().delete(d).build())
                .map_err(backend)
        };
        let items = vec![
            delete(def_pk(definition_id), DEF_SK)?,
            delete(alias_pk(&current.alias), ALIAS_SK)?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(TransactError::Condition(_)) => Ok(false),
            Err(TransactError::Store(e)) => Err(e),
        }
    }

    async fn get(&self, definition_id: &str) -> Result<Option<Definition>, StoreError> {
        self.get_item(def_pk(definition_id), DEF_SK)
            .await?
            .map(|item| body_of(&item))
            .transpose()
    }

    async fn get_by_alias(&self, alias: &str) -> Result<Option<Definition>, StoreError> {
        self.get_item(alias_pk(alias), ALIAS_SK)
            .await?
            .map(|item| body_of(&item))
            .transpose()
    }

    async fn list(&self, query: &DefinitionQuery) -> Result<Page<Definition>, StoreError> {
        let mut definitions = Vec::new();
        for item in self
            .query_index(keys::INDEX_DEFINITIONS, keys::DEFS_PK, "DEFS".to_owned())
            .await?
        {
            let d: Definition = body_of(&item)?;
            if query.matches(&d) {
                definitions.push(d);
            }
        }
        query.sort(&mut definitions);
        Ok(page_of(definitions, query.paging))
    }
}

/// Whether a single conditional write failed its condition.
fn condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

const CLUSTERS_KEY: &str = "CLUSTERS";

#[async_trait]
impl ClusterStore for DynamoStore {
    async fn clusters(&self) -> Result<(Vec<Cluster>, u64), StoreError> {
        match self.get_item(CLUSTERS_KEY.to_owned(), CLUSTERS_KEY).await? {
            None => Ok((vec![], 0)),
            Some(item) => Ok((body_of(&item)?, get_n(&item, "version").unwrap_or(0))),
        }
    }

    async fn save_clusters(&self, clusters: &[Cluster], expected: u64) -> Result<(), StoreError> {
        let mut item = Item::new();
        item.insert(keys::PK.into(), s(CLUSTERS_KEY));
        item.insert(keys::SK.into(), s(CLUSTERS_KEY));
        item.insert(
            "version".into(),
            AttributeValue::N((expected + 1).to_string()),
        );
        item.insert("body".into(), to_av(&clusters)?);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        put = if expected == 0 {
            put.condition_expression("attribute_not_exists(PK)")
        } else {
            put.condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(expected.to_string()))
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(StoreError::Conflict {
                expected,
                actual: expected + 1,
            }),
            Err(e) => Err(backend(e)),
        }
    }
}

#[async_trait]
impl IdempotenceKeys for DynamoStore {
    async fn find(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<String>, StoreError> {
        // TTL deletes expired items late, so the expiry is checked here too.
        let Some(item) = self.get_item(format!("IDEM#{key}"), "IDEM").await? else {
            return Ok(None);
        };
        let live = get_n(&item, keys::EXPIRES_AT).is_some_and(|t| t as i64 > now.timestamp());
        Ok(get_s(&item, "run_id").filter(|_| live).map(str::to_owned))
    }

    async fn claim(
        &self,
        key: &str,
        run_id: &str,
        replacing: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let mut item = Item::new();
        item.insert(keys::PK.into(), s(format!("IDEM#{key}")));
        item.insert(keys::SK.into(), s("IDEM"));
        item.insert("run_id".into(), s(run_id));
        item.insert(
            keys::EXPIRES_AT.into(),
            AttributeValue::N(expires_at.timestamp().to_string()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK) OR #exp <= :now OR run_id = :prev")
            .expression_attribute_names("#exp", keys::EXPIRES_AT)
            .expression_attribute_values(":now", AttributeValue::N(now.timestamp().to_string()))
            .expression_attribute_values(":prev", s(replacing.unwrap_or("")))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }
}

#[async_trait]
impl TemplateStore for DynamoStore {
    async fn create(&self, template: &Template) -> Result<(), StoreError> {
        let mut item = Item::new();
        item.insert(keys::PK.into(), s(format!("TPL#{}", template.template_id)));
        item.insert(keys::SK.into(), s("TPL"));
        item.insert(keys::CATALOG_PK.into(), s("TEMPLATES"));
        item.insert(
            keys::CATALOG_SK.into(),
            s(format!(
                "{}#{:010}",
                template.template_name, template.version
            )),
        );
        item.insert("body".into(), to_av(template)?);
        let mut guard = Item::new();
        guard.insert(
            keys::PK.into(),
            s(format!(
                "TPLVER#{}#{}",
                template.template_name, template.version
            )),
        );
        guard.insert(keys::SK.into(), s("TPLVER"));
        guard.insert("template_id".into(), s(template.template_id.clone()));
        let items = vec![
            self.put(item, Some("attribute_not_exists(PK)"))?,
            self.put(guard, Some("attribute_not_exists(PK)"))?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(TransactError::Condition(_)) => Err(StoreError::Duplicate(format!(
                "template {} version {}",
                template.template_name, template.version
            ))),
            Err(TransactError::Store(e)) => Err(e),
        }
    }

    async fn get(&self, template_id: &str) -> Result<Option<Template>, StoreError> {
        self.get_item(format!("TPL#{template_id}"), "TPL")
            .await?
            .map(|item| body_of(&item))
            .transpose()
    }

    async fn versions(&self, name: &str) -> Result<Vec<Template>, StoreError> {
        Ok(TemplateStore::all(self)
            .await?
            .into_iter()
            .filter(|t| t.template_name == name)
            .collect())
    }

    async fn all(&self) -> Result<Vec<Template>, StoreError> {
        self.query_index(
            keys::INDEX_CATALOG,
            keys::CATALOG_PK,
            "TEMPLATES".to_owned(),
        )
        .await?
        .iter()
        .map(body_of)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    //! The port contracts on DynamoDB, against moto's server mode.

    use super::*;
    use crate::testing::contract;
    use crate::testing::moto::Moto;

    async fn store(moto: &Moto) -> DynamoStore {
        let config = moto.sdk_config().await;
        let store = DynamoStore::new(Client::new(&config), "flotilla");
        store
            .create_table()
            .await
            .unwrap_or_else(|e| panic!("create table: {e:?}"));
        store
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn dynamodb_passes_the_event_store_contract() {
        let moto = Moto::start();
        contract::event_store_contract(&store(&moto).await).await;
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn dynamodb_lets_exactly_one_racing_append_win() {
        let moto = Moto::start();
        contract::concurrent_append_contract(&store(&moto).await).await;
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn dynamodb_passes_the_run_read_model_contract() {
        let moto = Moto::start();
        contract::run_read_model_contract(&store(&moto).await).await;
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn dynamodb_passes_the_cluster_idempotence_and_template_contracts() {
        let moto = Moto::start();
        let store = store(&moto).await;
        contract::cluster_store_contract(&store).await;
        contract::idempotence_contract(&store).await;
        contract::template_store_contract(&store).await;
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn dynamodb_passes_the_definition_store_contract() {
        let moto = Moto::start();
        contract::definition_store_contract(&store(&moto).await).await;
    }
}
