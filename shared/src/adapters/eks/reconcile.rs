//! The EKS status path: Kubernetes sends nothing to EventBridge, so the
//! scheduled function reads each registered Kubernetes cluster itself, and
//! records what it reads with the same status use case ECS's events feed
//! ([`App::record_engine_update`]).
//!
//! Each pass, per cluster:
//! 1. **List** the namespace's pods labelled `flotilla.run_id` (one call)
//!    and record each one's state ([`super::pods::pod_update`]). The list
//!    is the resume point: a `resourceVersion` kept from the last pass
//!    would often be too old for the API server by the next minute (410
//!    Gone after compaction), while a list always sees every pod there is.
//! 2. **Pod events** of those pods (the namespace's Events on Pods: a
//!    scheduling failure, a pull) become steps of preparing in the run's
//!    timeline while it is PENDING, at most
//!    [`crate::domain::run::MAX_PREPARING_STEPS`] per attempt.
//! 3. **Watch** the same pods from the list's `resourceVersion` for the
//!    rest of the pass's time, recording each change as it comes, so a run
//!    is seen RUNNING or STOPPED within seconds rather than at the next
//!    pass. A watch the server ends early (its timeout, or 410) just ends
//!    the pass: the next one lists again.
//!
//! An ended pod's log is archived to S3 ([`super::logs::S3LogArchive`])
//! before its end is recorded, so a STOPPED run's log is readable from S3
//! once the pod is gone. Every step is idempotent: the same pod state
//! read twice, or an older one read after a newer (the pod's
//! `resourceVersion` is the report's engine version), changes nothing, and
//! archiving writes the same object again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use tracing::warn;

use super::RUN_ID_LABEL;
use super::connect::KubeConnect;
use super::logs::{S3LogArchive, archive_pod_log};
use super::pods::{attempt_of, pod_update};
use crate::app::App;
use crate::domain::cluster::Cluster;
use crate::domain::spec::Engine;
use crate::error::AppError;
use crate::ports::{EngineChange, EngineUpdate};

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileOutcome {
    /// Kubernetes clusters read.
    pub clusters: usize,
    /// Pod states read (listed or watched).
    pub pods_seen: usize,
    /// Pod states and events that changed a run.
    pub recorded: usize,
    /// Logs archived.
    pub archived: usize,
    /// Clusters that could not be read, with why.
    pub failed: Vec<String>,
}

/// Reads every registered Kubernetes cluster once: lists, records, then
/// watches for at most `watch_for` (none when zero).
pub async fn reconcile(
    app: &App,
    connect: &dyn KubeConnect,
    archive: Option<&S3LogArchive>,
    watch_for: Duration,
) -> Result<ReconcileOutcome, AppError> {
    let (registered, _) = app.clusters.clusters().await?;
    let clusters: Vec<Cluster> = registered
        .into_iter()
        .filter(|c| c.engine == Some(Engine::Eks))
        .collect();
    let mut outcome = ReconcileOutcome {
        clusters: clusters.len(),
        ..ReconcileOutcome::default()
    };
    let mut watches = Vec::new();
    for cluster in &clusters {
        match list_pass(app, connect, archive, cluster, &mut outcome).await {
            Ok(Some(watch)) => watches.push(watch),
            Ok(None) => {}
            Err(problem) => {
                warn!(cluster = %cluster.name, problem = %problem, "could not read a Kubernetes cluster");
                outcome.failed.push(format!("{}: {problem}", cluster.name));
            }
        }
    }
    if !watch_for.is_zero() {
        let passes = watches
            .into_iter()
            .map(|(pods, version)| watch(app, archive, pods, version, watch_for));
        for (seen, recorded, archived) in futures_util::future::join_all(passes).await {
            outcome.pods_seen += seen;
            outcome.recorded += recorded;
            outcome.archived += archived;
        }
    }
    Ok(outcome)
}

/// What to watch after a list: the pods' API and the list's version.
type Watch = (Api<Pod>, String);

async fn list_pass(
    app: &App,
    connect: &dyn KubeConnect,
    archive: Option<&S3LogArchive>,
    cluster: &Cluster,
    outcome: &mut ReconcileOutcome,
) -> Result<Option<Watch>, String> {
    let client = connect.client(cluster).await.map_err(|e| e.to_string())?;
    let namespace = cluster.job_namespace();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(RUN_ID_LABEL))
        .await
        .map_err(|e| format!("listing the runs' pods in namespace {namespace}: {e}"))?;
    for pod in &listed.items {
        outcome.pods_seen += 1;
        let (recorded, archived) = record_pod(app, archive, &pods, pod).await;
        outcome.recorded += usize::from(recorded);
        outcome.archived += usize::from(archived);
    }
    let events: Api<Event> = Api::namespaced(client, namespace);
    match events
        .list(&ListParams::default().fields("involvedObject.kind=Pod"))
        .await
    {
        Ok(events) => {
            for update in pod_event_updates(&listed.items, &events.items, app.now()) {
                outcome.recorded += usize::from(record(app, update).await);
            }
        }
        // The states are recorded; the events are a nicety.
        Err(e) => warn!(cluster = %cluster.name, error = %e, "could not list pod events"),
    }
    Ok(listed.metadata.resource_version.map(|v| (pods, v)))
}

