//! The cluster registry: the clusters a deployment has without registering
//! them (the default cluster, the stack's clusters), and those registered
//! with a status and tiers. The registry is read and saved whole, with a
//! version, so concurrent changes are decided again.

use crate::app::{App, Step, retry_on_conflict};
use crate::domain::ValidationError;
use crate::domain::cluster::{Cluster, ClusterInput, ClusterStatus};
use crate::error::{AppError, Conflict, Contended, Missing, StoreError};

/// What holds the queued runs of one cluster back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClusterGate {
    /// Its status: only an active cluster launches.
    pub status: ClusterStatus,
    /// The most of its runs in PENDING and RUNNING at once, when capped.
    pub cap: Option<u32>,
}

impl App {
    /// Every cluster: the registered ones, and those the deployment has
    /// without registration (the default cluster, the stack's clusters).
    pub async fn known_clusters(&self) -> Result<Vec<Cluster>, AppError> {
        let (mut clusters, _) = self.clusters.clusters().await?;
        let now = self.now();
        let implied =
            std::iter::once(&self.settings.default_cluster).chain(&self.settings.clusters);
        for name in implied {
            if !clusters.iter().any(|c| &c.name == name) {
                clusters.push(Cluster::implicit(name, now));
            }
        }
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(clusters)
    }

    /// The registered clusters that launch nothing now: those not active
    /// (in maintenance or offline), and those whose every slot is held, or
    /// about to be by the launches `in_flight` (per cluster). Runs of theirs
    /// wait, queued, until the cluster is active and a slot is given back.
    pub async fn clusters_held(
        &self,
        in_flight: &std::collections::HashMap<String, u64>,
    ) -> Result<Vec<String>, AppError> {
        let (clusters, _) = self.clusters.clusters().await?;
        let mut held = Vec::new();
        for cluster in clusters {
            if !cluster.is_active() {
                held.push(cluster.name);
                continue;
            }
            let Some(cap) = cluster.max_concurrency else {
                continue;
            };
            let launching = in_flight.get(&cluster.name).copied().unwrap_or(0);
            if self.runs.slots_held(&cluster.name).await? + launching >= u64::from(cap) {
                held.push(cluster.name);
            }
        }
        Ok(held)
    }

    /// What the registry says of `cluster` for its queued runs: its status
    /// and its cap. An unregistered cluster is active with no cap.
    pub(crate) async fn cluster_gate(&self, cluster: &str) -> Result<ClusterGate, AppError> {
        let (clusters, _) = self.clusters.clusters().await?;
        Ok(clusters
            .iter()
            .find(|c| c.name == cluster)
            .map_or_else(ClusterGate::default, |c| ClusterGate {
                status: c.status,
                cap: c.max_concurrency,
            }))
    }

    /// One cluster, registered or implied.
    pub async fn cluster(&self, name: &str) -> Result<Cluster, AppError> {
        self.known_clusters()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| cluster_missing(name))
    }

    /// Registers a cluster (or registers settings for an implied one).
    pub async fn create_cluster(&self, input: ClusterInput) -> Result<Cluster, AppError> {
        let cluster = Cluster::create(input, self.now())?;
        self.can_run(&cluster)?;
        let deployed = &self.settings.clusters;
        if !deployed.is_empty()
            && !deployed.contains(&cluster.name)
            && cluster.name != self.settings.default_cluster
        {
            return Err(ValidationError::new(format!(
                "cluster \"{}\" has no queue in this deployment (it has: {}): {}",
                cluster.name,
                deployed.join(", "),
                self.settings.add_cluster_hint
            ))
            .into());
        }
        self.change_clusters(|registered| {
            if registered.iter().any(|c| c.name == cluster.name) {
                return Err(AppError::Conflict(Conflict::ClusterExists(
                    cluster.name.clone(),
                )));
            }
            registered.push(cluster.clone());
            Ok(())
        })
        .await?;
        Ok(cluster)
    }

    /// Refuses a Kubernetes cluster where no EKS engine would run it.
    fn can_run(&self, cluster: &Cluster) -> Result<(), AppError> {
        if cluster.engine == Some(crate::domain::spec::Engine::Eks)
            && !self.settings.kubernetes_clusters
        {
            return Err(ValidationError::new(format!(
                "cluster \"{}\": this server runs no Kubernetes clusters (engine \"eks\" is for the AWS deployment, see the README's \"EKS clusters\"): leave \"engine\" and \"kubernetes\" out",
                cluster.name
            ))
            .into());
        }
        Ok(())
    }

    /// Updates a cluster's settings (an implied cluster becomes registered).
    pub async fn update_cluster(
        &self,
        name: &str,
        input: ClusterInput,
    ) -> Result<Cluster, AppError> {
        let current = self.cluster(name).await?;
        let next = current.updated(input, self.now())?;
        self.can_run(&next)?;
        self.change_clusters(|registered| {
            registered.retain(|c| c.name != next.name);
            registered.push(next.clone());
            Ok(())
        })
        .await?;
        Ok(next)
    }

    /// Removes a registered cluster's settings. Its runs stay.
    pub async fn delete_cluster(&self, name: &str) -> Result<(), AppError> {
        self.change_clusters(|registered| {
            let before = registered.len();
            registered.retain(|c| c.name != name);
            if registered.len() == before {
                Err(cluster_missing(name))
            } else {
                Ok(())
            }
        })
        .await
    }

    /// Read, change and save the registry, again on a concurrent change.
    async fn change_clusters(
        &self,
        change: impl Fn(&mut Vec<Cluster>) -> Result<(), AppError>,
    ) -> Result<(), AppError> {
        let change = &change;
        retry_on_conflict(Contended::Clusters, || async move {
            let (mut registered, version) = self.clusters.clusters().await?;
            change(&mut registered)?;
            registered.sort_by(|a, b| a.name.cmp(&b.name));
            match self.clusters.save_clusters(&registered, version).await {
                Ok(()) => Ok(Step::Done(())),
                Err(StoreError::Conflict { .. }) => Ok(Step::Again),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }
}

fn cluster_missing(name: &str) -> AppError {
    AppError::NotFound(Missing::Cluster(name.to_owned()))
}
