//! DynamoDB storage (feature `aws`): run event streams, the run projection and
//! definitions in one table, designed by access pattern.
//!
//! | item | `PK` | `SK` | other keys |
//! | --- | --- | --- | --- |
//! | run event | `RUN#<run_id>` | `EVT#<sequence, 10 digits>` | |
//! | run projection | `RUN#<run_id>` | `STATE` | `runs_pk` (`RUNS#<shard>`), `def_pk`, `status_pk`, `cluster_pk`, `owner_pk`; sorted by `queued_key`, and `started_key`, `finished_key` once the run has the time (see `lists`) |
//! | list counter | `COUNT#<name>#<shard>` | `COUNT` | |
//! | definition | `DEF#<definition_id>` | `DEF` | `defs_pk` sorted by `alias` |
//! | alias guard (with a copy of the definition) | `ALIAS#<alias>` | `ALIAS` | |
//! | cluster registry (every cluster, one item) | `CLUSTERS` | `CLUSTERS` | |
//! | idempotence key | `IDEM#<key>` | `IDEM` | `expires_at` (TTL) |
//! | template version | `TPL#<template_id>` | `TPL` | `catalog_pk` sorted by `catalog_sk` |
//! | template version guard | `TPLVER#<name>#<version>` | `TPLVER` | |
//! | a job's lessons (definition and command hash) | `LESSON#<definition_id>#<command_hash>` | `LESSON` | `expires_at` (TTL) |
//! | a day's leaderboard tally of one key (`tallies`) | `TALLY#<dimension>#<day>` | `K#<key>` | |
//! | schedule | `SCHED#<schedule_id>` | `SCHED` | `catalog_pk` (`SCHEDULES`) sorted by `catalog_sk` (`<created_at>#<id>`) |
//!
//! An append is one `TransactWriteItems`: each event `Put` with
//! `attribute_not_exists(SK)`, and the projection `Put` conditioned on the
//! version read, and an `ADD` to each list counter the append moves;
//! `ConditionalCheckFailed` among the cancellation reasons becomes
//! [`StoreError::Conflict`]. A definition and its alias guard are written in one
//! transaction, which makes aliases unique. Run lists are `Query` calls a page
//! at a time on the index sorted as asked (`lists`), never a Scan.
//! The key names, index names and item layout are the contract with the SAM
//! template; they are named once, in `keys` and [`TableLayout`]. Every item
//! written is checked against [`MAX_ITEM_BYTES`] first.
//!
//! One file per port: `runs`, `definitions`, `clusters`,
//! `idempotence` (keys), `templates`, `lessons`, `schedules`, `lists` for run
//! lists and their counters, and `tallies` for leaderboards; the client, the table's layout, the
//! item size check and the transaction helper are here.

mod clusters;
mod definitions;
mod idempotence;
mod lessons;
mod lists;
mod runs;
mod schedules;
mod tallies;

pub use lists::{
    COUNT_READ_BUDGET, OFFSET_READ_LIMIT, PAGE_READ_BUDGET, SHARDS, SORT_READ_LIMIT, counts_of,
    shard_of,
};
mod templates;

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TransactWriteItem,
};

use crate::error::StoreError;
use crate::ports::Clock;

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
    /// Sort key of the queue-time run indexes: `<queued_at>#<run_id>`.
    pub const QUEUED_KEY: &str = "queued_key";
    /// Sort key of the start-time run indexes, on started runs only:
    /// `<started_at>#<queued_at>#<run_id>`.
    pub const STARTED_KEY: &str = "started_key";
    /// Sort key of the end-time run indexes, on finished runs only:
    /// `<finished_at>#<queued_at>#<run_id>`.
    pub const FINISHED_KEY: &str = "finished_key";
    /// Partition of the all-runs indexes: `RUNS#<shard, 2 digits>`.
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
    /// All runs, by queue time.
    pub const INDEX_NEWEST: &str = "runs_by_queued_at";
    /// All started runs, by start time.
    pub const INDEX_STARTED: &str = "runs_by_started_at";
    /// All finished runs, by end time.
    pub const INDEX_FINISHED: &str = "runs_by_finished_at";
    /// Started runs of one definition, by start time.
    pub const INDEX_DEFINITION_STARTED: &str = "runs_by_definition_started_at";
    /// Finished runs of one definition, by end time.
    pub const INDEX_DEFINITION_FINISHED: &str = "runs_by_definition_finished_at";
    /// Started runs in one status, by start time.
    pub const INDEX_STATUS_STARTED: &str = "runs_by_status_started_at";
    /// Finished runs in one status, by end time.
    pub const INDEX_STATUS_FINISHED: &str = "runs_by_status_finished_at";
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
    /// Partition of the waiting index, on QUEUED runs only:
    /// `WAITING#<cluster>`.
    pub const WAITING_PK: &str = "waiting_pk";
    /// Sort key of the waiting index: `<enqueued_at>#<run_id>`, when the
    /// run's current ticket was put on the queue.
    pub const WAITING_KEY: &str = "waiting_key";
    /// QUEUED runs of one cluster in the order their tickets were put on
    /// the queue; keys only, for counting a run's position.
    pub const INDEX_WAITING: &str = "runs_waiting";
    /// Started runs of one cluster by start time; keys only, for the
    /// cluster's recent start rate.
    pub const INDEX_CLUSTER_STARTED: &str = "runs_started_by_cluster";
}

