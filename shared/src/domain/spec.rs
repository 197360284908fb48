//! What a run is asked to be: its [`RunSpec`], fixed when it is queued, and the
//! closed sets and value types a spec is made of ([`Resources`], [`Engine`],
//! [`NodeLifecycle`]).
//!
//! [`Resources`] is one struct flattened into every body and record that
//! carries memory, cpu, gpu and ephemeral storage (definitions, templates,
//! execute requests, run specs, launches, run views), so the four fields keep
//! Flotilla's flat wire names while the code names them once.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::EnvVar;
use crate::domain::error::ValidationError;

/// The resources a run asks for. Each is optional: a missing value falls
/// back to the next source (request, then definition, then the engine's
/// default).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Resources {
    /// Memory in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPU in units of 1/1024 core (Flotilla's "CPU units").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
    /// GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u64>,
    /// Ephemeral storage in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<u64>,
}

impl Resources {
    /// Each value of `self`, else the one of `fallback`.
    pub fn or(self, fallback: Resources) -> Resources {
        Resources {
            memory: self.memory.or(fallback.memory),
            cpu: self.cpu.or(fallback.cpu),
            gpu: self.gpu.or(fallback.gpu),
            ephemeral_storage: self.ephemeral_storage.or(fallback.ephemeral_storage),
        }
    }

    /// What is wrong with values a user gave: memory and cpu, when given,
    /// must be more than 0 (0 would mean "no memory", not "the default").
    pub fn problems(&self) -> Vec<String> {
        [("memory", self.memory), ("cpu", self.cpu)]
            .into_iter()
            .filter(|(_, value)| *value == Some(0))
            .map(|(name, _)| {
                format!("{name} must be greater than 0 when given: leave it out to use the default")
            })
            .collect()
    }
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident ($what:literal) { $($(#[$vdoc:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum $name { $($(#[$vdoc])* #[serde(rename = $wire)] $variant),+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses a wire name, or says which names exist.
            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                Self::ALL.iter().copied().find(|v| v.as_str() == value).ok_or_else(|| {
                    let names: Vec<_> = Self::ALL.iter().map(|v| format!("\"{}\"", v.as_str())).collect();
                    ValidationError::new(format!(
                        "{} \"{value}\" is not valid: use {}",
                        $what,
                        names.join(" or ")
                    ))
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// The engines that run runs. A deployment runs every run on its own
    /// engine; a request may name one only as a check.
    Engine ("engine") {
        /// ECS tasks (the AWS deployment).
        Ecs => "ecs",
        /// Kubernetes jobs on EKS.
        Eks => "eks",
        /// Local processes (`flotilla serve`).
        #[default]
        Local => "local",
    }
);

wire_enum!(
    /// Whether a run may go on reclaimable capacity.
    NodeLifecycle ("node_lifecycle") {
        /// Spot capacity (Fargate Spot), Flotilla's default.
        #[default]
        Spot => "spot",
        /// On-demand capacity.
        Ondemand => "ondemand",
    }
);

/// Everything fixed when a run is queued: the definition's settings as they were
/// then, merged with the execute request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Run id, `<engine>-<uuid tail>`, 36 characters.
    pub run_id: String,
    /// The definition it was launched from.
    pub definition_id: String,
    /// The definition's alias.
    pub alias: String,
    /// The definition's group.
    pub group_name: String,
    /// Container image (recorded; run only where a container runtime is used).
    pub image: String,
    /// The definition's registry credentials (a Secrets Manager ARN), when
    /// its image comes from a private registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_credentials: Option<String>,
    /// The definition's container ports (published by a local container
    /// runtime).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Cluster (queue) it runs on.
    pub cluster: String,
    /// Engine that runs it.
    pub engine: Engine,
    /// Who launched it.
    pub owner: String,
    /// The shell command, run as `bash -c <command>`.
    pub command: Option<String>,
    /// Memory, cpu, gpu and ephemeral storage; on ECS, cpu and memory are
    /// set when the run is queued, to the Fargate size it launches with.
    #[serde(flatten)]
    pub resources: Resources,
    /// Seconds after which a running attempt is stopped.
    pub active_deadline_seconds: Option<u64>,
    /// The env shown on the run: reserved variables, then the request's.
    pub env: Vec<EnvVar>,
    /// The definition's env at launch time; the process sees it first, then `env`.
    #[serde(default)]
    pub definition_env: Vec<EnvVar>,
    /// Free text; defaults to the alias.
    pub description: String,
    /// `spot` or `ondemand`.
    pub node_lifecycle: NodeLifecycle,
    /// Labels from the request.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Scheduling tier, when given.
    pub tier: Option<String>,
    /// CPU architecture, when given.
    pub arch: Option<String>,
    /// Service account, when given.
    pub service_account: Option<String>,
    /// Idempotence key, when given.
    pub idempotence_key: Option<String>,
    /// The template version and payload it was made from, for template runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateUse>,
    /// Variables whose values are secrets, by reference: the definition's,
    /// then the request's (a request's secret of the same name wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<crate::domain::SecretRef>,
    /// Its retry policy as resolved when it was queued; without one, only
    /// infrastructure failures are retried, up to the server's attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<crate::domain::retry::RunRetry>,
    /// Why its resources differ from what its launch asked for (its job
    /// ran out of memory lately: [`crate::domain::learning`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_note: Option<String>,
    /// Why it runs on other capacity than its launch asked for (its job
    /// lost its spot capacity lately).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_note: Option<String>,
}

/// Which template version a run was made from, with what payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TemplateUse {
    /// Template version id.
    pub template_id: String,
    /// Template name.
    pub template_name: String,
    /// Version.
    pub version: u32,
    /// The payload as sent (before defaults).
    pub payload: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_keep_their_flat_wire_names_and_omit_what_is_unset() {
        let r = Resources {
            memory: Some(512),
            gpu: Some(1),
            ..Resources::default()
        };
        assert_eq!(
            serde_json::to_value(r).unwrap(),
            serde_json::json!({"memory": 512, "gpu": 1})
        );
        let given = Resources {
            cpu: Some(256),
            ..Resources::default()
        };
        assert_eq!(
            given.or(r),
            Resources {
                memory: Some(512),
                cpu: Some(256),
                gpu: Some(1),
                ephemeral_storage: None
            }
        );
    }

    #[test]
    fn a_zero_memory_or_cpu_is_a_problem_and_a_missing_one_is_not() {
        let r = Resources {
            memory: Some(0),
            cpu: Some(0),
            ..Resources::default()
        };
        assert_eq!(r.problems().len(), 2);
        assert!(Resources::default().problems().is_empty());
    }

    #[test]
    fn engines_and_lifecycles_parse_their_wire_names_and_say_which_exist() {
        assert_eq!(Engine::parse("ecs"), Ok(Engine::Ecs));
        assert_eq!(
            NodeLifecycle::parse("ondemand"),
            Ok(NodeLifecycle::Ondemand)
        );
        let err = NodeLifecycle::parse("cheap").unwrap_err().to_string();
        assert_eq!(
            err,
            "node_lifecycle \"cheap\" is not valid: use \"spot\" or \"ondemand\""
        );
        assert_eq!(
            serde_json::to_value(Engine::Local).unwrap(),
            serde_json::json!("local")
        );
    }
}
