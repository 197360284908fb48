//! The engine of a deployment with Kubernetes clusters: a run of a cluster
//! registered with `engine: "eks"` goes to that cluster's API server as a
//! Job ([`super::EksEngine`]); every other run goes to the deployment's
//! own engine. A launch goes by the run's engine, so a run of another
//! engine costs no read; a Kubernetes run's cluster, and any stop or look-up,
//! reads the registry (one item), so a cluster registered or changed a
//! moment ago is used at once.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::connect::KubeConnect;
use super::{EksEngine, EksSettings, job_manifest};
use crate::domain::cluster::Cluster;
use crate::domain::spec::Engine;
use crate::error::EngineError;
use crate::ports::{ClusterStore, ExecutionEngine, LaunchSpec, Launched, TaskLookup};

/// The registered Kubernetes cluster named `name`, if it is one.
pub async fn kubernetes_cluster(
    clusters: &dyn ClusterStore,
    name: &str,
) -> Result<Option<Cluster>, EngineError> {
    let (registered, _) = clusters
        .clusters()
        .await
        .map_err(|e| EngineError::Retryable {
            message: format!("could not read the cluster registry: {e}"),
            source: Some(Box::new(e)),
        })?;
    Ok(registered
        .into_iter()
        .find(|c| c.name == name && c.engine == Some(Engine::Eks)))
}

/// Sends each run to its cluster's engine.
pub struct RoutedEngine {
    deployment: Arc<dyn ExecutionEngine>,
    clusters: Arc<dyn ClusterStore>,
    connect: Arc<dyn KubeConnect>,
}

impl RoutedEngine {
    /// Runs of Kubernetes clusters in `clusters` go through `connect`; the
    /// others to `deployment`.
    pub fn new(
        deployment: Arc<dyn ExecutionEngine>,
        clusters: Arc<dyn ClusterStore>,
        connect: Arc<dyn KubeConnect>,
    ) -> Self {
        Self {
            deployment,
            clusters,
            connect,
        }
    }

    /// The Kubernetes cluster a run for the EKS engine is launched on;
    /// `None` for a run of another engine, which needs no registry read.
    async fn cluster_of(&self, spec: &LaunchSpec) -> Result<Option<Cluster>, EngineError> {
        if spec.engine != Engine::Eks {
            return Ok(None);
        }
        match kubernetes_cluster(self.clusters.as_ref(), &spec.cluster).await? {
            Some(cluster) => Ok(Some(cluster)),
            None => Err(EngineError::Permanent {
                message: format!(
                    "run {} is for the eks engine, but cluster {} is no longer registered as a Kubernetes cluster; register it again with engine \"eks\", or launch a new run",
                    spec.run_id, spec.cluster
                ),
                source: None,
            }),
        }
    }

    /// The EKS engine of `cluster`, when it is a Kubernetes cluster.
    async fn eks(&self, cluster: &str) -> Result<Option<EksEngine>, EngineError> {
        let Some(cluster) = kubernetes_cluster(self.clusters.as_ref(), cluster).await? else {
            return Ok(None);
        };
        let client = self.connect.client(&cluster).await?;
        Ok(Some(EksEngine::new(
            client,
            EksSettings::for_cluster(&cluster),
        )))
    }
}

#[async_trait]
impl ExecutionEngine for RoutedEngine {
    async fn launch(&self, spec: &LaunchSpec) -> Result<Launched, EngineError> {
        match self.cluster_of(spec).await? {
            Some(cluster) => {
                let client = self.connect.client(&cluster).await?;
                EksEngine::new(client, EksSettings::for_cluster(&cluster))
                    .launch(spec)
                    .await
            }
            None => self.deployment.launch(spec).await,
        }
    }

    async fn stop(&self, cluster: &str, run_id: &str, task_id: &str) -> Result<(), EngineError> {
        match self.eks(cluster).await? {
            Some(engine) => engine.stop(cluster, run_id, task_id).await,
            None => self.deployment.stop(cluster, run_id, task_id).await,
        }
    }

    async fn manifest(&self, spec: &LaunchSpec) -> Result<Option<serde_json::Value>, EngineError> {
        match self.cluster_of(spec).await? {
            Some(cluster) => {
                let job = job_manifest(spec, &EksSettings::for_cluster(&cluster))?;
                Ok(serde_json::to_value(job).ok())
            }
            None => self.deployment.manifest(spec).await,
        }
    }

    async fn look_up(
        &self,
        cluster: &str,
        task_ids: &[String],
        seen: DateTime<Utc>,
    ) -> Result<Option<Vec<TaskLookup>>, EngineError> {
        match self.eks(cluster).await? {
            Some(engine) => engine.look_up(cluster, task_ids, seen).await,
            None => self.deployment.look_up(cluster, task_ids, seen).await,
        }
    }
}
