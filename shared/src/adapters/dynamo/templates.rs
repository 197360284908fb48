//! Template versions on DynamoDB: `TPL#<id>` items listed through the catalog
//! index, each written with a `TPLVER#<name>#<version>` guard in one
//! transaction, which makes a name's version numbers unique.

use async_trait::async_trait;

use super::{DynamoStore, Item, TransactError, body_of, keys, s, to_av};
use crate::domain::template::Template;
use crate::error::StoreError;
use crate::ports::TemplateStore;

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
