//! Template versions on SQLite; `(template_name, version)` is unique.

use async_trait::async_trait;
use rusqlite::params;

use super::{SqliteStore, backend, bodies_of, body_of, encode, unique_violation};
use crate::domain::template::Template;
use crate::error::StoreError;
use crate::ports::TemplateStore;

#[async_trait]
impl TemplateStore for SqliteStore {
    async fn create(&self, template: &Template) -> Result<(), StoreError> {
        let t = template.clone();
        let body = encode(template)?;
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO templates (template_id, template_name, version, body) VALUES (?1, ?2, ?3, ?4)",
                params![t.template_id, t.template_name, t.version, body],
            )
            .map_err(|e| {
                if unique_violation(&e) {
                    StoreError::Duplicate(format!(
                        "template {} version {}",
                        t.template_name, t.version
                    ))
                } else {
                    backend(e)
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn get(&self, template_id: &str) -> Result<Option<Template>, StoreError> {
        let id = template_id.to_owned();
        self.with(move |conn| {
            body_of(
                conn,
                "SELECT body FROM templates WHERE template_id = ?1",
                [id],
            )
        })
        .await
    }

    async fn versions(&self, name: &str) -> Result<Vec<Template>, StoreError> {
        let name = name.to_owned();
        self.with(move |conn| {
            bodies_of(
                conn,
                "SELECT body FROM templates WHERE template_name = ?1 ORDER BY version",
                [name],
            )
        })
        .await
    }

    async fn all(&self) -> Result<Vec<Template>, StoreError> {
        self.with(|conn| {
            bodies_of(
                conn,
                "SELECT body FROM templates ORDER BY template_name, version",
                [],
            )
        })
        .await
    }
}
