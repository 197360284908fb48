//! Response bodies in Flotilla's wire format: runs, run statuses, timelines and
//! the list envelope.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::app::runs::Waiting;
use crate::domain::EnvVar;
use crate::domain::run::{Run, RunStatus};
use crate::domain::spec::{Engine, NodeLifecycle, Resources};
use crate::http::input::{PAGING_KEYS, QueryPairs};
use crate::ports::RecordedEvent;

/// Flotilla's `instance` object, always present on a run.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct InstanceView {
    /// Host (local) or container instance.
    pub instance_id: String,
    /// Host name.
    pub dns_name: String,
}

/// A run as Flotilla's API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
    /// The secrets the run takes, by reference (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<crate::domain::SecretRef>,
    /// Command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// MD5 of the command, lower-case hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_hash: Option<String>,
    /// Memory, cpu, gpu and ephemeral storage.
    #[serde(flatten)]
    pub resources: Resources,
    /// Memory limit (MB): the memory asked for, which the engine holds the run to
    /// (Flotilla's UI shows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    /// CPU limit (units): the cpu asked for (Flotilla's UI shows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<u64>,
    /// Engine.
    pub engine: Engine,
    /// The engine's id for the current attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// `spot` or `ondemand`.
    pub node_lifecycle: NodeLifecycle,
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
    /// The definition (or template version) it ran.
    pub executable_id: String,
    /// "task_definition" or "template".
    pub executable_type: &'static str,
    /// For template runs: `{"template_payload": …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_request_custom: Option<Value>,
    /// Attempts so far.
    pub attempt_count: u32,
    /// Its retry policy as fixed when it was queued (attempts, exit codes
    /// and failures retried, backoff, memory growth and its cap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<crate::domain::retry::RunRetry>,
    /// Why the current attempt's memory or cpu differ from what was asked
    /// (it grew after an attempt ran out of memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources_note: Option<String>,
    /// A NEEDS_RETRY run's next attempt is queued not before this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// Why a run that does not run yet waits (QUEUED, PENDING, NEEDS_RETRY).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_reason: Option<String>,
    /// Since when it waits for that.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<DateTime<Utc>>,
    /// A QUEUED run's place in its cluster's queue, 1 being next (on a
    /// single run's read, not in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u64>,
    /// When a QUEUED run may start, at its cluster's recent start rate
    /// (its newest starts in the last hour), when there is one (on a
    /// single run's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_start: Option<DateTime<Utc>>,
    /// The capacity the current attempt runs on differs from
    /// `node_lifecycle` because of this (on-demand after a spot
    /// interruption).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_note: Option<String>,
    /// The run's log in a cloud console (CloudWatch Logs on AWS), once the
    /// run has a task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// What the engine would be given, on a dry run routed to a
    /// Kubernetes cluster (its Job manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_manifest: Option<Value>,
    /// What its attempts used together (CPU seconds, peak memory when
    /// measured, duration), once an attempt that ran has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::domain::usage::Usage>,
    /// The estimated cost of its attempts in US dollars, once priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// How `cost_usd` is estimated, beside every estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_basis: Option<&'static str>,
    /// Why the current attempt is flagged as running longer than its job
    /// usually takes, once it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_long: Option<String>,
    /// A hint to ask for less memory, when the job's last successful runs
    /// used far less than they asked for (on a single run's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sizing_hint: Option<String>,
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
        let (waiting_reason, waiting_since) = run.waiting().unzip();
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
            secrets: spec.secrets.clone(),
            command: spec.command.clone(),
            command_hash: spec.command.as_deref().map(command_hash),
            resources: run.resources(),
            memory_limit: run.resources().memory,
            cpu_limit: run.resources().cpu,
            engine: spec.engine,
            task_id: run.task_id.clone(),
            node_lifecycle: run.lifecycle(),
            active_deadline_seconds: spec.active_deadline_seconds,
            description: spec.description.clone(),
            labels: spec.labels.clone(),
            tier: spec.tier.clone(),
            arch: spec.arch.clone(),
            service_account: spec.service_account.clone(),
            idempotence_key: spec.idempotence_key.clone(),
            executable_id: spec.definition_id.clone(),
            executable_type: if spec.template.is_some() {
                "template"
            } else {
                "task_definition"
            },
            execution_request_custom: spec
                .template
                .as_ref()
                .map(|t| json!({ "template_payload": t.payload, "template_name": t.template_name, "template_version": t.version })),
            attempt_count: run.attempt,
            retry: spec.retry.clone(),
            resources_note: run.resources_note.clone(),
            retry_at: run.retry_at,
            waiting_reason,
            waiting_since,
            queue_position: None,
            estimated_start: None,
            lifecycle_note: run.lifecycle_note.clone(),
            log_url: None,
            engine_manifest: None,
            usage: run.usage,
            cost_usd: run.usage.and_then(|u| u.cost_usd),
            cost_basis: run.usage.and_then(|u| u.cost_usd).map(|_| COST_BASIS),
            running_long: run.running_long.clone(),
            sizing_hint: None,
            pod_events: vec![],
            cloudtrail_notifications: json!({ "Records": null }),
            spark_extension: json!({}),
        }
    }
}

