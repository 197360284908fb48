//! Clusters: where runs execute, each with its own queue, and which of them
//! an execute request lands on.
//!
//! A cluster is named once and its name is its id. Its status says whether it
//! takes new runs (`active`) or not (`maintenance`, `offline`); its
//! `allowed_tiers` say which tiers routing may send to it. The clusters a
//! deployment has without registering them (the default cluster, and on AWS
//! every cluster of the stack) count as active with no tiers.
//!
//! A cluster runs its runs on the deployment's engine, unless it is a
//! Kubernetes cluster (`engine: "eks"`), whose [`KubernetesSettings`] say
//! how to reach its API server and where on it runs go. A run's engine is
//! its cluster's: a request naming an engine only checks that it is the
//! one its cluster has.
//!
//! Routing, in order: the request's `cluster` (it must exist and be active);
//! else, with a `tier`, an active cluster allowing that tier (spread over
//! them by run id); else the definition's `target_cluster`; else the default
//! cluster.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::error::ValidationError;
use crate::domain::spec::Engine;

/// Whether a cluster takes new runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ClusterStatus {
    /// Takes new runs.
    #[default]
    Active,
    /// Temporarily takes none.
    Maintenance,
    /// Takes none.
    Offline,
}

impl ClusterStatus {
    /// Every status.
    pub const ALL: [ClusterStatus; 3] = [Self::Active, Self::Maintenance, Self::Offline];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Maintenance => "maintenance",
            Self::Offline => "offline",
        }
    }

    /// Parses a wire name.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| {
                ValidationError::new(format!(
                    "status \"{value}\" is not a cluster status: use active, maintenance or offline"
                ))
            })
    }
}

/// A cluster, in Flotilla's ClusterMetadata shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cluster {
    /// Same as `name`.
    pub id: String,
    /// Name; runs and queues refer to it.
    pub name: String,
    /// Whether it takes new runs.
    pub status: ClusterStatus,
    /// Why it has that status.
    #[serde(default)]
    pub status_reason: String,
    /// Since when.
    pub status_since: DateTime<Utc>,
    /// Tiers routing may send to it.
    #[serde(default)]
    pub allowed_tiers: Vec<String>,
    /// Free-form capabilities.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Version of the cluster software, for information.
    #[serde(default)]
    pub cluster_version: String,
    /// Namespace, for information.
    #[serde(default)]
    pub namespace: String,
    /// Region, for information.
    #[serde(default)]
    pub region: String,
    /// The most runs of this cluster launched at once (PENDING or
    /// RUNNING); none: only the engine's own limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Whether it is only implied by the deployment (never registered).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub implicit: bool,
    /// The engine its runs run on, when not the deployment's: `eks`, with
    /// its `kubernetes` settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// How to reach a Kubernetes cluster and lay runs out on it (engine
    /// `eks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSettings>,
}

/// How Flotilla reaches a Kubernetes cluster's API server, and where on it
/// runs go.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSettings {
    /// The API server's URL, `https://…` (an EKS cluster's endpoint).
    #[serde(default)]
    pub endpoint: String,
    /// The API server's certificate authority, base64-encoded PEM (an EKS
    /// cluster's `certificateAuthority.data`): the only root its clients
    /// trust. Required.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub certificate_authority: String,
    /// The EKS cluster's name, signed into the IAM token Flotilla presents
    /// (made from the function's role); the Flotilla cluster's name when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks_cluster_name: Option<String>,
    /// The service account pods run as, when a run names none; the
    /// namespace's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Where `spot` runs go.
    #[serde(default)]
    pub spot: NodePlacement,
    /// Where `ondemand` runs go.
    #[serde(default)]
    pub ondemand: NodePlacement,
    /// The extended resource GPUs are counted in (`nvidia.com/gpu` when
    /// unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_resource: Option<String>,
}

