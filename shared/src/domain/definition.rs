//! Job definitions: what a data scientist defines once and launches many times.
//!
//! The JSON field names are Flotilla's (`definition_id`, `alias`, `group_name`,
//! `image`, `command`, `memory`, `cpu`, `gpu`, `env`, …) and read back exactly as
//! stored, tags and ports included. A definition keeps the cpu and memory it
//! was given; the size its runs launch with (on ECS, Fargate's size for them)
//! is chosen at launch and shown on each run. `repository_credentials` is ours:
//! Flotilla has no private registries.

use serde::{Deserialize, Serialize};

use crate::domain::error::ValidationError;
use crate::domain::retry::RetryPolicy;
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
    /// The Secrets Manager secret (its ARN,
    /// `arn:<partition>:secretsmanager:<region>:<account>:secret:<name>`)
    /// holding the `username` and `password` of the private registry the
    /// image comes from; without it the image must come from a registry the
    /// task execution role reaches (ECR) or a public one. ECS reads it when
    /// a task starts; a local process, which runs no image, ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_credentials: Option<String>,
    /// When and how its runs are run again (see the README's retry
    /// policies); a launch's policy replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// The most memory (MB) an attempt of its runs may get when its memory
    /// grows after running out; the server's cap when absent (and never
    /// more than it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<u64>,
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
    /// The Secrets Manager secret ARN of the image's registry credentials
    /// (see [`Definition::repository_credentials`]); on update, `""`
    /// removes it.
    pub repository_credentials: Option<String>,
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
    /// See [`Definition::retry`]; on update, `{}` removes it.
    pub retry: Option<RetryPolicy>,
    /// See [`Definition::max_memory`]; on update, `0` removes it.
    pub max_memory: Option<u64>,
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

/// The problem with `arn` as a definition's `repository_credentials`, if
/// it is not a Secrets Manager secret's ARN
/// (`arn:<partition>:secretsmanager:<region>:<account>:secret:<name>`).
pub fn repository_credentials_problem(arn: &str) -> Option<String> {
    use crate::domain::limits::{MAX_TEXT_BYTES, length_problem};
    if let Some(problem) = length_problem("repository_credentials", arn, MAX_TEXT_BYTES) {
        return Some(problem);
    }
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let lower = |s: &str, extra: char| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == extra)
    };
    let name_char = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-!".contains(c);
    let valid = match parts.as_slice() {
        [
            "arn",
            partition,
            "secretsmanager",
            region,
            account,
            "secret",
            name,
        ] => {
            lower(partition, '-')
                && lower(region, '-')
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && !name.is_empty()
                && name.chars().all(name_char)
        }
        _ => false,
    };
    (!valid).then(|| {
        format!(
            "repository_credentials \"{arn}\" is not a Secrets Manager secret ARN: give the ARN of the secret holding the registry's username and password, e.g. \"arn:aws:secretsmanager:us-east-1:123456789012:secret:flotilla/registry\""
        )
    })
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
    if let Some(arn) = input
        .repository_credentials
        .as_deref()
        .filter(|a| !a.is_empty())
    {
        problems.extend(repository_credentials_problem(arn));
    }
    if let Some(policy) = &input.retry {
        problems.extend(policy.problems("retry"));
    }
}

/// The problem with `max_memory` below the memory the definition asks for.
fn max_memory_problem(definition: &Definition) -> Option<String> {
    let (Some(max), Some(memory)) = (definition.max_memory, definition.resources.memory) else {
        return None;
    };
    (max < memory).then(|| {
        format!(
            "max_memory {max} MB is less than memory {memory} MB: give a max_memory of at least the memory, or leave it out"
        )
    })
}

/// A policy that says nothing is no policy.
fn policy_or_none(policy: RetryPolicy) -> Option<RetryPolicy> {
    (policy != RetryPolicy::default()).then_some(policy)
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
        Self {
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
            repository_credentials: input.repository_credentials.filter(|a| !a.is_empty()),
            retry: input.retry.and_then(policy_or_none),
            max_memory: input.max_memory.filter(|m| *m > 0),
            created_by: None,
        }
        .checked()
    }

    /// `self`, or the problem of its memory and max_memory together.
    fn checked(self) -> Result<Self, ValidationError> {
        match max_memory_problem(&self) {
            Some(problem) => Err(ValidationError::new(problem)),
            None => Ok(self),
        }
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
        if let Some(v) = input.repository_credentials {
            next.repository_credentials = Some(v).filter(|a| !a.is_empty());
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
        if let Some(v) = input.retry {
            next.retry = policy_or_none(v);
        }
        if let Some(v) = input.max_memory {
            next.max_memory = Some(v).filter(|m| *m > 0);
        }
        next.checked()
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
    fn repository_credentials_must_be_a_secrets_manager_secret_arn_and_an_empty_one_removes_it() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:flotilla/registry-AbCdEf";
        let def = Definition::create(
            "g-1".into(),
            DefinitionInput {
                repository_credentials: Some(arn.into()),
                ..input("a", "registry.example.com/team/job:1")
            },
        )
        .unwrap();
        assert_eq!(def.repository_credentials.as_deref(), Some(arn));
        assert!(
            repository_credentials_problem(
                "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:x"
            )
            .is_none()
        );
        for bad in [
            "flotilla/registry",
            "arn:aws:ssm:eu-west-1:123456789012:parameter/registry",
            "arn:aws:secretsmanager:eu-west-1:1234:secret:registry",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:",
            "arn:aws:secretsmanager::123456789012:secret:registry",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:has space",
        ] {
            let err = def
                .updated(DefinitionInput {
                    repository_credentials: Some(bad.into()),
                    ..Default::default()
                })
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!(
                    "repository_credentials \"{bad}\" is not a Secrets Manager secret ARN"
                )),
                "{err}"
            );
        }
        let kept = def.updated(DefinitionInput::default()).unwrap();
        assert_eq!(kept.repository_credentials.as_deref(), Some(arn));
        let removed = def
            .updated(DefinitionInput {
                repository_credentials: Some(String::new()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(removed.repository_credentials, None);
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
