//! ECS "Task State Change" events (EventBridge) translated into
//! [`EngineUpdate`]s: the heart of the `status` function (feature `aws`).
//!
//! The event types are our own, holding only the fields we read, so a field AWS
//! adds never breaks parsing. A task is tied to its run and attempt by its task
//! group, `flotilla:<run_id>:<attempt>`, which the ECS engine sets on RunTask.
//!
//! | ECS `lastStatus` | update |
//! | --- | --- |
//! | PROVISIONING, PENDING, ACTIVATING | submitted (PENDING) |
//! | RUNNING | started (RUNNING) |
//! | STOPPED, a container exit code | exited with it (137 or `OutOfMemoryError`: recorded as out of memory) |
//! | STOPPED, no exit code, `CannotPullContainerError`, `CannotStartContainerError`, `CannotCreateContainerError`, `ResourceInitializationError`, or stop code `SpotInterruption` / `TaskFailedToStart` | infrastructure failure (NEEDS_RETRY) |
//! | STOPPED, no exit code otherwise | exited without a code, with ECS's reason |
//! | DEACTIVATING, STOPPING, DEPROVISIONING | nothing (the STOPPED event follows) |
//!
//! Duplicated or out-of-order events are harmless: the run aggregate ignores a
//! report that would move a run backwards.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::retry::SPOT_INTERRUPTION;
use crate::ports::{EngineChange, EngineUpdate};

/// `detail-type` of the events this module reads.
pub const DETAIL_TYPE: &str = "ECS Task State Change";
/// Prefix of the task group that names a task's run and attempt.
pub const TASK_GROUP_PREFIX: &str = "flotilla:";

/// Container reasons that mean the infrastructure, not the user's code, failed.
const INFRASTRUCTURE_REASONS: [&str; 4] = [
    "CannotPullContainerError",
    "CannotStartContainerError",
    "CannotCreateContainerError",
    "ResourceInitializationError",
];
/// Stop codes that mean the infrastructure failed.
const INFRASTRUCTURE_STOP_CODES: [&str; 2] = [SPOT_INTERRUPTION_CODE, "TaskFailedToStart"];
/// The stop code of a task whose Fargate Spot capacity was reclaimed; its
/// reason then starts with [`SPOT_INTERRUPTION`].
const SPOT_INTERRUPTION_CODE: &str = "SpotInterruption";

/// An EventBridge event carrying an ECS task state change.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EcsTaskStateChangeEvent {
    /// Event id.
    pub id: String,
    /// Always [`DETAIL_TYPE`] for the events we take.
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// `aws.ecs`.
    pub source: String,
    /// When EventBridge received it.
    pub time: DateTime<Utc>,
    /// The task.
    pub detail: EcsTask,
}

/// The task in an ECS task state change.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsTask {
    /// Task ARN.
    pub task_arn: String,
    /// Cluster ARN.
    pub cluster_arn: String,
    /// ECS's status of the task.
    pub last_status: String,
    /// Task group (`flotilla:<run_id>:<attempt>` for our tasks).
    #[serde(default)]
    pub group: Option<String>,
    /// Who started it.
    #[serde(default)]
    pub started_by: Option<String>,
    /// Increases with every change of the task.
    #[serde(default)]
    pub version: Option<u64>,
    /// When it started running.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it stopped.
    #[serde(default)]
    pub stopped_at: Option<DateTime<Utc>>,
    /// Why it stopped.
    #[serde(default)]
    pub stop_code: Option<String>,
    /// Why it stopped, in words.
    #[serde(default)]
    pub stopped_reason: Option<String>,
    /// Its containers.
    #[serde(default)]
    pub containers: Vec<EcsContainer>,
}

/// One container of the task.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsContainer {
    /// Container name.
    pub name: String,
    /// Exit code, once it exited.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Why it stopped.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The task group of a run's attempt.
pub fn task_group(run_id: &str, attempt: u32) -> String {
    format!("{TASK_GROUP_PREFIX}{run_id}:{attempt}")
}