/// Node labels a pod must match and taints it tolerates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePlacement {
    /// Node labels, e.g. `{"eks.amazonaws.com/capacityType": "SPOT"}`.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Taints tolerated.
    #[serde(default)]
    pub tolerations: Vec<NodeToleration>,
}

/// One taint a pod tolerates, as Kubernetes writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeToleration {
    /// The taint's key; every key when empty with `Exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Equal` (the default) or `Exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The taint's value, with `Equal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; every effect when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

/// The namespace of a Kubernetes cluster that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

impl KubernetesSettings {
    /// What is wrong with these settings, each saying what to fix.
    pub fn problems(&self) -> Vec<String> {
        use crate::domain::limits::{MAX_NAME_BYTES, length_problem, nul_problem};
        let mut problems = Vec::new();
        let endpoint = self.endpoint.trim();
        if endpoint.is_empty() {
            problems.push("kubernetes.endpoint is required: the API server's https URL, e.g. the \"endpoint\" `aws eks describe-cluster` gives".to_owned());
        } else if !endpoint.starts_with("https://") || endpoint.len() <= "https://".len() {
            problems.push(format!(
                "kubernetes.endpoint \"{endpoint}\" is not an https URL: give the API server's https://… address"
            ));
        }
        problems.extend(length_problem(
            "kubernetes.endpoint",
            endpoint,
            MAX_NAME_BYTES,
        ));
        let ca = &self.certificate_authority;
        if ca.trim().is_empty() {
            problems.push("kubernetes.certificate_authority is required: the API server's CA, PEM base64-encoded, as `aws eks describe-cluster` gives certificateAuthority.data (only that CA is trusted)".to_owned());
        } else if !ca
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '\n' | '\r'))
        {
            problems.push("kubernetes.certificate_authority is not base64: give the CA's PEM base64-encoded, as `aws eks describe-cluster` gives certificateAuthority.data".to_owned());
        }
        problems.extend(length_problem(
            "kubernetes.certificate_authority",
            ca,
            64 * 1024,
        ));
        for (field, value) in [
            ("kubernetes.eks_cluster_name", &self.eks_cluster_name),
            ("kubernetes.service_account", &self.service_account),
            ("kubernetes.gpu_resource", &self.gpu_resource),
        ] {
            if let Some(value) = value {
                problems.extend(length_problem(field, value, MAX_NAME_BYTES));
                problems.extend(nul_problem(field, value));
                if value.trim().is_empty() {
                    problems.push(format!(
                        "{field} cannot be empty: leave it out for the default"
                    ));
                }
            }
        }
        if let Some(account) = &self.service_account
            && !is_dns_subdomain(account)
        {
            problems.push(format!(
                "kubernetes.service_account \"{account}\" is not a Kubernetes name: use lowercase letters, digits, '-' and '.'"
            ));
        }
        if let Some(resource) = &self.gpu_resource
            && !is_qualified_name(resource)
        {
            problems.push(format!(
                "kubernetes.gpu_resource \"{resource}\" is not a resource name: use e.g. nvidia.com/gpu"
            ));
        }
        for (which, placement) in [("spot", &self.spot), ("ondemand", &self.ondemand)] {
            problems.extend(placement.problems(&format!("kubernetes.{which}")));
        }
        problems
    }

    /// The EKS cluster name the IAM token is for.
    pub fn eks_cluster<'a>(&'a self, cluster: &'a str) -> &'a str {
        self.eks_cluster_name.as_deref().unwrap_or(cluster)
    }
}