/// How a run's `cost_usd` is estimated.
pub const COST_BASIS: &str = "estimate: each attempt's requested vCPUs, memory and GPUs for the time it ran, at the price table's rates";

/// `GET /api/v6/{run_id}/status`: the fields a poller needs.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunStatusView {
    /// Run id.
    pub run_id: String,
    /// Status.
    pub status: RunStatus,
    /// Accepted.
    pub queued_at: DateTime<Utc>,
    /// Started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// Ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Why it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    /// Engine.
    pub engine: Engine,
    /// Definition.
    pub definition_id: String,
    /// Alias.
    pub alias: String,
    /// Cluster (`cluster_name` here, as Flotilla).
    pub cluster_name: String,
    /// Why a run that does not run yet waits (QUEUED, PENDING, NEEDS_RETRY).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_reason: Option<String>,
    /// Since when it waits for that.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<DateTime<Utc>>,
    /// A QUEUED run's place in its cluster's queue, 1 being next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u64>,
    /// When a QUEUED run may start, at its cluster's recent start rate
    /// (its newest starts in the last hour), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_start: Option<DateTime<Utc>>,
    /// Why the current attempt is flagged as running longer than usual,
    /// once it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_long: Option<String>,
}

impl From<&Run> for RunStatusView {
    fn from(run: &Run) -> Self {
        let (waiting_reason, waiting_since) = run.waiting().unzip();
        Self {
            run_id: run.spec.run_id.clone(),
            status: run.status,
            queued_at: run.queued_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            exit_code: run.exit_code,
            exit_reason: run.exit_reason.clone(),
            engine: run.spec.engine,
            definition_id: run.spec.definition_id.clone(),
            alias: run.spec.alias.clone(),
            cluster_name: run.spec.cluster.clone(),
            waiting_reason,
            waiting_since,
            queue_position: None,
            estimated_start: None,
            running_long: run.running_long.clone(),
        }
    }
}

impl RunStatusView {
    /// The view with where the run stands while it waits.
    pub fn waiting(mut self, waiting: Option<&Waiting>) -> Self {
        self.waiting_reason = waiting.map(|w| w.reason.clone());
        self.waiting_since = waiting.map(|w| w.since);
        self.queue_position = waiting.and_then(|w| w.queue_position);
        self.estimated_start = waiting.and_then(|w| w.estimated_start);
        self
    }
}

impl RunView {
    /// The view with where the run stands while it waits.
    pub fn waiting(mut self, waiting: Option<&Waiting>) -> Self {
        self.waiting_reason = waiting.map(|w| w.reason.clone());
        self.waiting_since = waiting.map(|w| w.since);
        self.queue_position = waiting.and_then(|w| w.queue_position);
        self.estimated_start = waiting.and_then(|w| w.estimated_start);
        self
    }
}

/// The ETag of a run's status: its status, exit code and stream version, so
/// it changes exactly when the run does.
pub fn status_etag(run: &Run, version: u64, waiting: Option<&Waiting>) -> String {
    let exit = run
        .exit_code
        .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
    match waiting {
        // Where a waiting run stands changes without the run changing.
        Some(w) => {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (&w.reason, w.queue_position, w.estimated_start).hash(&mut hasher);
            format!(
                "\"{}-{exit}-{version}-{:016x}\"",
                run.status,
                hasher.finish()
            )
        }
        None => format!("\"{}-{exit}-{version}\"", run.status),
    }
}

/// One entry of a run's timeline, in the shape of Flotilla's pod events.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TimelineEntry {
    /// Position in the run's stream, from 1.
    pub sequence: u64,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// `Normal`, or `Warning` for failures and waits.
    pub event_type: &'static str,
    /// The stored event name, e.g. `RunStarted`.
    pub reason: &'static str,
    /// The engine task it concerns, or the run.
    pub source_object: String,
    /// What happened, in words.
    pub message: String,
    /// The attempt it concerns, when it concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

