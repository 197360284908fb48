//! The EKS engine (feature `eks`): one Kubernetes `batch/v1` Job per
//! attempt, through `kube` with the typed `k8s-openapi` objects.
//!
//! - The Job is named from the run and the attempt ([`job_name`]), so a
//!   redelivered submit that creates it again gets `AlreadyExists`, which is
//!   the launch it already made: never a second Job.
//! - Labels `flotilla.run_id`, `flotilla.attempt` and
//!   `flotilla.node_lifecycle` on the Job and its pod tie what the cluster
//!   reports back to the run ([`pods`] reads them).
//! - `backoffLimit: 0` and `restartPolicy: Never`: retries are Flotilla's,
//!   never the cluster's. `activeDeadlineSeconds` is the run's timeout and
//!   `ttlSecondsAfterFinished` lets the cluster clean up after the run's
//!   state has been read.
//! - Memory and cpu are requested and limited alike (`<MB>Mi`, and
//!   millicores from Flotilla's 1/1024-core units); GPUs are a limit on the
//!   cluster's GPU resource (`nvidia.com/gpu` by default).
//! - The run's env is the container's, in order; a secret is a
//!   `secretKeyRef`: `value_from` names `<secret>` (the key is the variable's
//!   name) or `<secret>:<key>`, a Kubernetes Secret in the Job's namespace.
//! - Spot and on-demand runs are placed by the node selector and tolerations
//!   the cluster's settings give each.
//! - Stop deletes the Job with foreground propagation: the pod goes first,
//!   and the run ends when the cluster reports it gone.
//! - Failures are classified as on ECS: a refused object (400, 422) or a
//!   forbidden one (403: the function's role lacks a Role rule) is
//!   permanent, with what to fix; throttling, server errors and unreachable
//!   API servers are retryable.
//! - [`pods`] reads a Job's pod back as its run's update; [`token`] makes the
//!   IAM bearer token an EKS API server takes from the function's role.
//!
//! - [`connect`] gives each registered cluster's client (IAM tokens from
//!   the function's role), [`routed`] sends a run to its cluster's engine,
//!   [`reconcile`] reads the pods back into runs (there is no EventBridge
//!   event for them), and [`logs`] reads a run's log from its pod or from
//!   its S3 archive, whose objects [`s3`] reads and writes with signed
//!   requests.

pub mod connect;
pub mod logs;
pub mod pods;
pub mod reconcile;
pub mod routed;
pub mod s3;
pub mod token;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar as KubeEnvVar, EnvVarSource, PodSpec, PodTemplateSpec,
    ResourceRequirements, SecretKeySelector, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

use crate::domain::spec::NodeLifecycle;
use crate::error::EngineError;
use crate::ports::{ExecutionEngine, LaunchSpec, Launched, TaskLookup};

/// Name of the one container of every Job's pod.
pub const CONTAINER_NAME: &str = "main";
/// Label naming the run.
pub const RUN_ID_LABEL: &str = "flotilla.run_id";
/// Label naming the attempt.
pub const ATTEMPT_LABEL: &str = "flotilla.attempt";
/// Label naming the capacity asked for (`spot` or `ondemand`).
pub const LIFECYCLE_LABEL: &str = "flotilla.node_lifecycle";
/// Annotation naming the definition (any text, which a label cannot hold).
pub const DEFINITION_ANNOTATION: &str = "flotilla/definition-id";
/// The GPU resource of a cluster that names none.
pub const DEFAULT_GPU_RESOURCE: &str = "nvidia.com/gpu";
/// How long a finished Job stays for its state to be read, by default (1 h).
pub const DEFAULT_TTL_SECONDS_AFTER_FINISHED: i32 = 3600;
/// The well-known node label of a node's CPU architecture.
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
/// Longest Kubernetes object name that can also be a label value.
pub const MAX_NAME_LEN: usize = 63;

