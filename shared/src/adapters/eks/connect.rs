//! Clients of Kubernetes clusters' API servers, one per registered cluster.
//!
//! [`KubeConnect`] is what the engine, the reconciler and the log reader
//! ask for a cluster's client. [`IamConnector`] is the one the functions
//! use: it reaches the API server at the registry's `endpoint`, trusts the
//! registry's `certificate_authority`, and presents the IAM bearer token of
//! [`super::token`] made from the function's own credentials (the EKS
//! access entry, or the aws-auth mapping, gives that role its Kubernetes
//! user). A client is kept for [`TOKEN_LIFETIME`] and then made again with
//! a fresh token, and made again at once when the cluster's settings
//! change. Tests connect through kube-rs's `tower-test` mock instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use serde_json::json;

use super::token::{TOKEN_LIFETIME, eks_token};
use crate::domain::cluster::Cluster;
use crate::error::EngineError;

/// Gives the API server client of a Kubernetes cluster.
#[async_trait]
pub trait KubeConnect: Send + Sync {
    /// A client of `cluster`'s API server.
    async fn client(&self, cluster: &Cluster) -> Result<kube::Client, EngineError>;
}

/// A cached client, with what it was made from.
struct Kept {
    settings: String,
    made: Instant,
    client: kube::Client,
}

/// Connects to EKS clusters with IAM bearer tokens.
pub struct IamConnector {
    credentials: Option<SharedCredentialsProvider>,
    region: String,
    kept: Mutex<HashMap<String, Kept>>,
}

impl std::fmt::Debug for IamConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamConnector")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl IamConnector {
    /// A connector signing with `credentials` (none: every connection
    /// fails, saying so); a cluster that names no region is in `region`.
    pub fn new(credentials: Option<SharedCredentialsProvider>, region: &str) -> Self {
        Self {
            credentials,
            region: region.to_owned(),
            kept: Mutex::new(HashMap::new()),
        }
    }

    fn kept(&self, cluster: &str, settings: &str) -> Option<kube::Client> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(cluster)
            .filter(|k| k.settings == settings && k.made.elapsed() < TOKEN_LIFETIME)
            .map(|k| k.client.clone())
    }
}

/// What refuses to connect to `cluster`: settings that cannot make a client.
fn unusable(cluster: &str, what: impl std::fmt::Display) -> EngineError {
    EngineError::Permanent {
        message: format!(
            "cannot connect to Kubernetes cluster {cluster}: {what}: fix its \"kubernetes\" settings in the cluster registry"
        ),
        source: None,
    }
}

/// A client of the API server at `settings.endpoint`, trusting its CA and
/// presenting `token`.
pub async fn client_with_token(
    cluster: &Cluster,
    token: &str,
) -> Result<kube::Client, EngineError> {
    let Some(settings) = &cluster.kubernetes else {
        return Err(unusable(&cluster.name, "it has no kubernetes settings"));
    };
    let mut entry = json!({ "server": settings.endpoint.trim() });
    if !settings.certificate_authority.is_empty() {
        entry["certificate-authority-data"] = json!(settings.certificate_authority);
    }
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": cluster.name, "cluster": entry }],
        "users": [{ "name": "flotilla", "user": { "token": token } }],
        "contexts": [{
            "name": "flotilla",
            "context": { "cluster": cluster.name, "user": "flotilla", "namespace": cluster.job_namespace() },
        }],
        "current-context": "flotilla",
    }))
    .map_err(|e| unusable(&cluster.name, e))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| unusable(&cluster.name, e))?;
    kube::Client::try_from(config).map_err(|e| unusable(&cluster.name, e))
}

#[async_trait]
impl KubeConnect for IamConnector {
    async fn client(&self, cluster: &Cluster) -> Result<kube::Client, EngineError> {
        let Some(settings) = &cluster.kubernetes else {
            return Err(unusable(&cluster.name, "it has no kubernetes settings"));
        };
        let key = serde_json::to_string(&(settings, &cluster.namespace, &cluster.region))
            .unwrap_or_default();
        if let Some(client) = self.kept(&cluster.name, &key) {
            return Ok(client);
        }
        let Some(provider) = &self.credentials else {
            return Err(EngineError::Permanent {
                message: format!(
                    "no AWS credentials to sign the EKS token of cluster {} with: the function has none configured",
                    cluster.name
                ),
                source: None,
            });
        };
        let credentials =
            provider
                .provide_credentials()
                .await
                .map_err(|e| EngineError::Retryable {
                    message: format!(
                        "no AWS credentials to sign the EKS token of cluster {} with: {e}",
                        cluster.name
                    ),
                    source: Some(Box::new(e)),
                })?;
        let region = if cluster.region.is_empty() {
            &self.region
        } else {
            &cluster.region
        };
        let token = eks_token(
            &credentials,
            region,
            settings.eks_cluster(&cluster.name),
            SystemTime::now(),
        )?;
        let client = client_with_token(cluster, &token).await?;
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).insert(
            cluster.name.clone(),
            Kept {
                settings: key,
                made: Instant::now(),
                client: client.clone(),
            },
        );
        Ok(client)
    }
}
