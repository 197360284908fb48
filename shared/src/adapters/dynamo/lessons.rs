//! What each job's runs taught its next ones, on DynamoDB: one
//! `LESSON#<definition_id>#<command_hash>` item per job, its merged lessons
//! in `body`, rewritten with its `version` as condition (a writer that
//! loses the race reads and merges again), and deleted by TTL once every
//! lesson in it is past its window (a job's history of successful runs
//! [`HISTORY_DAYS`](crate::domain::learning::HISTORY_DAYS) after the newest).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    DynamoStore, Item, backend, body_of, condition_failed, get_n, keys, s, to_av, within_item_limit,
};
use crate::app::MAX_CONFLICT_RETRIES;
use crate::domain::learning::{JobKey, Learned, Lesson, MEMORY_WINDOW_HOURS, SPOT_WINDOW_HOURS};
use crate::error::StoreError;
use crate::ports::JobLessons;

const LESSON_SK: &str = "LESSON";

fn lesson_pk(job: &JobKey) -> String {
    format!("LESSON#{}#{}", job.definition_id, job.command_hash)
}

/// When every lesson in `learned` is past its window (for the TTL).
fn expires_at(learned: &Learned) -> i64 {
    let memory = learned
        .out_of_memory
        .as_ref()
        .map(|l| l.at + chrono::Duration::hours(MEMORY_WINDOW_HOURS));
    let spot = learned
        .spot_interruption
        .as_ref()
        .map(|l| l.at + chrono::Duration::hours(SPOT_WINDOW_HOURS));
    memory
        .max(spot)
        .max(learned.history_expires())
        .map_or(0, |t| t.timestamp())
}

impl DynamoStore {
    /// What `job` learned, with the version of its item (0: none yet).
    async fn learned_with_version(&self, job: &JobKey) -> Result<(Learned, u64), StoreError> {
        match self.get_item(lesson_pk(job), LESSON_SK).await? {
            None => Ok((Learned::default(), 0)),
            Some(item) => Ok((body_of(&item)?, get_n(&item, "version").unwrap_or(0))),
        }
    }
}

#[async_trait]
impl JobLessons for DynamoStore {
    async fn learned(&self, job: &JobKey) -> Result<Learned, StoreError> {
        Ok(self.learned_with_version(job).await?.0)
    }

    async fn learn(&self, job: &JobKey, lesson: &Lesson) -> Result<(), StoreError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (before, version) = self.learned_with_version(job).await?;
            let after = before.clone().merged(lesson.clone());
            if after == before {
                return Ok(());
            }
            let mut item = Item::new();
            item.insert(keys::PK.into(), s(lesson_pk(job)));
            item.insert(keys::SK.into(), s(LESSON_SK));
            item.insert(
                "version".into(),
                AttributeValue::N((version + 1).to_string()),
            );
            item.insert(
                keys::EXPIRES_AT.into(),
                AttributeValue::N(expires_at(&after).to_string()),
            );
            item.insert("body".into(), to_av(&after)?);
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(within_item_limit(item)?));
            let put = if version == 0 {
                put.condition_expression("attribute_not_exists(PK)")
            } else {
                put.condition_expression("version = :v")
                    .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            };
            match put.send().await {
                Ok(_) => return Ok(()),
                Err(e) if condition_failed(&e) => continue,
                Err(e) => return Err(backend(e)),
            }
        }
        Err(backend(format!(
            "the lessons of definition {}'s command {} lost {MAX_CONFLICT_RETRIES} races in a row",
            job.definition_id, job.command_hash
        )))
    }
}
