//! Schedules on DynamoDB: a `SCHED#<id>` item per schedule, its JSON in
//! `body` and its `version` beside it, listed through the catalog index
//! (partition `SCHEDULES`). Every write is a one-item transaction
//! conditioned on the version read, so a function needs no write action
//! beyond the `TransactWriteItems` it has for runs.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem};

use super::{
    DynamoStore, Item, TransactError, backend, body_of, keys, s, to_av, within_item_limit,
};
use crate::domain::schedule::Schedule;
use crate::error::StoreError;
use crate::ports::ScheduleStore;

const SCHEDULE_SK: &str = "SCHED";
const CATALOG: &str = "SCHEDULES";

fn schedule_pk(id: &str) -> String {
    format!("SCHED#{id}")
}

impl DynamoStore {
    fn schedule_item(schedule: &Schedule, version: u64) -> Result<Item, StoreError> {
        let mut saved = schedule.clone();
        saved.version = version;
        let mut item = Item::new();
        item.insert(keys::PK.into(), s(schedule_pk(&schedule.schedule_id)));
        item.insert(keys::SK.into(), s(SCHEDULE_SK));
        item.insert(keys::CATALOG_PK.into(), s(CATALOG));
        item.insert(
            keys::CATALOG_SK.into(),
            s(format!(
                "{}#{}",
                schedule.created_at.to_rfc3339(),
                schedule.schedule_id
            )),
        );
        item.insert("version".into(), AttributeValue::N(version.to_string()));
        item.insert("body".into(), to_av(&saved)?);
        within_item_limit(item)
    }
}

#[async_trait]
impl ScheduleStore for DynamoStore {
    async fn create_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let item = Self::schedule_item(schedule, schedule.version)?;
        match self
            .transact(vec![self.put(item, Some("attribute_not_exists(PK)"))?])
            .await
        {
            Ok(()) => Ok(()),
            Err(TransactError::Condition(_)) => Err(StoreError::Duplicate(format!(
                "schedule {}",
                schedule.schedule_id
            ))),
            Err(TransactError::Store(e)) => Err(e),
        }
    }

    async fn schedule(&self, schedule_id: &str) -> Result<Option<Schedule>, StoreError> {
        self.get_item(schedule_pk(schedule_id), SCHEDULE_SK)
            .await?
            .map(|item| body_of(&item))
            .transpose()
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.query_index(keys::INDEX_CATALOG, keys::CATALOG_PK, CATALOG.to_owned())
            .await?
            .iter()
            .map(body_of)
            .collect()
    }

    async fn save_schedule(&self, schedule: &Schedule, expected: u64) -> Result<bool, StoreError> {
        let item = Self::schedule_item(schedule, expected + 1)?;
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
            .build()
            .map_err(backend)?;
        match self
            .transact(vec![TransactWriteItem::builder().put(put).build()])
            .await
        {
            Ok(()) => Ok(true),
            Err(TransactError::Condition(_)) => Ok(false),
            Err(TransactError::Store(e)) => Err(e),
        }
    }

    async fn delete_schedule(&self, schedule_id: &str) -> Result<bool, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(keys::PK, s(schedule_pk(schedule_id)))
            .key(keys::SK, s(SCHEDULE_SK))
            .condition_expression("attribute_exists(PK)")
            .build()
            .map_err(backend)?;
        match self
            .transact(vec![TransactWriteItem::builder().delete(delete).build()])
            .await
        {
            Ok(()) => Ok(true),
            Err(TransactError::Condition(_)) => Ok(false),
            Err(TransactError::Store(e)) => Err(e),
        }
    }
}