impl TimelineEntry {
    /// Describes one recorded event of run `run_id`.
    pub fn of(run_id: &str, recorded: &RecordedEvent, task_id: Option<&str>) -> Self {
        use crate::domain::event::RunEvent as E;
        let event = &recorded.event;
        let (event_type, attempt, message) = match event {
            E::RunQueued { spec, .. } => {
                let mut text = format!("queued on cluster {} by {}", spec.cluster, spec.owner);
                for note in [&spec.resources_note, &spec.lifecycle_note]
                    .into_iter()
                    .flatten()
                {
                    text.push_str(&format!("; {note}"));
                }
                ("Normal", Some(1), text)
            }
            E::RunSubmitted {
                attempt, task_id, ..
            } => (
                "Normal",
                Some(*attempt),
                format!("attempt {attempt} handed to the engine as {task_id}"),
            ),
            E::RunStarted {
                attempt,
                host,
                limits,
                ..
            } => {
                let mut text = match host {
                    Some(h) => format!("attempt {attempt} running on {h}"),
                    None => format!("attempt {attempt} running"),
                };
                if let Some(limits) = limits {
                    text.push_str("; ");
                    text.push_str(limits);
                }
                ("Normal", Some(*attempt), text)
            }
            E::RunStopRequested { by, reason, .. } => (
                "Normal",
                None,
                match reason {
                    Some(why) => format!("stop requested by {by}: {why}"),
                    None => format!("stop requested by {by}"),
                },
            ),
            E::RunStopped {
                attempt,
                exit_code,
                reason,
                ..
            } => {
                let code = exit_code
                    .map_or_else(|| "no exit code".to_owned(), |c| format!("exit code {c}"));
                let kind = if *exit_code == Some(0) {
                    "Normal"
                } else {
                    "Warning"
                };
                let text = match reason {
                    Some(r) => format!("attempt {attempt} stopped with {code}: {r}"),
                    None => format!("attempt {attempt} stopped with {code}"),
                };
                (kind, Some(*attempt), text)
            }
            E::RunNeedsRetry {
                attempt,
                reason,
                exit_code,
                retry_at,
                at,
                ..
            } => {
                let mut text = match exit_code {
                    Some(code) => format!(
                        "attempt {attempt} exited with {code} and will be retried: {reason}"
                    ),
                    None => format!(
                        "attempt {attempt} failed in the infrastructure and will be retried: {reason}"
                    ),
                };
                if let Some(retry_at) = retry_at {
                    let wait = (*retry_at - *at).num_milliseconds().max(0) as f64 / 1000.0;
                    text.push_str(&format!(
                        "; the next attempt waits {wait} s (backoff), until {}",
                        retry_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ));
                }
                ("Warning", Some(*attempt), text)
            }
            E::RunLaunchDeferred {
                attempt, reason, ..
            } => (
                "Warning",
                Some(*attempt),
                format!("attempt {attempt} waits for the engine: {reason}"),
            ),
            E::RunPreparing {
                attempt, message, ..
            } => (
                "Normal",
                Some(*attempt),
                format!("attempt {attempt}: {message}"),
            ),
            E::RunRequeued {
                attempt,
                resources_note,
                lifecycle_note,
                ..
            } => {
                let mut text = match resources_note {
                    Some(note) => format!("queued again as attempt {attempt} with {note}"),
                    None => format!("queued again as attempt {attempt}"),
                };
                if let Some(note) = lifecycle_note {
                    text.push_str(&format!(" ({note})"));
                }
                ("Normal", Some(*attempt), text)
            }
            E::RunUsageRecorded { attempt, usage, .. } => {
                ("Normal", Some(*attempt), usage_text(*attempt, usage))
            }
            E::RunRunningLong {
                attempt,
                running_s,
                usual_s,
                usual_of_runs,
                ..
            } => (
                "Warning",
                Some(*attempt),
                format!(
                    "attempt {attempt} is {}",
                    crate::domain::run::running_long_text(*running_s, *usual_s, *usual_of_runs)
                ),
            ),
            E::RunAdmitted { attempt, cap, .. } => (
                "Normal",
                Some(*attempt),
                format!("attempt {attempt} took one of its cluster's {cap} slots"),
            ),
            E::RunReenqueued { attempt, .. } => (
                "Warning",
                Some(*attempt),
                format!(
                    "attempt {attempt} was not taken from the queue in time; its ticket was sent again"
                ),
            ),
        };
        Self {
            sequence: recorded.sequence,
            timestamp: event.at(),
            event_type,
            reason: event.name(),
            source_object: task_id.unwrap_or(run_id).to_owned(),
            message,
            attempt,
        }
    }
}

