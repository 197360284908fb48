//! The cluster registry on DynamoDB: one item, `CLUSTERS`, with a version.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    DynamoStore, Item, backend, body_of, condition_failed, get_n, keys, s, to_av, within_item_limit,
};
use crate::domain::cluster::Cluster;
use crate::error::StoreError;
use crate::ports::ClusterStore;

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
            .set_item(Some(within_item_limit(item)?));
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