/// `(run_id, attempt)` from a task group.
pub fn parse_task_group(group: &str) -> Option<(String, u32)> {
    let rest = group.strip_prefix(TASK_GROUP_PREFIX)?;
    let (run_id, attempt) = rest.rsplit_once(':')?;
    Some((run_id.to_owned(), attempt.parse().ok()?))
}

fn is_infrastructure_failure(task: &EcsTask, reason: &str) -> bool {
    INFRASTRUCTURE_REASONS.iter().any(|r| reason.contains(r))
        || task
            .stop_code
            .as_deref()
            .is_some_and(|c| INFRASTRUCTURE_STOP_CODES.contains(&c))
}

/// The update an event reports, or `None` when it is not about one of our runs
/// or says nothing new (an intermediate status).
pub fn engine_update(event: &EcsTaskStateChangeEvent) -> Option<EngineUpdate> {
    if event.detail_type != DETAIL_TYPE {
        return None;
    }
    task_update(&event.detail, event.time)
}

/// The update a task's state reports, seen at `seen` (an event's time, or
/// when `DescribeTasks` answered), or `None` when the task is not one of our
/// runs' or its status says nothing new. Events and the reconciler's lookups
/// read a task the same way.
pub fn task_update(task: &EcsTask, seen: DateTime<Utc>) -> Option<EngineUpdate> {
    let (run_id, attempt) = parse_task_group(task.group.as_deref()?)?;
    let task_id = task.task_arn.clone();
    let (change, at) = match task.last_status.as_str() {
        "PROVISIONING" | "PENDING" | "ACTIVATING" => (EngineChange::Submitted { task_id }, seen),
        "RUNNING" => (
            EngineChange::Started {
                task_id: Some(task_id),
                host: None,
            },
            task.started_at.unwrap_or(seen),
        ),
        "STOPPED" => {
            let at = task.stopped_at.unwrap_or(seen);
            let container = task
                .containers
                .iter()
                .find(|c| c.exit_code.is_some())
                .or_else(|| task.containers.first());
            let container_reason = container.and_then(|c| c.reason.clone());
            let reason = [container_reason.clone(), task.stopped_reason.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" - ");
            match container.and_then(|c| c.exit_code) {
                Some(code) => {
                    let oom = code == 137
                        || container_reason
                            .as_deref()
                            .is_some_and(|r| r.contains("OutOfMemoryError"));
                    let reason = if oom {
                        Some(format!(
                            "out of memory (exit {code}): the run used more than its memory; launch it with more \"memory\"{}",
                            container_reason
                                .map(|r| format!(" - {r}"))
                                .unwrap_or_default()
                        ))
                    } else if code == 0 {
                        None
                    } else {
                        container_reason
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
                None if is_infrastructure_failure(task, &reason) => {
                    let reason = if reason.is_empty() {
                        task.stop_code.clone().unwrap_or_default()
                    } else {
                        reason
                    };
                    let reason = if task.stop_code.as_deref() == Some(SPOT_INTERRUPTION_CODE) {
                        format!("{SPOT_INTERRUPTION}: {reason}")
                    } else {
                        reason
                    };
                    (EngineChange::InfrastructureFailure { reason }, at)
                }
                None => (
                    EngineChange::Exited {
                        usage: None,
                        exit_code: None,
                        reason: Some(reason).filter(|r| !r.is_empty()),
                    },
                    at,
                ),
            }
        }
        _ => return None,
    };
    Some(EngineUpdate {
        run_id,
        attempt,
        change,
        engine_version: task.version,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::run::{RunStatus, decide, evolve, replay};
    use crate::testing::scenario::{spec, t};

    const RUN_ID: &str = "ecs-1f2e3d4c-5b6a-4789-8abc-def012345678";

    fn fixture(name: &str) -> EcsTaskStateChangeEvent {
        let path = format!("{}/../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn change(name: &str) -> EngineChange {
        let update =
            engine_update(&fixture(name)).unwrap_or_else(|| panic!("{name} maps to no update"));
        assert_eq!((update.run_id.as_str(), update.attempt), (RUN_ID, 1));
        update.change
    }

    #[test]
    fn a_task_group_names_the_run_and_attempt() {
        assert_eq!(
            parse_task_group(&task_group("r-1", 3)),
            Some(("r-1".into(), 3))
        );
        assert_eq!(parse_task_group("family:sleep"), None);
        assert_eq!(parse_task_group("flotilla:r-1:x"), None);
    }

    #[test]
    fn pending_and_running_tasks_map_to_submitted_and_started() {
        assert!(
            matches!(change("ecs-task-pending"), EngineChange::Submitted { task_id } if task_id.ends_with("b99d40b3c3a84ba1b7a7c5b2c6b1a2f1"))
        );
        assert!(matches!(
            change("ecs-task-running"),
            EngineChange::Started {
                task_id: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn a_stopped_task_with_an_exit_code_ends_the_run_with_it() {
        assert_eq!(
            change("ecs-task-stopped-exit-code"),
            EngineChange::Exited {
                usage: None,
                exit_code: Some(3),
                reason: None
            }
        );
    }

    #[test]
    fn an_out_of_memory_stop_is_recorded_as_such() {
        match change("ecs-task-stopped-out-of-memory") {
            EngineChange::Exited {
                exit_code: Some(137),
                reason: Some(r),
                ..
            } => {
                assert!(r.starts_with("out of memory"), "{r}");
                assert!(r.contains("OutOfMemoryError"), "{r}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn image_pull_failures_and_spot_interruptions_need_a_retry() {
        for name in [
            "ecs-task-stopped-cannot-pull-container",
            "ecs-task-stopped-spot-interruption",
        ] {
            assert!(
                matches!(change(name), EngineChange::InfrastructureFailure { .. }),
                "{name}"
            );
        }
        match change("ecs-task-stopped-cannot-pull-container") {
            EngineChange::InfrastructureFailure { reason } => {
                assert!(reason.contains("CannotPullContainerError"), "{reason}");
                assert!(!reason.starts_with(SPOT_INTERRUPTION), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        match change("ecs-task-stopped-spot-interruption") {
            EngineChange::InfrastructureFailure { reason } => {
                assert!(reason.starts_with("spot interruption: "), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_tasks_and_intermediate_statuses_map_to_nothing() {
        let mut event = fixture("ecs-task-running");
        event.detail.group = Some("family:other".into());
        assert_eq!(engine_update(&event), None);
        let mut event = fixture("ecs-task-running");
        event.detail.last_status = "DEACTIVATING".into();
        assert_eq!(engine_update(&event), None);
    }

    fn final_status(names: &[&str]) -> (RunStatus, Option<i64>) {
        let mut s = spec(RUN_ID);
        s.engine = crate::domain::spec::Engine::Ecs;
        let mut state = replay(&[crate::domain::event::RunEvent::RunQueued {
            spec: Box::new(s),
            at: t(0),
        }]);
        for name in names {
            let update = engine_update(&fixture(name)).unwrap_or_else(|| panic!("{name}"));
            for event in decide(&state, update.into_command()).unwrap_or_default() {
                state = evolve(state, &event);
            }
        }
        let run = state.run.unwrap_or_else(|| panic!("run"));
        (run.status, run.exit_code)
    }

    #[test]
    fn a_runs_events_duplicated_and_reversed_reach_the_same_final_state() {
        let in_order = [
            "ecs-task-pending",
            "ecs-task-running",
            "ecs-task-stopped-exit-code",
        ];
        let expected = final_status(&in_order);
        assert_eq!(expected, (RunStatus::Stopped, Some(3)));
        let mut messy: Vec<&str> = in_order.iter().rev().copied().collect();
        messy.extend(in_order);
        messy.extend(in_order.iter().rev());
        assert_eq!(final_status(&messy), expected);
    }
}
