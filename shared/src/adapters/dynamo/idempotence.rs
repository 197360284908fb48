//! Idempotence keys on DynamoDB: `IDEM#<key>` items with a TTL, claimed with a
//! conditional put that only an expired key, or the run being replaced, passes.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{DynamoStore, Item, backend, condition_failed, get_n, get_s, keys, s};
use crate::error::StoreError;
use crate::ports::{IdempotenceKeys, KeyClaim};

#[async_trait]
impl IdempotenceKeys for DynamoStore {
    async fn find(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<KeyClaim>, StoreError> {
        // TTL deletes expired items late, so the expiry is checked here too.
        let Some(item) = self.get_item(format!("IDEM#{key}"), "IDEM").await? else {
            return Ok(None);
        };
        let expires_at = get_n(&item, keys::EXPIRES_AT)
            .and_then(|t| i64::try_from(t).ok())
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .filter(|t| *t > now);
        Ok(match (get_s(&item, "run_id"), expires_at) {
            (Some(run_id), Some(expires_at)) => Some(KeyClaim {
                run_id: run_id.to_owned(),
                expires_at,
            }),
            _ => None,
        })
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
