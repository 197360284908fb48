//! The pure domain: runs, definitions and the rules that govern them.
//!
//! Nothing in here performs IO, reads the clock or makes ids: "now" and new ids
//! arrive inside commands and inputs. Nothing here depends on an adapter, on
//! async, or on any AWS crate; `cargo check -p shared --no-default-features`
//! keeps that true.
//!
//! - [`run`]: the run aggregate: [`run::decide`] holds every rule, [`run::evolve`] folds.
//! - [`event`]: the stored run events, whose names are forever.
//! - [`definition`]: job definitions and their validation.
//! - [`cluster`]: clusters, their status and tiers, and routing a launch to one.
//! - [`limits`] and [`fargate`]: what an engine can take of a launch, Fargate's
//!   task sizes included.
//! - [`template`]: versioned job templates: schema, defaults, Go-template commands.
//! - [`spec`]: a run's spec, fixed when it is queued, and what it is made of
//!   ([`spec::Resources`], [`spec::Engine`], [`spec::NodeLifecycle`]).
//! - [`launch`]: what an execute request may ask for, validated into a [`spec::RunSpec`].
//! - [`query`]: filters, sort keys and paging for lists, as closed enums.
//! - [`report`]: status reports from runs that report their own status.
//! - [`learning`]: what a job's runs teach its next ones (more memory after an
//!   out of memory, on-demand after a spot interruption), keyed on definition
//!   and command hash.
//! - [`retry`]: retry policies: which ended attempts run again, when, and
//!   with how much memory.
//! - [`usage`]: what an attempt used and its estimated cost (price tables).
//! - [`insights`]: leaderboards over daily tallies of ended runs.
//! - [`schedule`]: cron schedules in time zones, what is due and when.

pub mod cluster;
pub mod definition;
pub mod error;
pub mod event;
pub mod fargate;
pub mod identity;
pub mod insights;
pub mod launch;
pub mod learning;
pub mod limits;
pub mod query;
pub mod report;
pub mod retry;
pub mod run;
pub mod schedule;
pub mod spec;
pub mod template;
pub mod usage;

pub use error::{DomainError, ValidationError};

use serde::{Deserialize, Serialize};

/// A variable whose value is a secret, named by where it is kept, never by
/// its value: `{"name": "API_KEY", "value_from": "<where>"}`. On ECS
/// `value_from` is an SSM parameter or Secrets Manager ARN, passed as the
/// container's `secrets`; locally it is a key of the server's secrets file,
/// else a variable of the server's environment. Only the reference is stored
/// and answered; the value exists only in the run's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretRef {
    /// Variable name in the run's environment.
    pub name: String,
    /// Where the value is kept.
    pub value_from: String,
}

/// The problems of `secrets` given as `what`: names as for env, each once
/// and not also in `env`, each with somewhere to come from.
pub fn secret_problems(secrets: &[SecretRef], env: &[EnvVar], what: &str) -> Vec<String> {
    use crate::domain::limits::{
        MAX_ITEMS, MAX_TEXT_BYTES, count_problem, length_problem, nul_problem,
    };
    let mut problems: Vec<String> = count_problem(what, secrets.len(), MAX_ITEMS)
        .into_iter()
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for secret in secrets {
        if !is_env_name(&secret.name) {
            problems.push(format!(
                "{what}: \"{}\" is not a valid variable name: use letters, digits and '_', not starting with a digit",
                secret.name
            ));
        } else if !seen.insert(secret.name.as_str()) {
            problems.push(format!(
                "{what}: \"{}\" is given more than once; give each secret once",
                secret.name
            ));
        } else if env.iter().any(|v| v.name == secret.name) {
            problems.push(format!(
                "{what}: \"{}\" is also a plain env variable: keep it in one of env and secrets",
                secret.name
            ));
        }
        if secret.value_from.trim().is_empty() {
            problems.push(format!(
                "{what}: \"{}\" needs a value_from: where its value is kept (an SSM parameter or Secrets Manager ARN on AWS, a key of the secrets file locally)",
                secret.name
            ));
        }
        problems.extend(length_problem(
            &format!("{what} {} value_from", secret.name),
            &secret.value_from,
            MAX_TEXT_BYTES,
        ));
        problems.extend(nul_problem(
            &format!("{what} {} value_from", secret.name),
            &secret.value_from,
        ));
    }
    problems
}

/// One environment variable, as Flotilla's API spells it: `{"name": …, "value": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Variable value.
    #[serde(default)]
    pub value: String,
}

impl EnvVar {
    /// Builds a variable from anything string-like.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Checks a list of environment variables a user supplied: names must be usable
/// by a shell and must not repeat. `what` names the list in the message.
pub fn validate_env(env: &[EnvVar], what: &str) -> Result<(), ValidationError> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for var in env {
        if var.name.is_empty() {
            problems.push(format!("{what}: every variable needs a non-empty \"name\""));
        } else if !is_env_name(&var.name) {
            problems.push(format!(
                "{what}: \"{}\" is not a valid variable name: use letters, digits and '_', not starting with a digit",
                var.name
            ));
        } else if !seen.insert(var.name.as_str()) {
            problems.push(format!(
                "{what}: \"{}\" is given more than once; give each variable once",
                var.name
            ));
        }
    }
    ValidationError::from_problems(problems)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}