/// A run's whole timeline, oldest first; each entry names the task of its
/// attempt once the attempt has one.
pub fn timeline(run_id: &str, events: &[RecordedEvent]) -> Vec<TimelineEntry> {
    use crate::domain::event::RunEvent as E;
    let mut task: Option<String> = None;
    events
        .iter()
        .map(|recorded| {
            match &recorded.event {
                E::RunSubmitted { task_id, .. } => task = Some(task_id.clone()),
                E::RunStarted {
                    task_id: Some(t), ..
                } => task = Some(t.clone()),
                E::RunRequeued { .. } => task = None,
                _ => {}
            }
            TimelineEntry::of(run_id, recorded, task.as_deref())
        })
        .collect()
}

/// How a list was asked for, echoed in its envelope.
pub struct ListMeta<'a> {
    /// The env filters parsed.
    pub env: &'a [EnvVar],
    /// The sort key used.
    pub sort_by: &'a str,
    /// The direction used.
    pub order: &'a str,
    /// The page.
    pub paging: crate::domain::query::Paging,
    /// Where the next page starts, when rows follow.
    pub next_token: Option<String>,
    /// `total` is a lower bound.
    pub total_is_lower_bound: bool,
}

/// Flotilla's list envelope: the rows under `list_key`, the total, the paging
/// and sort used, every filter given echoed as an array (`env` as the
/// `env_filters` map), and the query keys that were ignored; and, beyond
/// Flotilla's, `next_token` when rows follow and `total_is_lower_bound` when
/// the total is only a bound.
pub fn page_envelope(
    list_key: &str,
    items: Vec<Value>,
    total: u64,
    q: &QueryPairs,
    filter_keys: &[&str],
    meta: ListMeta<'_>,
) -> Value {
    let env_filters: serde_json::Map<String, Value> = meta
        .env
        .iter()
        .map(|v| (v.name.clone(), Value::String(v.value.clone())))
        .collect();
    let mut body = json!({
        list_key: items,
        "total": total,
        "limit": meta.paging.limit,
        "offset": meta.paging.offset,
        "sort_by": meta.sort_by,
        "order": meta.order,
        "env_filters": env_filters,
    });
    if let Value::Object(map) = &mut body {
        if let Some(token) = meta.next_token {
            map.insert("next_token".into(), json!(token));
        }
        if meta.total_is_lower_bound {
            map.insert("total_is_lower_bound".into(), json!(true));
        }
        for key in filter_keys.iter().filter(|k| **k != "env") {
            let values = q.all(key);
            if !values.is_empty() {
                map.insert((*key).to_owned(), json!(values));
            }
        }
        let known: Vec<&str> = filter_keys.iter().chain(PAGING_KEYS).copied().collect();
        let mut ignored = q.unknown_keys(&known);
        ignored.extend(q.lenient());
        if !ignored.is_empty() {
            map.insert("ignored".into(), json!(ignored));
        }
    }
    body
}

pub use crate::domain::learning::command_hash;

/// A timeline's line for an attempt's usage: "attempt 1 used 1.02 CPU
/// seconds in 3.4 s, peaking at 105 MB; estimated cost $0.000012".
fn usage_text(attempt: u32, usage: &crate::domain::usage::Usage) -> String {
    use crate::domain::usage::UsageBasis;
    let mut text = match usage.basis {
        UsageBasis::Measured => format!(
            "attempt {attempt} used {:.2} CPU seconds in {:.1} s",
            usage.cpu_seconds, usage.duration_s
        ),
        UsageBasis::Reserved => format!(
            "attempt {attempt} held its reserved size for {:.1} s ({:.2} CPU seconds reserved)",
            usage.duration_s, usage.cpu_seconds
        ),
    };
    if let Some(peak) = usage.peak_memory_mb {
        text.push_str(&format!(", peaking at {peak} MB"));
    }
    if let Some(cost) = usage.cost_usd {
        text.push_str(&format!("; estimated cost ${cost:.6}"));
    }
    text
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
