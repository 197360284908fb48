//! Response bodies in Flotilla's wire format.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::EnvVar;
use crate::domain::run::{Run, RunStatus};

/// Flotilla's `instance` object, always present on a run.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    /// Host (local) or container instance.
    pub instance_id: String,
    /// Host name.
    pub dns_name: String,
}

/// A run as Flotilla's API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// Run id.
    pub run_id: String,
    /// Definition.
    pub definition_id: String,
    /// Alias.
    pub alias: String,
    /// Image.
    pub image: String,
    /// Group.
    pub group_name: String,
    /// Cluster.
    pub cluster: String,
    /// Status.
    pub status: RunStatus,
    /// Exit code, once ended with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Why it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    /// Accepted.
    pub queued_at: DateTime<Utc>,
    /// Started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// Ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Where it runs.
    pub instance: InstanceView,
    /// Owner.
    pub user: String,
    /// Always "task".
    pub task_type: &'static str,
    /// Reserved variables, then the request's.
    pub env: Vec<EnvVar>,
    /// Command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// MD5 of the command, lower-case hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_hash: Option<String>,
    /// Memory (MB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPU units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
    /// GPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u64>,
    /// Ephemeral storage (MB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<u64>,
    /// Engine.
    pub engine: String,
    /// The engine's id for the current attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// `spot` or `ondemand`.
    pub node_lifecycle: String,
    /// Timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<u64>,
    /// Description.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Arch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Service account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Idempotence key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotence_key: Option<String>,
    /// The definition it ran.
    pub executable_id: String,
    /// "task_definition".
    pub executable_type: &'static str,
    /// Attempts so far.
    pub attempt_count: u32,
    /// The run's log in a cloud console (CloudWatch Logs on AWS), once the
    /// run has a task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// Flotilla's pod events; always present.
    pub pod_events: Vec<Value>,
    /// Flotilla's CloudTrail notifications; always present.
    pub cloudtrail_notifications: Value,
    /// Flotilla's Spark extension; always present.
    pub spark_extension: Value,
}

impl From<&Run> for RunView {
    fn from(run: &Run) -> Self {
        let spec = &run.spec;
        let host = run.host.clone().unwrap_or_default();
        Self {
            run_id: spec.run_id.clone(),
            definition_id: spec.definition_id.clone(),
            alias: spec.alias.clone(),
            image: spec.image.clone(),
            group_name: spec.group_name.clone(),
            cluster: spec.cluster.clone(),
            status: run.status,
            exit_code: run.exit_code,
            exit_reason: run.exit_reason.clone(),
            queued_at: run.queued_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            instance: InstanceView {
                instance_id: host.clone(),
                dns_name: host,
            },
            user: spec.owner.clone(),
            task_type: "task",
            env: spec.env.clone(),
            command: spec.command.clone(),
            command_hash: spec.command.as_deref().map(command_hash),
            memory: spec.memory,
            cpu: spec.cpu,
            gpu: spec.gpu,
            ephemeral_storage: spec.ephemeral_storage,
            engine: spec.engine.clone(),
            task_id: run.task_id.clone(),
            node_lifecycle: spec.node_lifecycle.clone(),
            active_deadline_seconds: spec.active_deadline_seconds,
            description: spec.description.clone(),
            labels: spec.labels.clone(),
            tier: spec.tier.clone(),
            arch: spec.arch.clone(),
            service_account: spec.service_account.clone(),
            idempotence_key: spec.idempotence_key.clone(),
            executable_id: spec.definition_id.clone(),
            executable_type: "task_definition",
            attempt_count: run.attempt,
            log_url: None,
            pod_events: vec![],
            cloudtrail_notifications: json!({ "Records": null }),
            spark_extension: json!({}),
        }
    }
}

/// Lower-case hex MD5 of a command, as Flotilla's `command_hash`.
pub fn command_hash(command: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(command.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_hash_is_the_md5_of_the_command() {
        assert_eq!(command_hash("hello"), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(command_hash(""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
