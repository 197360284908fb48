//! Job definitions: what a data scientist defines once and launches many times.
//!
//! The JSON field names are Flotilla's (`definition_id`, `alias`, `group_name`,
//! `image`, `command`, `memory`, `cpu`, `gpu`, `env`, …) and read back exactly as
//! stored, tags and ports included.

use serde::{Deserialize, Serialize};

use crate::domain::error::ValidationError;
use crate::domain::spec::Resources;
use crate::domain::{EnvVar, SecretRef, validate_env};

/// A stored job definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Definition {
    /// `<group_name>-<uuid>`, assigned on create.
    pub definition_id: String,
    /// Unique, human-chosen name; used in `/task/alias/{alias}`.
    pub alias: String,
    /// Team or project grouping.
    #[serde(default)]
    pub group_name: String,
    /// Container image.
    pub image: String,
    /// Default shell command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Memory, cpu, gpu and ephemeral storage of its runs.
    #[serde(flatten)]
    pub resources: Resources,
    /// Default environment.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Container ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Whether resources may be raised after an out-of-memory failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_resource_allocation: Option<bool>,
    /// Whether the job needs a Docker socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_docker: Option<bool>,
    /// Preferred cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cluster: Option<String>,
    /// Flotilla's task type ("task").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    /// Variables whose values are secrets, by reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    /// Who created it, when the server knew (only they, or an admin, may
    /// update or delete it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// The body of a create or update: every field optional; on update only the
/// fields given change.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
pub struct DefinitionInput {
    /// See [`Definition::alias`].
    pub alias: Option<String>,
    /// See [`Definition::group_name`].
    pub group_name: Option<String>,
    /// See [`Definition::image`].
    pub image: Option<String>,
    /// See [`Definition::command`].
    pub command: Option<String>,
    /// See [`Definition::resources`].
    #[serde(flatten)]
    pub resources: Resources,
    /// See [`Definition::env`].
    pub env: Option<Vec<EnvVar>>,
    /// See [`Definition::tags`].
    pub tags: Option<Vec<String>>,
    /// See [`Definition::secrets`].
    pub secrets: Option<Vec<SecretRef>>,
    /// See [`Definition::ports`].
    pub ports: Option<Vec<u16>>,
    /// See [`Definition::adaptive_resource_allocation`].
    pub adaptive_resource_allocation: Option<bool>,
    /// See [`Definition::requires_docker`].
    pub requires_docker: Option<bool>,
    /// See [`Definition::target_cluster`].
    pub target_cluster: Option<String>,
    /// See [`Definition::task_type`].
    pub task_type: Option<String>,
}

/// Characters an alias may not contain: it appears in URL paths.
fn alias_problem(alias: &str) -> Option<String> {
    if alias.trim().is_empty() {
        Some("alias is required: give the definition a unique name, e.g. \"alias\": \"hello-flotilla\"".into())
    } else if alias.len() > 255 {
        Some("alias is longer than 255 characters: choose a shorter one".into())
    } else if alias
        .chars()
        .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        Some(format!(
            "alias \"{alias}\" contains '/', a space or a control character: use letters, digits, '-', '_' or '.'"
        ))
    } else {
        None
    }
}

fn resource_problems(input: &DefinitionInput, problems: &mut Vec<String>) {
    use crate::domain::limits::{
        MAX_IMAGE_BYTES, MAX_ITEMS, MAX_NAME_BYTES, count_problem, length_problem, names_problems,
        nul_problem,
    };
    problems.extend(input.resources.problems());
    let names = [
        ("group_name", &input.group_name, MAX_NAME_BYTES),
        ("image", &input.image, MAX_IMAGE_BYTES),
        ("target_cluster", &input.target_cluster, MAX_NAME_BYTES),
        ("task_type", &input.task_type, MAX_NAME_BYTES),
    ];
    for (field, value, max) in names {
        if let Some(value) = value {
            problems.extend(length_problem(field, value, max));
            problems.extend(nul_problem(field, value));
        }
    }
    if let Some(tags) = &input.tags {
        problems.extend(names_problems("tags", tags));
    }
    if let Some(ports) = &input.ports {
        problems.extend(count_problem("ports", ports.len(), MAX_ITEMS));
    }
    if let Some(env) = &input.env {
        problems.extend(count_problem("env", env.len(), MAX_ITEMS));
    }
    if let Some(env) = &input.env
        && let Err(e) = validate_env(env, "env")
    {
        problems.extend(e.problems);
    }
}