impl NodePlacement {
    fn problems(&self, field: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.node_selector.len() > crate::domain::limits::MAX_ITEMS {
            problems.push(format!(
                "{field}.node_selector has more than {} labels",
                crate::domain::limits::MAX_ITEMS
            ));
        }
        for (key, value) in &self.node_selector {
            if !is_qualified_name(key) {
                problems.push(format!(
                    "{field}.node_selector: \"{key}\" is not a label key: use e.g. eks.amazonaws.com/capacityType"
                ));
            }
            if !is_label_value(value) {
                problems.push(format!(
                    "{field}.node_selector.{key}: \"{value}\" is not a label value: use up to 63 letters, digits, '-', '_' or '.'"
                ));
            }
        }
        if self.tolerations.len() > crate::domain::limits::MAX_ITEMS {
            problems.push(format!(
                "{field}.tolerations has more than {} entries",
                crate::domain::limits::MAX_ITEMS
            ));
        }
        for toleration in &self.tolerations {
            problems.extend(toleration.problems(&format!("{field}.tolerations")));
        }
        problems
    }
}

impl NodeToleration {
    fn problems(&self, field: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let exists = match self.operator.as_deref() {
            None | Some("Equal") => false,
            Some("Exists") => true,
            Some(other) => {
                problems.push(format!(
                    "{field}: operator \"{other}\" is not valid: use Equal or Exists"
                ));
                false
            }
        };
        if let Some(key) = &self.key
            && !is_qualified_name(key)
        {
            problems.push(format!("{field}: key \"{key}\" is not a taint key"));
        }
        if self.key.is_none() && !exists {
            problems.push(format!(
                "{field}: a toleration without a key must have operator Exists"
            ));
        }
        match (&self.value, exists) {
            (Some(_), true) => problems.push(format!(
                "{field}: a toleration with operator Exists takes no value"
            )),
            (Some(value), false) if !is_label_value(value) => {
                problems.push(format!("{field}: value \"{value}\" is not a taint value"));
            }
            _ => {}
        }
        if let Some(effect) = self.effect.as_deref()
            && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            problems.push(format!(
                "{field}: effect \"{effect}\" is not valid: use NoSchedule, PreferNoSchedule or NoExecute"
            ));
        }
        problems
    }
}

/// Whether `name` is a DNS-1123 subdomain (a service account's or a
/// namespace's name, at most 253 characters).
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(|part| is_dns_label(part, 253))
}

