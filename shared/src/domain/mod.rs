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
//! - [`template`]: versioned job templates: schema, defaults, Go-template commands.
//! - [`spec`]: a run's spec, fixed when it is queued, and what it is made of
//!   ([`spec::Resources`], [`spec::Engine`], [`spec::NodeLifecycle`]).
//! - [`launch`]: what an execute request may ask for, validated into a [`spec::RunSpec`].
//! - [`query`]: filters, sort keys and paging for lists, as closed enums.
//! - [`report`]: status reports from runs that report their own status.

pub mod cluster;
pub mod definition;
pub mod error;
pub mod event;
pub mod identity;
pub mod launch;
pub mod limits;
pub mod query;
pub mod report;
pub mod run;
pub mod spec;
pub mod template;

pub use error::{DomainError, ValidationError};

use serde::{Deserialize, Serialize};

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