/// The table's indexes: `(index name, partition attribute, sort attribute)`.
pub struct TableLayout;

impl TableLayout {
    /// The indexes that hold keys only (the rest hold whole items).
    pub const KEYS_ONLY: [&'static str; 2] = [keys::INDEX_WAITING, keys::INDEX_CLUSTER_STARTED];

    /// Every global secondary index the code queries.
    pub const INDEXES: [(&'static str, &'static str, &'static str); 15] = [
        (keys::INDEX_NEWEST, keys::RUNS_PK, keys::QUEUED_KEY),
        (keys::INDEX_STARTED, keys::RUNS_PK, keys::STARTED_KEY),
        (keys::INDEX_FINISHED, keys::RUNS_PK, keys::FINISHED_KEY),
        (keys::INDEX_DEFINITION, keys::DEF_PK, keys::QUEUED_KEY),
        (
            keys::INDEX_DEFINITION_STARTED,
            keys::DEF_PK,
            keys::STARTED_KEY,
        ),
        (
            keys::INDEX_DEFINITION_FINISHED,
            keys::DEF_PK,
            keys::FINISHED_KEY,
        ),
        (keys::INDEX_STATUS, keys::STATUS_PK, keys::QUEUED_KEY),
        (
            keys::INDEX_STATUS_STARTED,
            keys::STATUS_PK,
            keys::STARTED_KEY,
        ),
        (
            keys::INDEX_STATUS_FINISHED,
            keys::STATUS_PK,
            keys::FINISHED_KEY,
        ),
        (keys::INDEX_CLUSTER, keys::CLUSTER_PK, keys::QUEUED_KEY),
        (keys::INDEX_OWNER, keys::OWNER_PK, keys::QUEUED_KEY),
        (keys::INDEX_DEFINITIONS, keys::DEFS_PK, keys::ALIAS),
        (keys::INDEX_CATALOG, keys::CATALOG_PK, keys::CATALOG_SK),
        (keys::INDEX_WAITING, keys::WAITING_PK, keys::WAITING_KEY),
        (
            keys::INDEX_CLUSTER_STARTED,
            keys::CLUSTER_PK,
            keys::STARTED_KEY,
        ),
    ];
}

type Item = HashMap<String, AttributeValue>;

/// The DynamoDB store.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
    /// Index items list requests have evaluated, for benches and tests.
    index_items_read: Arc<std::sync::atomic::AtomicU64>,
    /// Counter items list requests have read.
    counter_items_read: Arc<std::sync::atomic::AtomicU64>,
    /// Items a page reads at most, unless the page itself is larger.
    page_read_budget: u64,
    /// Items a sort no index serves reads at most.
    sort_read_limit: u64,
    /// The status of each run's projection at a version this process read
    /// or wrote: the counters an append moves depend on the status it
    /// changes from, and a version's projection never changes, so a hit
    /// is always right and saves a read (the use cases read a run just
    /// before they append to it).
    statuses: Arc<std::sync::Mutex<HashMap<String, (u64, crate::domain::run::RunStatus)>>>,
}

/// Runs whose status [`DynamoStore`] remembers at most.
const REMEMBERED_STATUSES: usize = 4096;

/// Items a store's lists have read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItemsRead {
    /// Run index items evaluated: DynamoDB's `ScannedCount`, what it bills,
    /// whatever a filter then keeps.
    pub index: u64,
    /// Counter items read for totals.
    pub counters: u64,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
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

/// The size DynamoDB counts for an item: each attribute's name and value, in
/// bytes (strings as UTF-8, numbers by their digits, 3 bytes for each list or
/// map, 1 for a null or a boolean).
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>)
fn item_bytes(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_bytes(value))
        .sum()
}

