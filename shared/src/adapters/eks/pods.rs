//! A Job's pod, as the API server reports it, translated into an
//! [`EngineUpdate`] of its run's attempt (read from the pod's labels).
//!
//! | pod | update |
//! | --- | --- |
//! | Pending, the container waiting on `ImagePullBackOff`, `ErrImagePull`, `InvalidImageName`, `CreateContainerConfigError` or `CreateContainerError` | infrastructure failure (NEEDS_RETRY), with the kubelet's message |
//! | Pending, not schedulable | a step of getting ready ("waiting for a node: …"), for the timeline |
//! | Pending otherwise (ContainerCreating, scheduling) | submitted (PENDING) |
//! | Running | started (RUNNING), on the pod's node |
//! | Succeeded or Failed, the container terminated with an exit code | exited with it (`OOMKilled`: recorded as out of memory) |
//! | Failed with reason `Evicted`, `NodeLost`, `Shutdown` or `Terminated`, or a `DisruptionTarget` condition, no exit code | infrastructure failure; a spot pod's is a spot interruption |
//! | Failed with reason `DeadlineExceeded` | exited without a code: past its timeout |
//!
//! The pod's `resourceVersion` plays the part of ECS's `detail.version`: a
//! duplicate or an older state is harmless, as the run ignores a report
//! that would move it backwards.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::{ATTEMPT_LABEL, CONTAINER_NAME, LIFECYCLE_LABEL, RUN_ID_LABEL, job_name};
use crate::domain::retry::SPOT_INTERRUPTION;
use crate::ports::{EngineChange, EngineUpdate};

/// Waiting reasons that mean the container cannot start as things are.
const CANNOT_START: [&str; 5] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];
/// Pod reasons that mean the node, not the command, ended it.
const NODE_GONE: [&str; 4] = ["Evicted", "NodeLost", "Shutdown", "Terminated"];

/// The parts that say something, joined by `: `.
fn joined<const N: usize>(parts: [Option<&str>; N]) -> String {
    parts
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// A Kubernetes time as chrono's.
fn utc(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(time.0.subsec_nanosecond()).unwrap_or(0);
    DateTime::from_timestamp(time.0.as_second(), nanos)
}

/// The run and attempt whose pod `pod` is, from its labels.
pub fn attempt_of(pod: &Pod) -> Option<(String, u32)> {
    let labels = pod.metadata.labels.as_ref()?;
    let run_id = labels.get(RUN_ID_LABEL)?.clone();
    let attempt: u32 = labels.get(ATTEMPT_LABEL)?.parse().ok()?;
    Some((run_id, attempt))
}

/// The task (Job name) whose pod `pod` is.
pub fn task_of(pod: &Pod) -> Option<String> {
    attempt_of(pod).map(|(run_id, attempt)| job_name(&run_id, attempt))
}

/// The update `pod` reports, if it is a Flotilla run's pod; `seen` is when
/// it was read (the time of a state that carries none).
pub fn pod_update(pod: &Pod, seen: DateTime<Utc>) -> Option<EngineUpdate> {
    let labels = pod.metadata.labels.as_ref()?;
    let run_id = labels.get(RUN_ID_LABEL)?.clone();
    let attempt: u32 = labels.get(ATTEMPT_LABEL)?.parse().ok()?;
    let spot = labels.get(LIFECYCLE_LABEL).is_some_and(|l| l == "spot");
    let status = pod.status.as_ref()?;
    let task_id = job_name(&run_id, attempt);
    let container = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER_NAME);
    let engine_version = pod
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse::<u64>().ok());
    let (change, at) = match status.phase.as_deref() {
        Some("Running") => (
            EngineChange::Started {
                task_id: Some(task_id),
                host: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            },
            container
                .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
                .and_then(utc)
                .unwrap_or(seen),
        ),
        Some("Succeeded" | "Failed") => ended(status, container, spot, seen),
        _ => pending(status, container, task_id, seen),
    };
    Some(EngineUpdate {
        run_id,
        attempt,
        change,
        engine_version,
        at,
    })
}

fn pending(
    status: &k8s_openapi::api::core::v1::PodStatus,
    container: Option<&ContainerStatus>,
    task_id: String,
    seen: DateTime<Utc>,
) -> (EngineChange, DateTime<Utc>) {
    let waiting = container.and_then(|c| c.state.as_ref()?.waiting.as_ref());
    if let Some(waiting) = waiting
        && let Some(reason) = waiting.reason.as_deref()
        && CANNOT_START.contains(&reason)
    {
        let reason = joined([Some(reason), waiting.message.as_deref()]);
        return (EngineChange::InfrastructureFailure { reason }, seen);
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(condition) = unschedulable {
        let message = condition
            .message
            .clone()
            .unwrap_or_else(|| "no node fits it yet".to_owned());
        return (
            EngineChange::Progress {
                message: format!("waiting for a node: {message}"),
            },
            condition
                .last_transition_time
                .as_ref()
                .and_then(utc)
                .unwrap_or(seen),
        );
    }
    (EngineChange::Submitted { task_id }, seen)
}

fn ended(
    status: &k8s_openapi::api::core::v1::PodStatus,
    container: Option<&ContainerStatus>,
    spot: bool,
    seen: DateTime<Utc>,
) -> (EngineChange, DateTime<Utc>) {
    let terminated = container.and_then(|c| c.state.as_ref()?.terminated.as_ref());
    let pod_reason = status.reason.as_deref().unwrap_or_default();
    let pod_message = status.message.as_deref().unwrap_or_default();
    let disrupted = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    let at = terminated
        .and_then(|t| t.finished_at.as_ref())
        .and_then(utc)
        .unwrap_or(seen);
    let node_gone = NODE_GONE.contains(&pod_reason) || disrupted.is_some();
    match terminated {
        Some(t) if !(node_gone && t.exit_code != 0 && t.reason.as_deref() != Some("OOMKilled")) => {
            let code = i64::from(t.exit_code);
            let reason = match t.reason.as_deref() {
                Some("OOMKilled") => Some(format!(
                    "out of memory (exit {code}): the run used more than its memory; launch it with more \"memory\" - OOMKilled"
                )),
                _ if code == 0 => None,
                Some(r) => Some(joined([Some(r), t.message.as_deref()])),
                None => None,
            };
            (
                EngineChange::Exited {
                    usage: None,
                    exit_code: Some(code),
                    reason,
                },
                at,
            )
        }
        _ if node_gone => {
            let why = disrupted.and_then(|c| c.message.as_deref().or(c.reason.as_deref()));
            let reason = joined([Some(pod_reason), Some(pod_message), why]);
            let reason = if reason.is_empty() {
                "the pod's node went away".to_owned()
            } else {
                reason
            };
            let reason = if spot {
                format!("{SPOT_INTERRUPTION}: {reason}")
            } else {
                reason
            };
            (EngineChange::InfrastructureFailure { reason }, at)
        }
        _ => {
            let reason = if pod_reason == "DeadlineExceeded" {
                "exceeded its active_deadline_seconds and was stopped".to_owned()
            } else {
                joined([Some(pod_reason), Some(pod_message)])
            };
            (
                EngineChange::Exited {
                    usage: None,
                    exit_code: None,
                    reason: Some(reason).filter(|r| !r.is_empty()),
                },
                at,
            )
        }
    }
}
