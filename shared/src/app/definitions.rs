//! Job definitions: create, change, delete, read and list them, and the
//! groups and tags they use.

use std::collections::BTreeSet;

use crate::app::App;
use crate::domain::ValidationError;
use crate::domain::definition::{Definition, DefinitionInput};
use crate::domain::identity::Caller;
use crate::domain::launch::definition_problems;
use crate::domain::query::{DefinitionQuery, MAX_LIMIT, Page};
use crate::error::{Act, AppError, Conflict, Missing, Refusal, StoreError};

/// How a definition is named in a request.
#[derive(Debug, Clone, Copy)]
pub enum DefinitionRef<'a> {
    /// By `definition_id`.
    Id(&'a str),
    /// By alias.
    Alias(&'a str),
}

impl DefinitionRef<'_> {
    /// The error for a definition that does not exist.
    pub fn missing(self) -> AppError {
        AppError::NotFound(match self {
            Self::Id(id) => Missing::Definition(id.to_owned()),
            Self::Alias(alias) => Missing::DefinitionAlias(alias.to_owned()),
        })
    }
}

/// The id a new definition of `group` gets: `<group>-<uuid>`, or the bare
/// uuid without a group, so that no id starts with a separator.
fn definition_id(group: &str) -> String {
    let uuid = uuid::Uuid::new_v4();
    if group.trim().is_empty() {
        uuid.to_string()
    } else {
        format!("{group}-{uuid}")
    }
}

impl App {
    /// Creates a definition; its id is `<group_name>-<uuid>`.
    pub async fn create_definition(
        &self,
        input: DefinitionInput,
        caller: &Caller,
    ) -> Result<Definition, AppError> {
        let id = definition_id(input.group_name.as_deref().unwrap_or_default());
        let mut definition = Definition::create(id, input)?;
        definition.created_by = caller.name().map(str::to_owned);
        self.check(&definition)?;
        self.definitions
            .create(&definition)
            .await
            .map_err(|e| stored(e, &definition))?;
        Ok(definition)
    }

    /// Updates the fields given.
    pub async fn update_definition(
        &self,
        definition_id: &str,
        input: DefinitionInput,
        caller: &Caller,
    ) -> Result<Definition, AppError> {
        let current = self.definition(DefinitionRef::Id(definition_id)).await?;
        may_change(caller, &current)?;
        let next = current.updated(input)?;
        self.check(&next)?;
        self.definitions
            .update(&next)
            .await
            .map_err(|e| stored(e, &next))?;
        Ok(next)
    }

    /// What a launch of `definition` would meet at the engine, refused now.
    fn check(&self, definition: &Definition) -> Result<(), AppError> {
        let mut problems = definition_problems(
            definition.command.as_deref(),
            &definition.env,
            &definition.resources,
            definition.target_cluster.as_deref(),
            &self.settings.owner_var,
            self.settings.launch_limits,
        );
        problems.extend(crate::domain::secret_problems(
            &definition.secrets,
            &definition.env,
            "secrets",
        ));
        let reserved = crate::domain::launch::reserved_names(&self.settings.owner_var);
        for secret in &definition.secrets {
            if reserved.contains(&secret.name.as_str()) {
                problems.push(format!(
                    "secrets: {} is reserved and set by Flotilla for every run; remove it",
                    secret.name
                ));
            }
        }
        Ok(ValidationError::from_problems(problems)?)
    }

    /// Deletes a definition. Its runs stay: run history is never deleted.
    pub async fn delete_definition(
        &self,
        definition_id: &str,
        caller: &Caller,
    ) -> Result<(), AppError> {
        if caller.name().is_some()
            && let Some(current) = self.definitions.get(definition_id).await?
        {
            may_change(caller, &current)?;
        }
        if self.definitions.delete(definition_id).await? {
            Ok(())
        } else {
            Err(DefinitionRef::Id(definition_id).missing())
        }
    }

    /// One definition.
    pub async fn definition(&self, by: DefinitionRef<'_>) -> Result<Definition, AppError> {
        let found = match by {
            DefinitionRef::Id(id) => self.definitions.get(id).await?,
            DefinitionRef::Alias(alias) => self.definitions.get_by_alias(alias).await?,
        };
        found.ok_or_else(|| by.missing())
    }

    /// Definitions matching a query.
    pub async fn list_definitions(
        &self,
        query: &DefinitionQuery,
    ) -> Result<Page<Definition>, AppError> {
        Ok(self.definitions.list(query).await?)
    }

    /// Every distinct group and tag of the stored definitions, sorted.
    pub async fn groups_and_tags(&self) -> Result<(BTreeSet<String>, BTreeSet<String>), AppError> {
        let mut groups = BTreeSet::new();
        let mut tags = BTreeSet::new();
        let mut query = DefinitionQuery::default();
        query.paging.limit = MAX_LIMIT;
        loop {
            let page = self.definitions.list(&query).await?;
            let seen = page.items.len() as u64;
            for d in page.items {
                if !d.group_name.is_empty() {
                    groups.insert(d.group_name);
                }
                tags.extend(d.tags.into_iter().filter(|t| !t.is_empty()));
            }
            query.paging.offset += seen;
            if seen == 0 || query.paging.offset >= page.total {
                return Ok((groups, tags));
            }
        }
    }
}

/// A store's refusal of `definition`, as a use-case error.
fn stored(e: StoreError, definition: &Definition) -> AppError {
    match e {
        StoreError::Duplicate(_) => {
            AppError::Conflict(Conflict::AliasTaken(definition.alias.clone()))
        }
        StoreError::NotFound(_) => DefinitionRef::Id(&definition.definition_id).missing(),
        other => other.into(),
    }
}

/// Refuses `caller` a change of `definition` unless they created it or are an
/// admin (a definition made before creators were recorded is anyone's).
fn may_change(caller: &Caller, definition: &Definition) -> Result<(), AppError> {
    if caller.may_act_for(definition.created_by.as_deref()) {
        return Ok(());
    }
    Err(AppError::NotOwner(Refusal {
        caller: caller.name().unwrap_or_default().to_owned(),
        owner: definition.created_by.clone().unwrap_or_default(),
        act: Act::ChangeDefinition(definition.definition_id.clone()),
    }))
}