/// Records `update`; whether it changed the run.
async fn record(app: &App, update: EngineUpdate) -> bool {
    let run_id = update.run_id.clone();
    let before = app.runs.get(&run_id).await.ok().and_then(|s| s.run);
    match app.record_engine_update(update).await {
        Ok(after) => before.as_ref() != Some(&after),
        Err(AppError::NotFound(_)) => false,
        Err(e) => {
            warn!(run_id = %run_id, error = %e, "could not record a pod's state");
            false
        }
    }
}

/// Records `pod`'s state, archiving its log first when it ended: whether
/// that changed the run, and whether a log was archived.
async fn record_pod(
    app: &App,
    archive: Option<&S3LogArchive>,
    pods: &Api<Pod>,
    pod: &Pod,
) -> (bool, bool) {
    let Some(update) = pod_update(pod, app.now()) else {
        return (false, false);
    };
    let ended = matches!(
        update.change,
        EngineChange::Exited { .. } | EngineChange::InfrastructureFailure { .. }
    );
    let mut archived = false;
    if ended && let Some(archive) = archive {
        match archive_pod_log(archive, pods, pod, &update.run_id, update.attempt).await {
            Ok(wrote) => archived = wrote,
            // Recorded all the same: the pod's log stays readable from the
            // cluster until its Job is cleaned up, and the next pass tries
            // again.
            Err(e) => {
                warn!(run_id = %update.run_id, attempt = update.attempt, error = %e, "could not archive a pod's log");
            }
        }
    }
    (record(app, update).await, archived)
}

/// The steps of preparing the `events` of `pods` tell, oldest first.
pub fn pod_event_updates(pods: &[Pod], events: &[Event], seen: DateTime<Utc>) -> Vec<EngineUpdate> {
    let mut updates: Vec<EngineUpdate> = events
        .iter()
        .filter_map(|event| {
            let name = event.involved_object.name.as_deref()?;
            let pod = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name))?;
            let (run_id, attempt) = attempt_of(pod)?;
            let reason = event.reason.as_deref().unwrap_or("Event");
            let message = event.message.as_deref().unwrap_or_default();
            let at = event
                .last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| event.event_time.as_ref().map(|t| t.0))
                .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
                .and_then(|t| {
                    let nanos = u32::try_from(t.subsec_nanosecond()).unwrap_or(0);
                    DateTime::from_timestamp(t.as_second(), nanos)
                })
                .unwrap_or(seen);
            Some(EngineUpdate {
                run_id,
                attempt,
                change: EngineChange::Progress {
                    message: format!("{reason}: {message}"),
                },
                engine_version: None,
                at,
            })
        })
        .collect();
    updates.sort_by_key(|u| u.at);
    updates
}

/// Watches `pods` from `version` for at most `budget`: (pod states seen,
/// runs changed, logs archived).
async fn watch(
    app: &App,
    archive: Option<&S3LogArchive>,
    pods: Api<Pod>,
    version: String,
    budget: Duration,
) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    let seconds = u32::try_from(budget.as_secs().max(1)).unwrap_or(u32::MAX);
    let params = WatchParams::default().labels(RUN_ID_LABEL).timeout(seconds);
    let watching = async {
        let stream = match pods.watch(&params, &version).await {
            Ok(stream) => stream,
            Err(e) => {
                warn!(error = %e, "could not watch the runs' pods");
                return;
            }
        };
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let pod = match event {
                Ok(
                    WatchEvent::Added(pod) | WatchEvent::Modified(pod) | WatchEvent::Deleted(pod),
                ) => pod,
                Ok(WatchEvent::Bookmark(_)) => continue,
                // 410 Gone and the like: the next pass lists again.
                Ok(WatchEvent::Error(_)) | Err(_) => return,
            };
            counts.0 += 1;
            let (recorded, archived) = record_pod(app, archive, &pods, &pod).await;
            counts.1 += usize::from(recorded);
            counts.2 += usize::from(archived);
        }
    };
    // The server's own timeout ends the watch; this bound holds if it does not.
    let _ = tokio::time::timeout(budget + Duration::from_secs(2), watching).await;
    counts
}
