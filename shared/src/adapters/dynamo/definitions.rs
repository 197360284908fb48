//! Definitions on DynamoDB: the definition item (`DEF#<id>`, listed through
//! the definitions index) and its alias guard (`ALIAS#<alias>`, with a copy of
//! the definition so that executing by alias is one read), always written in
//! one transaction, which makes aliases unique.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::{
    ALIAS_SK, DEF_SK, DynamoStore, Item, TransactError, alias_pk, backend, body_of, def_pk, keys,
    s, to_av, within_item_limit,
};
use crate::domain::definition::Definition;
use crate::domain::query::{DefinitionQuery, Page, page_of};
use crate::error::StoreError;
use crate::ports::DefinitionStore;

impl DynamoStore {
    pub(super) fn definition_item(d: &Definition) -> Result<Item, StoreError> {
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
                .set_item(Some(within_item_limit(Self::alias_item(definition)?)?))
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