/// Where on the cluster runs of one lifecycle go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// Node labels the pod must match.
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pod tolerates.
    pub tolerations: Vec<Toleration>,
}

/// How runs are laid out on one EKS (or any Kubernetes) cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct EksSettings {
    /// Namespace of the Jobs (and of the Secrets they read).
    pub namespace: String,
    /// Service account the pods run as; the namespace's default when unset.
    pub service_account: Option<String>,
    /// Placement of `spot` runs.
    pub spot: Placement,
    /// Placement of `ondemand` runs.
    pub ondemand: Placement,
    /// The extended resource GPUs are counted in.
    pub gpu_resource: String,
    /// Seconds a finished Job is kept.
    pub ttl_seconds_after_finished: i32,
}

impl Placement {
    /// The placement a cluster's registry entry gives.
    fn of(placement: &crate::domain::cluster::NodePlacement) -> Self {
        Self {
            node_selector: placement.node_selector.clone(),
            tolerations: placement
                .tolerations
                .iter()
                .map(|t| Toleration {
                    key: t.key.clone(),
                    operator: t.operator.clone(),
                    value: t.value.clone(),
                    effect: t.effect.clone(),
                    toleration_seconds: None,
                })
                .collect(),
        }
    }
}

impl EksSettings {
    /// The settings of `cluster`'s registry entry (defaults where it has
    /// no `kubernetes` settings).
    pub fn for_cluster(cluster: &crate::domain::cluster::Cluster) -> Self {
        let mut settings = Self::in_namespace(cluster.job_namespace());
        if let Some(k) = &cluster.kubernetes {
            settings.service_account = k.service_account.clone();
            settings.spot = Placement::of(&k.spot);
            settings.ondemand = Placement::of(&k.ondemand);
            if let Some(gpu) = &k.gpu_resource {
                settings.gpu_resource = gpu.clone();
            }
        }
        settings
    }

    /// Settings for `namespace`, with the defaults for everything else.
    pub fn in_namespace(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            service_account: None,
            spot: Placement::default(),
            ondemand: Placement::default(),
            gpu_resource: DEFAULT_GPU_RESOURCE.to_owned(),
            ttl_seconds_after_finished: DEFAULT_TTL_SECONDS_AFTER_FINISHED,
        }
    }
}

/// The Job name of `run_id`'s attempt `attempt`: `<run_id>-<attempt>`, made
/// a DNS-1123 label (lowercase letters, digits and `-`, at most 63
/// characters, starting and ending alphanumeric).
pub fn job_name(run_id: &str, attempt: u32) -> String {
    let suffix = format!("-{attempt}");
    let base: String = run_id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    let room = MAX_NAME_LEN.saturating_sub(suffix.len());
    let base = base
        .get(..room.min(base.len()))
        .unwrap_or_default()
        .trim_matches('-');
    let base = if base.is_empty() { "run" } else { base };
    format!("{base}{suffix}")
}

/// The `secretKeyRef` of a secret's `value_from`: `<secret>` (the key is the
/// variable's name) or `<secret>:<key>`.
fn secret_key_ref(name: &str, value_from: &str) -> Result<SecretKeySelector, EngineError> {
    let (secret, key) = match value_from.split_once(':') {
        Some((secret, key)) => (secret, key),
        None => (value_from, name),
    };
    let valid_secret = !secret.is_empty()
        && secret.len() <= 253
        && secret
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let valid_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid_secret || !valid_key {
        return Err(EngineError::Permanent {
            message: format!(
                "secret {name}: on EKS \"value_from\" names a Kubernetes Secret of the run's namespace as \"<secret>\" or \"<secret>:<key>\" (lowercase letters, digits, '-' and '.'), not \"{value_from}\""
            ),
            source: None,
        });
    }
    Ok(SecretKeySelector {
        name: secret.to_owned(),
        key: key.to_owned(),
        optional: Some(false),
    })
}

