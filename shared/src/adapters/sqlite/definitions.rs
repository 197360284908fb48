//! Definitions on SQLite; the `alias` column's unique index makes aliases unique.

use async_trait::async_trait;
use rusqlite::params;

use super::sql::{order_sql, page_of, push_env_filter, push_text_filter};
use super::{SqliteStore, backend, body_of, encode, unique_violation};
use crate::domain::definition::Definition;
use crate::domain::query::{DefinitionQuery, DefinitionSortField, Page};
use crate::error::StoreError;
use crate::ports::DefinitionStore;

#[async_trait]
impl DefinitionStore for SqliteStore {
    async fn create(&self, definition: &Definition) -> Result<(), StoreError> {
        let d = definition.clone();
        let body = encode(definition)?;
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO definitions (definition_id, alias, group_name, image, memory, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    d.definition_id,
                    d.alias,
                    d.group_name,
                    d.image,
                    d.resources.memory.map(|m| m as i64),
                    body
                ],
            )
            .map_err(|e| {
                if unique_violation(&e) {
                    StoreError::Duplicate(format!("definition with alias {}", d.alias))
                } else {
                    backend(e)
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn update(&self, definition: &Definition) -> Result<(), StoreError> {
        let d = definition.clone();
        let body = encode(definition)?;
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE definitions SET alias = ?2, group_name = ?3, image = ?4, memory = ?5, body = ?6 \
                     WHERE definition_id = ?1",
                    params![d.definition_id, d.alias, d.group_name, d.image, d.resources.memory.map(|m| m as i64), body],
                )
                .map_err(|e| {
                    if unique_violation(&e) {
                        StoreError::Duplicate(format!("definition with alias {}", d.alias))
                    } else {
                        backend(e)
                    }
                })?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "definition {}",
                    d.definition_id
                )));
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, definition_id: &str) -> Result<bool, StoreError> {
        let id = definition_id.to_owned();
        self.with(move |conn| {
            let n = conn
                .execute("DELETE FROM definitions WHERE definition_id = ?1", [&id])
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn get(&self, definition_id: &str) -> Result<Option<Definition>, StoreError> {
        let id = definition_id.to_owned();
        self.with(move |conn| {
            body_of(
                conn,
                "SELECT body FROM definitions WHERE definition_id = ?1",
                [&id],
            )
        })
        .await
    }

    async fn get_by_alias(&self, alias: &str) -> Result<Option<Definition>, StoreError> {
        let alias = alias.to_owned();
        self.with(move |conn| {
            body_of(
                conn,
                "SELECT body FROM definitions WHERE alias = ?1",
                [&alias],
            )
        })
        .await
    }

    async fn list(&self, query: &DefinitionQuery) -> Result<Page<Definition>, StoreError> {
        let query = query.clone();
        self.with(move |conn| {
            let mut clauses = Vec::new();
            let mut args = Vec::new();
            push_text_filter("alias", &query.alias, &mut clauses, &mut args);
            push_text_filter("group_name", &query.group_name, &mut clauses, &mut args);
            push_text_filter("image", &query.image, &mut clauses, &mut args);
            push_env_filter("$.env", &query.env, &mut clauses, &mut args);
            let column = match query.sort_by {
                DefinitionSortField::Alias => "alias",
                DefinitionSortField::Image => "image",
                DefinitionSortField::GroupName => "group_name",
                DefinitionSortField::Memory => "memory",
            };
            let dir = order_sql(query.order);
            let order_by = format!("{column} {dir} NULLS LAST, alias {dir}");
            page_of(
                conn,
                "definitions",
                &clauses,
                args,
                order_by,
                query.paging.limit,
                query.paging.offset,
            )
        })
        .await
    }
}