fn value_bytes(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(items) => 3 + items.iter().map(|v| 1 + value_bytes(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_bytes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// What an item holds, by its partition key, for a message.
fn describe(item: &Item) -> String {
    let pk = get_s(item, keys::PK).unwrap_or_default();
    for (prefix, what) in [
        ("RUN#", "run"),
        ("DEF#", "definition"),
        ("ALIAS#", "definition with alias"),
        ("TPL#", "template"),
        ("IDEM#", "idempotence key"),
    ] {
        if let Some(id) = pk.strip_prefix(prefix) {
            return format!("{what} {id}");
        }
    }
    pk.to_lowercase()
}

/// `item`, if DynamoDB can store it; else what it is and how large.
fn within_item_limit(item: Item) -> Result<Item, StoreError> {
    let bytes = item_bytes(&item);
    if bytes > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge {
            what: describe(&item),
            bytes,
            limit: MAX_ITEM_BYTES,
        });
    }
    Ok(item)
}

impl DynamoStore {
    /// A store over `table`; the times it records (when an event was
    /// stored) are read off `clock`.
    pub fn new(client: Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            table: table.into(),
            clock,
            index_items_read: Arc::default(),
            counter_items_read: Arc::default(),
            page_read_budget: PAGE_READ_BUDGET,
            sort_read_limit: SORT_READ_LIMIT,
            statuses: Arc::default(),
        }
    }

    fn remember_status(&self, run_id: &str, version: u64, status: crate::domain::run::RunStatus) {
        if let Ok(mut known) = self.statuses.lock() {
            if known.len() >= REMEMBERED_STATUSES && !known.contains_key(run_id) {
                known.clear();
            }
            known.insert(run_id.to_owned(), (version, status));
        }
    }

    fn remembered_status(
        &self,
        run_id: &str,
        version: u64,
    ) -> Option<crate::domain::run::RunStatus> {
        let known = self.statuses.lock().ok()?;
        known
            .get(run_id)
            .filter(|(v, _)| *v == version)
            .map(|(_, status)| *status)
    }

    /// The same store with another limit on what a sort no index serves
    /// may read (see [`SORT_READ_LIMIT`]).
    pub fn with_sort_read_limit(mut self, items: u64) -> Self {
        self.sort_read_limit = items.max(1);
        self
    }

    /// The same store with another read budget per page (see
    /// [`PAGE_READ_BUDGET`]).
    pub fn with_page_read_budget(mut self, items: u64) -> Self {
        self.page_read_budget = items.max(1);
        self
    }

    /// Items this store's lists have read so far.
    pub fn items_read(&self) -> ItemsRead {
        use std::sync::atomic::Ordering::Relaxed;
        ItemsRead {
            index: self.index_items_read.load(Relaxed),
            counters: self.counter_items_read.load(Relaxed),
        }
    }

    /// Puts items in batches of 25, asking again for any DynamoDB left
    /// unprocessed (for seeding: no conditions, no transaction).
    async fn batch_write(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let mut writes = items
            .into_iter()
            .map(|item| {
                let put = aws_sdk_dynamodb::types::PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(backend)?;
                Ok(aws_sdk_dynamodb::types::WriteRequest::builder()
                    .put_request(put)
                    .build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut attempts = 0;
        while !writes.is_empty() {
            let rest = writes.split_off(writes.len().min(25));
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, writes)
                .send()
                .await
                .map_err(backend)?;
            let mut again = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if !again.is_empty() {
                attempts += 1;
                if attempts > 20 {
                    return Err(backend("batch writes stayed unprocessed"));
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempts)).await;
            }
            again.extend(rest);
            writes = again;
        }
        Ok(())
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
                            .projection_type(if TableLayout::KEYS_ONLY.contains(&index) {
                                ProjectionType::KeysOnly
                            } else {
                                ProjectionType::All
                            })
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

    fn put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
        let item = within_item_limit(item)?;
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

/// Whether a single conditional write failed its condition.
fn condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

#[cfg(test)]
mod tests {
    //! The port contracts on DynamoDB, against moto's server mode, and the
    //! item size check, which needs no server.

    use super::*;
    use crate::domain::event::RunEvent;
    use crate::ports::RunStore;
    use crate::testing::contract;
    use crate::testing::moto::Moto;
    use crate::testing::scenario::{spec, t};

    /// A store whose client would fail any request it sent (nothing listens
    /// on its endpoint), to show that a check happens before any request.
    fn unreachable_store() -> DynamoStore {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build();
        DynamoStore::new(
            Client::from_conf(config),
            "flotilla",
            Arc::new(crate::ports::SystemClock),
        )
    }

    #[tokio::test]
    async fn a_run_larger_than_an_item_dynamodb_holds_is_refused_before_any_request() {
        let store = unreachable_store();
        let mut big = spec("r-big");
        big.command = Some("x".repeat(MAX_ITEM_BYTES));
        let queued = RunEvent::RunQueued {
            spec: Box::new(big),
            at: t(0),
        };
        let run = crate::domain::run::replay([&queued])
            .run
            .unwrap_or_else(|| panic!("a run"));
        match store.append("r-big", 0, &[queued], &run).await {
            Err(StoreError::TooLarge { what, bytes, limit }) => {
                assert_eq!(what, "run r-big");
                assert!(bytes > limit && limit == MAX_ITEM_BYTES);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn an_items_size_counts_names_and_values_as_dynamodb_does() {
        let mut item = Item::new();
        item.insert("PK".into(), s("RUN#r"));
        item.insert("n".into(), AttributeValue::N("12345".into()));
        item.insert(
            "m".into(),
            AttributeValue::M([("k".to_owned(), s("vv"))].into()),
        );
        // "PK" + "RUN#r", "n" + 3 digits' bytes + 1, "m" + 3 + 1 + "k" + "vv".
        assert_eq!(item_bytes(&item), 2 + 5 + 1 + 4 + 1 + 3 + 1 + 1 + 2);
        assert!(within_item_limit(item).is_ok());
    }

    pub(super) async fn store(moto: &Moto) -> DynamoStore {
        let config = moto.sdk_config().await;
        let store = DynamoStore::new(
            Client::new(&config),
            "flotilla",
            Arc::new(crate::ports::SystemClock),
        );
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
    async fn dynamodb_holds_a_clusters_cap_under_racing_admissions() {
        let moto = Moto::start();
        contract::cluster_slots_contract(&store(&moto).await).await;
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn dynamodb_counts_a_queued_runs_place_in_its_clusters_queue_and_reads_its_recent_starts()
    {
        let moto = Moto::start();
        let store = store(&moto).await;
        contract::queue_position_contract(&store).await;
        contract::recent_starts_contract(&store).await;
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn dynamodb_tallies_each_ended_run_once_per_dimension_however_often_its_end_arrives() {
        let moto = Moto::start();
        contract::tallies_contract(&store(&moto).await).await;
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
    async fn dynamodb_passes_the_cluster_idempotence_template_and_job_lessons_contracts() {
        let moto = Moto::start();
        let store = store(&moto).await;
        contract::cluster_store_contract(&store).await;
        contract::idempotence_contract(&store).await;
        contract::template_store_contract(&store).await;
        contract::job_lessons_contract(&store).await;
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn dynamodb_passes_the_schedule_store_contract() {
        let moto = Moto::start();
        contract::schedule_store_contract(&store(&moto).await).await;
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn dynamodb_passes_the_definition_store_contract() {
        let moto = Moto::start();
        contract::definition_store_contract(&store(&moto).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn the_projection_dynamodb_stores_is_the_replay_of_the_events_it_stores() {
        use proptest::prelude::*;
        let moto = Moto::start();
        let store = store(&moto).await;
        let handle = tokio::runtime::Handle::current();
        let case = std::sync::atomic::AtomicUsize::new(0);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(16));
        let commands = proptest::collection::vec(crate::testing::strategy::any_command(), 0..30);
        let outcome = runner.run(&commands, |commands| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let run_id = format!("r-prop-{n}");
            tokio::task::block_in_place(|| {
                handle.block_on(contract::projection_is_the_replay_of_the_events(
                    &store, &run_id, commands,
                ))
            });
            Ok(())
        });
        if let Err(e) = outcome {
            panic!("{e}");
        }
    }
}