/// The resources of `spec`: requests equal to limits for memory and cpu,
/// GPUs as a limit (Kubernetes takes extended resources as limits).
fn resources(spec: &LaunchSpec, settings: &EksSettings) -> ResourceRequirements {
    let mut amounts = BTreeMap::new();
    if let Some(mb) = spec.resources.memory {
        amounts.insert("memory".to_owned(), Quantity(format!("{mb}Mi")));
    }
    if let Some(units) = spec.resources.cpu {
        let millicores = (units.saturating_mul(1000)).div_ceil(1024).max(1);
        amounts.insert("cpu".to_owned(), Quantity(format!("{millicores}m")));
    }
    if let Some(mb) = spec.resources.ephemeral_storage {
        amounts.insert("ephemeral-storage".to_owned(), Quantity(format!("{mb}Mi")));
    }
    let requests = amounts.clone();
    if let Some(gpus) = spec.resources.gpu.filter(|g| *g > 0) {
        amounts.insert(settings.gpu_resource.clone(), Quantity(gpus.to_string()));
    }
    ResourceRequirements {
        limits: Some(amounts).filter(|a| !a.is_empty()),
        requests: Some(requests).filter(|r| !r.is_empty()),
        ..ResourceRequirements::default()
    }
}

/// The Job that runs `spec`'s attempt on a cluster laid out by `settings`.
pub fn job_manifest(spec: &LaunchSpec, settings: &EksSettings) -> Result<Job, EngineError> {
    let name = job_name(&spec.run_id, spec.attempt);
    let lifecycle = match spec.node_lifecycle {
        NodeLifecycle::Spot => "spot",
        NodeLifecycle::Ondemand => "ondemand",
    };
    let placement = match spec.node_lifecycle {
        NodeLifecycle::Spot => &settings.spot,
        NodeLifecycle::Ondemand => &settings.ondemand,
    };
    let labels = BTreeMap::from([
        (RUN_ID_LABEL.to_owned(), label_value(&spec.run_id)),
        (ATTEMPT_LABEL.to_owned(), spec.attempt.to_string()),
        (LIFECYCLE_LABEL.to_owned(), lifecycle.to_owned()),
    ]);
    let annotations =
        BTreeMap::from([(DEFINITION_ANNOTATION.to_owned(), spec.definition_id.clone())]);
    let mut env: Vec<KubeEnvVar> = spec
        .env
        .iter()
        .map(|v| KubeEnvVar {
            name: v.name.clone(),
            value: Some(v.value.clone()),
            value_from: None,
        })
        .collect();
    for secret in &spec.secrets {
        env.push(KubeEnvVar {
            name: secret.name.clone(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(secret_key_ref(&secret.name, &secret.value_from)?),
                ..EnvVarSource::default()
            }),
        });
    }
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(spec.image.clone()),
        command: spec
            .command
            .as_ref()
            .map(|c| vec!["bash".to_owned(), "-c".to_owned(), c.clone()]),
        env: Some(env).filter(|e| !e.is_empty()),
        resources: Some(resources(spec, settings)),
        ports: Some(
            spec.ports
                .iter()
                .map(|p| ContainerPort {
                    container_port: i32::from(*p),
                    ..ContainerPort::default()
                })
                .collect::<Vec<_>>(),
        )
        .filter(|p| !p.is_empty()),
        ..Container::default()
    };
    let mut node_selector = placement.node_selector.clone();
    if let Some(arch) = spec.arch.as_deref().filter(|a| !a.is_empty()) {
        node_selector.insert(ARCH_LABEL.to_owned(), arch.to_owned());
    }
    let deadline = spec
        .active_deadline_seconds
        .map(|s| i64::try_from(s).unwrap_or(i64::MAX));
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: deadline,
            ttl_seconds_after_finished: Some(settings.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: spec
                        .service_account
                        .clone()
                        .or_else(|| settings.service_account.clone()),
                    node_selector: Some(node_selector).filter(|s| !s.is_empty()),
                    tolerations: Some(placement.tolerations.clone()).filter(|t| !t.is_empty()),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// `value` as a label value: at most 63 characters of letters, digits, `-`,
/// `_` and `.` (run ids already are).
pub(crate) fn label_value(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_LEN)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// An API server's refusal as an engine error.
fn classify(what: &str, error: kube::Error) -> EngineError {
    match &error {
        kube::Error::Api(status) if matches!(status.code, 400 | 403 | 404 | 422) => {
            let hint = if status.code == 403 {
                ": give the function's role a Role in the namespace that allows it (see the README's EKS section)"
            } else {
                ""
            };
            EngineError::Permanent {
                message: format!(
                    "the cluster refused to {what}: {} ({}){hint}",
                    status.message, status.reason
                ),
                source: Some(Box::new(error)),
            }
        }
        _ => EngineError::Retryable {
            message: format!("could not {what}: {error}"),
            source: Some(Box::new(error)),
        },
    }
}

/// Whether `error` is the API server saying the object exists already.
fn already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists")
}