/// Whether `label` is a DNS-1123 label of at most `max` characters.
fn is_dns_label(label: &str, max: usize) -> bool {
    !label.is_empty()
        && label.len() <= max
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Whether `name` is a Kubernetes qualified name (`[prefix/]name`), as
/// label keys and resource names are.
fn is_qualified_name(name: &str) -> bool {
    let (prefix, rest) = match name.rsplit_once('/') {
        Some((prefix, rest)) => (Some(prefix), rest),
        None => (None, name),
    };
    prefix.is_none_or(is_dns_subdomain) && !rest.is_empty() && is_label_value(rest)
}

/// Whether `value` can be a label value: at most 63 letters, digits, `-`,
/// `_` and `.`, beginning and ending alphanumeric (or empty).
fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A cluster create or update body. Unknown fields (Flotilla's EMR and Spark
/// settings) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
pub struct ClusterInput {
    /// Name (create; on update it must match).
    pub name: Option<String>,
    /// Status, default `active`.
    pub status: Option<String>,
    /// Why.
    pub status_reason: Option<String>,
    /// Tiers.
    pub allowed_tiers: Option<Vec<String>>,
    /// Capabilities.
    pub capabilities: Option<Vec<String>>,
    /// Version.
    pub cluster_version: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// The most runs launched at once; 0 removes the cap.
    pub max_concurrency: Option<i64>,
    /// `eks` for a Kubernetes cluster (with `kubernetes`); the
    /// deployment's engine when left out (or empty).
    pub engine: Option<String>,
    /// A Kubernetes cluster's API server and placement (engine `eks`).
    pub kubernetes: Option<KubernetesSettings>,
}

/// The highest `max_concurrency` a cluster takes.
pub const MAX_CONCURRENCY: i64 = 100_000;

/// Whether `name` can name a cluster (and therefore a queue).
pub fn is_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn name_problem(name: &str) -> String {
    format!("cluster name \"{name}\" is not valid: use up to 64 letters, digits, '-' or '_'")
}

impl Cluster {
    /// A cluster the deployment has without registering it.
    pub fn implicit(name: &str, now: DateTime<Utc>) -> Self {
        Self {
            id: name.to_owned(),
            name: name.to_owned(),
            status: ClusterStatus::Active,
            status_reason: String::new(),
            status_since: now,
            allowed_tiers: vec![],
            capabilities: vec![],
            cluster_version: String::new(),
            namespace: String::new(),
            region: String::new(),
            max_concurrency: None,
            updated_at: now,
            implicit: true,
            engine: None,
            kubernetes: None,
        }
    }

    /// A new cluster from a create body.
    pub fn create(input: ClusterInput, now: DateTime<Utc>) -> Result<Self, ValidationError> {
        let name = input.name.clone().unwrap_or_default();
        let mut problems = Vec::new();
        if name.is_empty() {
            problems.push("name is required, e.g. {\"name\": \"gpu-team\"}".to_owned());
        } else if !is_cluster_name(&name) {
            problems.push(name_problem(&name));
        }
        let mut cluster = Self::implicit(&name, now);
        cluster.implicit = false;
        if let Err(e) = cluster.apply(input, now) {
            problems.extend(e.problems);
        }
        ValidationError::from_problems(problems)?;
        Ok(cluster)
    }

    /// This cluster with a full update applied (fields left out keep their
    /// value; the name cannot change).
    pub fn updated(
        &self,
        input: ClusterInput,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        if let Some(name) = input.name.as_deref().filter(|n| *n != self.name) {
            return Err(ValidationError::new(format!(
                "a cluster cannot be renamed (from \"{}\" to \"{name}\"): create a new one",
                self.name
            )));
        }
        let mut next = self.clone();
        next.implicit = false;
        next.apply(input, now)?;
        Ok(next)
    }

    fn apply(&mut self, input: ClusterInput, now: DateTime<Utc>) -> Result<(), ValidationError> {
        let mut problems = Vec::new();
        if let Some(status) = input.status.as_deref() {
            match ClusterStatus::parse(status) {
                Ok(s) => {
                    if s != self.status {
                        self.status_since = now;
                    }
                    self.status = s;
                }
                Err(e) => problems.extend(e.problems),
            }
        }
        {
            use crate::domain::limits::{
                MAX_NAME_BYTES, MAX_TEXT_BYTES, length_problem, names_problems, nul_problem,
            };
            let texts = [
                ("status_reason", &input.status_reason, MAX_TEXT_BYTES),
                ("cluster_version", &input.cluster_version, MAX_NAME_BYTES),
                ("namespace", &input.namespace, MAX_NAME_BYTES),
                ("region", &input.region, MAX_NAME_BYTES),
            ];
            for (field, value, max) in texts {
                if let Some(value) = value {
                    problems.extend(length_problem(field, value, max));
                    problems.extend(nul_problem(field, value));
                }
            }
            for (field, names) in [
                ("allowed_tiers", &input.allowed_tiers),
                ("capabilities", &input.capabilities),
            ] {
                if let Some(names) = names {
                    problems.extend(names_problems(field, names));
                }
            }
        }
        if let Some(tiers) = input.allowed_tiers {
            if tiers.iter().any(|t| t.trim().is_empty()) {
                problems.push("allowed_tiers: a tier cannot be empty".to_owned());
            }
            self.allowed_tiers = tiers;
        }
        if let Some(v) = input.status_reason {
            self.status_reason = v;
        }
        if let Some(v) = input.capabilities {
            self.capabilities = v;
        }
        if let Some(v) = input.cluster_version {
            self.cluster_version = v;
        }
        if let Some(v) = input.namespace {
            self.namespace = v;
        }
        if let Some(v) = input.region {
            self.region = v;
        }
        match input.max_concurrency {
            None => {}
            Some(0) => self.max_concurrency = None,
            Some(n @ 1..=MAX_CONCURRENCY) => self.max_concurrency = u32::try_from(n).ok(),
            Some(n) => problems.push(format!(
                "max_concurrency {n} is not valid: use 1 to {MAX_CONCURRENCY} runs at once, or 0 for no cap"
            )),
        }
        match input.engine.as_deref() {
            None => {}
            Some("") => self.engine = None,
            Some(engine) => match Engine::parse(engine) {
                Ok(Engine::Eks) => self.engine = Some(Engine::Eks),
                Ok(other) => problems.push(format!(
                    "engine \"{other}\": a cluster can only name engine \"eks\" (a Kubernetes cluster); leave it out for the deployment's engine"
                )),
                Err(e) => problems.extend(e.problems),
            },
        }
        if let Some(settings) = input.kubernetes {
            problems.extend(settings.problems());
            self.kubernetes = Some(settings);
        }
        match (self.engine, &self.kubernetes) {
            (Some(Engine::Eks), None) => problems.push(
                "engine \"eks\" needs \"kubernetes\": at least {\"endpoint\": \"https://…\", \"certificate_authority\": \"…\"}, the API server's address and CA".to_owned(),
            ),
            (None, Some(_)) => problems.push(
                "\"kubernetes\" is only for a Kubernetes cluster: add \"engine\": \"eks\", or leave \"kubernetes\" out".to_owned(),
            ),
            _ => {}
        }
        if self.engine == Some(Engine::Eks)
            && !self.namespace.is_empty()
            && !is_dns_label(&self.namespace, 63)
        {
            problems.push(format!(
                "namespace \"{}\" is not a Kubernetes namespace: use up to 63 lowercase letters, digits and '-'",
                self.namespace
            ));
        }
        self.updated_at = now;
        ValidationError::from_problems(problems)
    }

    /// The engine its runs run on, `deployment`'s unless it is a Kubernetes
    /// cluster.
    pub fn engine_or(&self, deployment: Engine) -> Engine {
        self.engine.unwrap_or(deployment)
    }

    /// The namespace its Jobs go in, on a Kubernetes cluster.
    pub fn job_namespace(&self) -> &str {
        if self.namespace.is_empty() {
            DEFAULT_NAMESPACE
        } else {
            &self.namespace
        }
    }

    /// Whether it takes new runs.
    pub fn is_active(&self) -> bool {
        self.status == ClusterStatus::Active
    }
}

/// Why the queued runs of `cluster`, whose status is `status` (not
/// active), wait.
pub fn not_active_reason(cluster: &str, status: ClusterStatus) -> String {
    let state = match status {
        ClusterStatus::Maintenance => "in maintenance",
        ClusterStatus::Offline | ClusterStatus::Active => "offline",
    };
    format!("cluster {cluster} is {state}: its queued runs wait until it is active again")
}

/// What routing needs to know about one launch.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// The cluster the request names.
    pub cluster: Option<&'a str>,
    /// The request's tier.
    pub tier: Option<&'a str>,
    /// The definition's target cluster.
    pub target_cluster: Option<&'a str>,
    /// The deployment's default cluster.
    pub default_cluster: &'a str,
    /// Spreads tier routing over the eligible clusters (the run id).
    pub spread_key: &'a str,
}

/// Picks the cluster of a launch among `clusters` (every known cluster).
pub fn route(clusters: &[Cluster], request: RouteRequest<'_>) -> Result<String, ValidationError> {
    let names = || {
        clusters
            .iter()
            .filter(|c| c.is_active())
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = request.cluster.filter(|c| !c.is_empty()) {
        return match clusters.iter().find(|c| c.name == name) {
            Some(c) if c.is_active() => Ok(name.to_owned()),
            Some(c) => Err(ValidationError::new(format!(
                "cluster \"{name}\" is {} and takes no new runs{}: choose another, one of: {}",
                c.status.as_str(),
                if c.status_reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.status_reason)
                },
                names()
            ))),
            None if !is_cluster_name(name) => Err(ValidationError::new(name_problem(name))),
            None => Err(ValidationError::new(format!(
                "cluster \"{name}\" does not exist: use one of {}, or leave it out",
                names()
            ))),
        };
    }
    if let Some(tier) = request.tier.filter(|t| !t.is_empty()) {
        let mut eligible: Vec<&Cluster> = clusters
            .iter()
            .filter(|c| c.is_active() && c.allowed_tiers.iter().any(|t| t == tier))
            .collect();
        eligible.sort_by(|a, b| a.name.cmp(&b.name));
        if !eligible.is_empty() {
            let spread = request
                .spread_key
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
            return Ok(eligible[spread % eligible.len()].name.clone());
        }
    }
    Ok(request
        .target_cluster
        .filter(|c| !c.is_empty())
        .unwrap_or(request.default_cluster)
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH
    }

    fn cluster(name: &str, status: &str, tiers: &[&str]) -> Cluster {
        Cluster::create(
            ClusterInput {
                name: Some(name.into()),
                status: Some(status.into()),
                allowed_tiers: Some(tiers.iter().map(|t| t.to_string()).collect()),
                ..Default::default()
            },
            now(),
        )
        .unwrap()
    }

    fn req<'a>(cluster: Option<&'a str>, tier: Option<&'a str>) -> RouteRequest<'a> {
        RouteRequest {
            cluster,
            tier,
            target_cluster: Some("target"),
            default_cluster: "default",
            spread_key: "run-1",
        }
    }

    #[test]
    fn max_concurrency_takes_one_to_the_limit_zero_removes_it_and_anything_else_is_refused() {
        let with = |n: i64| {
            Cluster::create(
                ClusterInput {
                    name: Some("capped".into()),
                    max_concurrency: Some(n),
                    ..Default::default()
                },
                now(),
            )
        };
        assert_eq!(with(1).unwrap().max_concurrency, Some(1));
        let top = MAX_CONCURRENCY;
        assert_eq!(with(top).unwrap().max_concurrency, u32::try_from(top).ok());
        for bad in [-1, top + 1, i64::MAX, i64::MIN] {
            let e = with(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("max_concurrency {bad} is not valid"))
                    && e.contains("0 for no cap"),
                "{e}"
            );
        }
        let capped = with(10).unwrap();
        let removed = capped
            .updated(
                ClusterInput {
                    max_concurrency: Some(0),
                    ..Default::default()
                },
                now(),
            )
            .unwrap();
        assert_eq!(removed.max_concurrency, None, "0 removes the cap");
        let kept = capped.updated(ClusterInput::default(), now()).unwrap();
        assert_eq!(
            kept.max_concurrency,
            Some(10),
            "an update without it keeps it"
        );
    }

    #[test]
    fn a_named_cluster_must_exist_and_be_active() {
        let all = [
            cluster("prod", "active", &["1"]),
            cluster("old", "maintenance", &["1"]),
        ];
        assert_eq!(route(&all, req(Some("prod"), None)).unwrap(), "prod");
        let e = route(&all, req(Some("old"), None)).unwrap_err().to_string();
        assert!(e.contains("maintenance") && e.contains("prod"), "{e}");
        let e = route(&all, req(Some("nope"), None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn a_tier_routes_to_an_active_cluster_allowing_it_else_target_else_default() {
        let all = [
            cluster("a", "active", &["1", "2"]),
            cluster("b", "maintenance", &["3"]),
        ];
        assert_eq!(route(&all, req(None, Some("2"))).unwrap(), "a");
        assert_eq!(route(&all, req(None, Some("3"))).unwrap(), "target");
        let mut r = req(None, None);
        r.target_cluster = None;
        assert_eq!(route(&all, r).unwrap(), "default");
    }

    #[test]
    fn a_kubernetes_cluster_needs_an_https_endpoint_and_its_placement_is_checked_field_by_field() {
        let with = |engine: Option<&str>, kubernetes: Option<serde_json::Value>| {
            Cluster::create(
                ClusterInput {
                    name: Some("gpu".into()),
                    engine: engine.map(str::to_owned),
                    namespace: Some("ml".into()),
                    kubernetes: kubernetes.map(|k| serde_json::from_value(k).unwrap()),
                    ..Default::default()
                },
                now(),
            )
        };
        let good = with(
            Some("eks"),
            Some(serde_json::json!({
                "endpoint": "https://ABC.gr7.us-east-1.eks.amazonaws.com",
                "certificate_authority": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
                "spot": {"node_selector": {"eks.amazonaws.com/capacityType": "SPOT"},
                         "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]},
                "gpu_resource": "nvidia.com/gpu",
            })),
        )
        .unwrap();
        assert_eq!(good.engine, Some(Engine::Eks));
        assert_eq!(good.job_namespace(), "ml");
        assert_eq!(good.engine_or(Engine::Ecs), Engine::Eks);
        let problems = |engine, k| with(engine, k).unwrap_err().problems;
        assert_eq!(
            problems(Some("eks"), None),
            [
                "engine \"eks\" needs \"kubernetes\": at least {\"endpoint\": \"https://…\", \"certificate_authority\": \"…\"}, the API server's address and CA"
            ]
        );
        assert_eq!(
            problems(
                None,
                Some(serde_json::json!({"endpoint": "https://k", "certificate_authority": "Q0E="}))
            ),
            [
                "\"kubernetes\" is only for a Kubernetes cluster: add \"engine\": \"eks\", or leave \"kubernetes\" out"
            ]
        );
        assert!(problems(Some("ecs"), None)[0].contains("a cluster can only name engine \"eks\""));
        let bad = problems(
            Some("eks"),
            Some(serde_json::json!({
                "endpoint": "http://plain.example",
                "certificate_authority": "not base64!",
                "service_account": "Runs_Here",
                "spot": {"node_selector": {"bad key!": "x"}, "tolerations": [{"operator": "Sometimes"}, {"key": "k", "operator": "Exists", "value": "v"}]},
                "ondemand": {"tolerations": [{"key": "k", "effect": "Never"}]},
                "gpu_resource": "",
            })),
        );
        for expected in [
            "kubernetes.endpoint \"http://plain.example\" is not an https URL",
            "kubernetes.certificate_authority is not base64",
            "kubernetes.service_account \"Runs_Here\" is not a Kubernetes name",
            "kubernetes.gpu_resource cannot be empty",
            "kubernetes.spot.node_selector: \"bad key!\" is not a label key",
            "kubernetes.spot.tolerations: operator \"Sometimes\" is not valid",
            "kubernetes.spot.tolerations: a toleration with operator Exists takes no value",
            "kubernetes.ondemand.tolerations: effect \"Never\" is not valid",
        ] {
            assert!(
                bad.iter().any(|p| p.starts_with(expected)),
                "{expected}: {bad:?}"
            );
        }
        let typo: Result<KubernetesSettings, _> =
            serde_json::from_value(serde_json::json!({"endpoint": "https://k", "namespce": "x"}));
        assert!(typo.is_err(), "an unknown setting is refused, not ignored");
    }

    #[test]
    fn statuses_are_checked_and_names_are_fixed() {
        let e = Cluster::create(
            ClusterInput {
                name: Some("x y".into()),
                status: Some("ACTIVE".into()),
                ..Default::default()
            },
            now(),
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        let c = cluster("a", "active", &[]);
        let e = c
            .updated(
                ClusterInput {
                    name: Some("b".into()),
                    ..Default::default()
                },
                now(),
            )
            .unwrap_err();
        assert!(e.to_string().contains("renamed"));
    }
}
