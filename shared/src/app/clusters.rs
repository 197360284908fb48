//! The cluster registry: the clusters a deployment has without registering
//! them (the default cluster, the stack's clusters), and those registered
//! with a status and tiers. The registry is read and saved whole, with a
//! version, so concurrent changes are decided again.

use crate::app::{App, Step, retry_on_conflict};
use crate::domain::ValidationError;
use crate::domain::cluster::{Cluster, ClusterInput};
use crate::error::{AppError, Conflict, Contended, Missing, StoreError};

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

    /// The registered clusters whose every slot is held, or about to be by
    /// the launches `in_flight` (per cluster): runs of theirs wait until one
    /// is given back.
    pub async fn clusters_at_cap(
        &self,
        in_flight: &std::collections::HashMap<String, u64>,
    ) -> Result<Vec<String>, AppError> {
        let (clusters, _) = self.clusters.clusters().await?;
        let mut full = Vec::new();
        for cluster in clusters {
            let Some(cap) = cluster.max_concurrency else {
                continue;
            };
            let launching = in_flight.get(&cluster.name).copied().unwrap_or(0);
            if self.runs.slots_held(&cluster.name).await? + launching >= u64::from(cap) {
                full.push(cluster.name);
            }
        }
        Ok(full)
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

    /// Updates a cluster's settings (an implied cluster becomes registered).
    pub async fn update_cluster(
        &self,
        name: &str,
        input: ClusterInput,
    ) -> Result<Cluster, AppError> {
        let current = self.cluster(name).await?;
        let next = current.updated(input, self.now())?;
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