/// Whether `error` is the API server saying the object is not there.
fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Launches runs as Jobs on one cluster.
#[derive(Clone)]
pub struct EksEngine {
    client: kube::Client,
    settings: EksSettings,
}

impl std::fmt::Debug for EksEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksEngine")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl EksEngine {
    /// An engine over `client`, laying runs out by `settings`.
    pub fn new(client: kube::Client, settings: EksSettings) -> Self {
        Self { client, settings }
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }
}

#[async_trait]
impl ExecutionEngine for EksEngine {
    async fn launch(&self, spec: &LaunchSpec) -> Result<Launched, EngineError> {
        let job = job_manifest(spec, &self.settings)?;
        let name = job.metadata.name.clone().unwrap_or_default();
        match self.jobs().create(&PostParams::default(), &job).await {
            Ok(_) => {}
            // A redelivered submit: the Job this attempt already has.
            Err(e) if already_exists(&e) => {}
            Err(e) => return Err(classify("create the run's Job", e)),
        }
        Ok(Launched {
            task_id: name,
            running_on: None,
            limits: None,
        })
    }

    async fn stop(&self, _cluster: &str, _run_id: &str, task_id: &str) -> Result<(), EngineError> {
        match self
            .jobs()
            .delete(task_id, &DeleteParams::foreground())
            .await
        {
            Ok(_) => Ok(()),
            // Gone already (finished and cleaned up, or stopped before).
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(classify("delete the run's Job", e)),
        }
    }

    async fn look_up(
        &self,
        _cluster: &str,
        task_ids: &[String],
        seen: DateTime<Utc>,
    ) -> Result<Option<Vec<TaskLookup>>, EngineError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let listed = pods
            .list(&ListParams::default().labels(RUN_ID_LABEL))
            .await
            .map_err(|e| classify("list the runs' pods", e))?;
        let mut found = Vec::with_capacity(task_ids.len());
        for task_id in task_ids {
            let pod = listed
                .items
                .iter()
                .find(|pod| pods::task_of(pod).is_some_and(|t| &t == task_id));
            if let Some(pod) = pod {
                found.push(TaskLookup::Known {
                    task_id: task_id.clone(),
                    update: pods::pod_update(pod, seen),
                });
                continue;
            }
            match self.jobs().get_opt(task_id).await {
                Ok(Some(_)) => found.push(TaskLookup::Known {
                    task_id: task_id.clone(),
                    update: None,
                }),
                Ok(None) => found.push(TaskLookup::Unknown {
                    task_id: task_id.clone(),
                    reason: format!(
                        "the cluster has no Job {task_id} any more (deleted, or cleaned up after it finished)"
                    ),
                }),
                Err(e) => return Err(classify("read the run's Job", e)),
            }
        }
        Ok(Some(found))
    }
}

#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod tests;