impl Definition {
    /// Builds a new definition with the id the caller made.
    pub fn create(definition_id: String, input: DefinitionInput) -> Result<Self, ValidationError> {
        let mut problems = Vec::new();
        let image = input.image.clone().unwrap_or_default();
        if image.trim().is_empty() {
            problems.push(
                "image is required: name the container image the job runs, e.g. \"image\": \"ubuntu:latest\"".into(),
            );
        }
        let alias = input.alias.clone().unwrap_or_default();
        problems.extend(alias_problem(&alias));
        resource_problems(&input, &mut problems);
        ValidationError::from_problems(problems)?;
        Ok(Self {
            definition_id,
            alias,
            group_name: input.group_name.unwrap_or_default(),
            image,
            command: input.command.filter(|c| !c.trim().is_empty()),
            resources: input.resources,
            env: input.env.unwrap_or_default(),
            tags: input.tags.unwrap_or_default(),
            ports: input.ports.unwrap_or_default(),
            adaptive_resource_allocation: input.adaptive_resource_allocation,
            requires_docker: input.requires_docker,
            target_cluster: input.target_cluster.filter(|c| !c.is_empty()),
            task_type: input.task_type.filter(|t| !t.is_empty()),
            secrets: input.secrets.unwrap_or_default(),
            created_by: None,
        })
    }

    /// Applies an update: every field given (and non-empty, for strings) replaces
    /// the stored one. The id never changes.
    pub fn updated(&self, input: DefinitionInput) -> Result<Self, ValidationError> {
        let mut problems = Vec::new();
        if let Some(alias) = &input.alias {
            problems.extend(alias_problem(alias));
        }
        if matches!(&input.image, Some(i) if i.trim().is_empty()) {
            problems.push("image cannot be emptied: leave it out to keep the current image".into());
        }
        resource_problems(&input, &mut problems);
        ValidationError::from_problems(problems)?;
        let mut next = self.clone();
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        if let Some(v) = non_empty(input.alias) {
            next.alias = v;
        }
        if let Some(v) = input.group_name {
            next.group_name = v;
        }
        if let Some(v) = non_empty(input.image) {
            next.image = v;
        }
        if let Some(v) = input.command {
            next.command = Some(v).filter(|c| !c.trim().is_empty());
        }
        next.resources = input.resources.or(next.resources);
        if let Some(v) = input.env {
            next.env = v;
        }
        if let Some(v) = input.tags {
            next.tags = v;
        }
        if let Some(v) = input.secrets {
            next.secrets = v;
        }
        if let Some(v) = input.ports {
            next.ports = v;
        }
        next.adaptive_resource_allocation = input
            .adaptive_resource_allocation
            .or(next.adaptive_resource_allocation);
        next.requires_docker = input.requires_docker.or(next.requires_docker);
        if let Some(v) = non_empty(input.target_cluster) {
            next.target_cluster = Some(v);
        }
        if let Some(v) = non_empty(input.task_type) {
            next.task_type = Some(v);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(alias: &str, image: &str) -> DefinitionInput {
        DefinitionInput {
            alias: Some(alias.into()),
            image: Some(image.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_definition_without_image_or_alias_is_refused_with_both_problems() {
        let err = Definition::create("g-1".into(), DefinitionInput::default()).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.problems[0].contains("image is required"));
        assert!(err.problems[1].contains("alias is required"));
    }

    #[test]
    fn an_alias_with_a_slash_is_refused() {
        let err = Definition::create("g-1".into(), input("a/b", "ubuntu")).unwrap_err();
        assert!(err.to_string().contains("contains '/'"), "{err}");
    }

    #[test]
    fn an_update_changes_only_the_fields_given() {
        let def = Definition::create("g-1".into(), input("a", "ubuntu")).unwrap();
        let next = def
            .updated(DefinitionInput {
                group_name: Some("team".into()),
                resources: Resources {
                    memory: Some(1024),
                    ..Resources::default()
                },
                ..Default::default()
            })
            .unwrap();
        assert_eq!(next.alias, "a");
        assert_eq!(next.image, "ubuntu");
        assert_eq!(next.group_name, "team");
        assert_eq!(next.resources.memory, Some(1024));
    }
}
